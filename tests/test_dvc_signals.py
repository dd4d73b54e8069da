"""Stopping DVC stops the training it started. SIGTERM (what `timeout`, systemd and CI runners send) to a real
`dvc repro` or `dvc exp run` in a temporary repository: no stage process survives, the training stops at a batch
boundary (under torchrun, all workers at the same one), the MLflow run ends KILLED, the training state stays
resumable and nothing is registered, for one process and for torchrun's workers."""
from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import psutil
import pytest
import torch
import yaml

from tests.project_repo import clean_env, make_project, run

pytestmark = pytest.mark.slow  # real dvc processes and trainings


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project repository whose data stages have run and are committed: each test starts at the train stage."""
    env = clean_env()
    root = make_project(tmp_path_factory.mktemp("signals") / "project", env)
    run(["dvc", "repro", "preprocess"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "data"], root, env)
    return root


def processes_in(root: Path) -> dict[psutil.Process, str]:
    """Every live process working inside `root` (DVC, the shell it runs commands through, the stage, torchrun's
    workers) with its command line."""
    found = {}
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).is_relative_to(root):
                found[process] = " ".join(process.cmdline())
        except psutil.Error:  # gone, a zombie, or someone else's
            continue
    return found


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize(("command", "shell", "processes"), [
    (["dvc", "repro", "train"], "/bin/bash", 1),  # bash replaces itself by the command: DVC is the stage's parent
    (["dvc", "exp", "run"], "/bin/sh", 1),  # dash forks: DVC -> sh -c -> the stage
    (["dvc", "repro", "train"], "/bin/bash", 2),  # DVC -> the stage as torchrun's launcher -> two workers
], ids=["repro", "exp-run-through-sh", "repro-torchrun"])
def test_sigterm_to_dvc_ends_the_training_it_started(prepared, tmp_path, command, shell, processes):
    root = tmp_path / "project"
    shutil.copytree(prepared, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 1000  # still training when signalled
    params["train"]["distributed"] = {"nproc_per_node": processes}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    state = root / "models" / "train_state.pt"
    log = tmp_path / "dvc.log"
    with log.open("w") as output:
        dvc = subprocess.Popen(command, cwd=root, env={**clean_env(), "SHELL": shell}, stdout=output,
                               stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: state.exists() or dvc.poll() is not None, 600) and dvc.poll() is None, log.read_text()
        layout = list(processes_in(root).values())
        assert any(line.startswith("/bin/sh -c") for line in layout) == (shell == "/bin/sh"), layout
        dvc.send_signal(signal.SIGTERM)
        dvc.wait(timeout=60)
        assert wait_for(lambda: not processes_in(root), 300), list(processes_in(root).values())
    finally:
        for process in processes_in(root):  # a failed test leaves no training behind
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
    saved = torch.load(state, weights_only=False)
    assert not saved["completed"] and saved["run_id"] is not None  # resumable, in the same run
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_run(saved["run_id"]).info.status == "KILLED"
    assert client.search_registered_models() == []
    assert "stopping: process" in log.read_text()
    assert re.search(r"stopping .* \(SIGTERM\); the next run resumes after the last finished epoch", log.read_text())
    assert re.search(r"^stopped: stopped .* \(SIGTERM\)$", log.read_text(), re.MULTILINE)  # one line, no traceback
    assert "Traceback" not in log.read_text()
