"""A fresh git + DVC repository holding the project with tiny params, for tests that run real `dvc` commands."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["pipeline", "stages", "datasets", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"]
# small, yet a model that learns: 2 epochs beat the majority-class predictor's val mIoU (0.24 against 0.14), which
# a model must to be registered (pipeline/training/health.py)
TINY = {
    ("data", "synthetic", "num_train"): 48,
    ("data", "synthetic", "num_val"): 6,
    ("data", "image_size"): 64,
    ("models", "unet", "base_channels"): 8,
    ("models", "unet", "depth"): 3,
    ("train", "epochs"): 2,
    ("train", "lr"): 0.01,
    ("train", "batch_size"): 4,
    ("augment", "crop_size"): 0,
    ("augment", "crops_per_image"): 1,
    ("plot", "num_samples"): 2,
    ("mlflow", "log_onnx"): False,  # tests/test_onnx.py and test_mlflow_model.py cover the export
}


def run(command: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def clean_env() -> dict:
    """The environment without MLflow, DVC or AWS settings of the calling shell, with this venv's tools first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def copy_files(names: list[str], root: Path) -> None:
    """Files and folders of this repository, by their paths in it, into `root` (without bytecode)."""
    for name in names:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)


def make_project(root: Path, env: dict) -> Path:
    """The project's code and tiny params committed in a new git + DVC repository at `root`."""
    root.mkdir(parents=True, exist_ok=True)
    copy_files(PROJECT_FILES, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for keys, value in TINY.items():
        section = params
        for key in keys[:-1]:
            section = section[key]
        section[keys[-1]] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root, env)
    run(["git", "config", "user.email", "test@localhost"], root, env)
    run(["git", "config", "user.name", "test"], root, env)
    run(["dvc", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "project"], root, env)
    return root
