"""The README's quick start and daily commands, run as written in a temporary clone of the project (tiny params,
tests/project_repo.py) with a tiny dataset of one's own, a photo and a tracking server on 127.0.0.1.

Only what a newcomer would replace is replaced (the data folder and the server's address; each must still be in
the README, so the test notices a changed command), plus two things a test cannot afford: the quick start's
`pip install` resolves against this environment's packages (the clone's .venv sees them through a .pth file, so
every pin is still checked and nothing is downloaded), and `python -m pytest` only collects the suite instead of
running it inside itself.
"""
from __future__ import annotations

import re
import subprocess
import sysconfig
from pathlib import Path

import mlflow
import pytest

from tests import own_data
from tests.project_repo import REPO_ROOT, clean_env, copy_files, make_project, run
from tests.team_services import Process, answers, free_port, wait_until

pytestmark = pytest.mark.slow  # installs a venv, trains four tiny models through dvc, starts an MLflow server

SECTIONS = ("Quick start", "Daily use")
# beside tests/project_repo.py's files: what the quick start installs and the tests import
CLONED_TOO = ["README.md", "requirements.txt", "requirements", "tests", "pyproject.toml", "benchmarks", "scripts",
              "docs", "mkdocs.yml", "deploy"]
SERVER_IN_README = "http://mlflow.example.org:5000"
DATA_IN_README = "/path/to/my_data"


def shell_blocks(markdown: str, sections: tuple[str, ...]) -> list[str]:
    """The ```bash blocks under the `## ` headings named in `sections`, in order."""
    blocks, heading, block = [], None, None
    for line in markdown.splitlines():
        if block is not None:
            if line.startswith("```"):
                blocks.append("\n".join(block))
                block = None
            else:
                block.append(line)
        elif line.startswith("## "):
            heading = line[3:].strip()
        elif line.strip() == "```bash" and heading in sections:
            block = []
    return blocks


def clone_with_a_venv(root: Path, env: dict) -> Path:
    """The project with tiny params, the files the quick start needs, and a .venv that sees this environment's
    packages (the README's `python3 -m venv .venv` then reuses it, and its pip finds every pin installed)."""
    make_project(root, env)
    copy_files(CLONED_TOO, root)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "the quick start's files"], root, env)
    run(["python3", "-m", "venv", "--without-pip", ".venv"], root, env)
    (site_packages,) = (root / ".venv" / "lib").glob("python3*/site-packages")
    (site_packages / "shared_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def run_block(block: str, root: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=root, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{block}\nfailed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_readme_commands_run_as_written_in_a_fresh_clone(tmp_path: Path):
    readme = (REPO_ROOT / "README.md").read_text()
    env = clean_env()
    env["PIP_NO_INDEX"] = "1"  # every pin must be satisfied by what is installed: nothing is fetched
    root = clone_with_a_venv(tmp_path / "clone", env)
    data = tmp_path / "my_data"  # a path with spaces needs Hydra's quotes in -S: docs/how-to/own-data.md
    own_data.write_images_and_masks(data)
    own_data.save_photo(root / "photo.jpg", 0)
    port = free_port()
    server = Process(["mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                      "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
                      "--port", str(port)], tmp_path / "server.log",
                     {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    substitutes = {DATA_IN_README: str(data), SERVER_IN_README: f"http://127.0.0.1:{port}",
                   "python -m pytest": "python -m pytest --collect-only -q -n 0"}
    assert all(placeholder in readme for placeholder in substitutes), "a command the test runs changed in the README"
    outputs = []
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), "mlflow server", tmp_path / "server.log")
        for block in shell_blocks(readme, SECTIONS):
            for placeholder, value in substitutes.items():
                block = block.replace(placeholder, value)
            outputs.append((block, run_block(block, root, env).stdout))
        check_what_the_commands_did(root, data, outputs, f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def output_of(outputs: list[tuple[str, str]], command: str) -> str:
    (stdout,) = [stdout for block, stdout in outputs if command in block]
    return stdout


def columns(text: str) -> list[dict[str, str]]:
    """The rows of `column -t` output as dicts, cut at the header's column starts (a cell may be empty)."""
    header, *lines = text.splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    names = header.split()
    return [{name: line[start:end].strip() for name, start, end in zip(names, starts, [*starts[1:], None])}
            for line in lines]


def check_what_the_commands_did(root: Path, data: Path, outputs: list[tuple[str, str]], server: str) -> None:
    assert len(outputs) == 7, [block for block, _ in outputs]  # quick start 2, daily use 5
    assert (root / "models" / "model.pt").is_file()
    assert "tests/test_readme.py" in output_of(outputs, "--collect-only")
    assert "Data and pipelines are up to date." in subprocess.run(["dvc", "status"], cwd=root, env=clean_env(),
                                                                  capture_output=True, text=True).stdout
    table = columns(output_of(outputs, "dvc exp show"))
    rows = {row["Experiment"]: row for row in table if row["Experiment"]}
    assert list(rows) == sorted(rows, key=lambda name: -float(rows[name]["val_miou"])), table  # the best first
    assert {"lr-high", "my-data"} <= set(rows), table  # the team server's experiment comes after the comparison
    assert rows["my-data"]["num_classes"] == "3" and rows["my-data"]["data.root"] == str(data)
    assert rows["lr-high"]["num_classes"] == "6" and rows["lr-high"]["lr"] == "0.01"
    assert output_of(outputs, "pipeline.predict").startswith("wrote 1 mask and overlay to predictions: "
                                                             "photo_mask.png, photo_overlay.png")
    assert (root / "predictions" / "photo_overlay.png").is_file()
    client = mlflow.MlflowClient(server)
    (on_server,) = client.search_runs([client.get_experiment_by_name("segmentation").experiment_id])
    assert on_server.info.run_name == "on-the-server" and "eval_miou" in on_server.data.metrics
    assert any(name.startswith("iou/") for name in on_server.data.metrics)

