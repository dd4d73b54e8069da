"""Stage logs as read off a terminal (CI, a redirected run, a queue worker's file): real train, evaluate and plot
stages with their output in a pipe. Each line is time-stamped, the training opens with one summary line and gives
speed and ETA per epoch, every stage ends with what it wrote, and no progress bar leaves `\\r` frames."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.synthetic_data import processed_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO "  # pipeline/logs.py; MLflow's own lines use slashes
DURATION = r"\d+:\d\d:\d\d"
STAGES = ("train", "evaluate", "plot")


@pytest.fixture(scope="module")
def stage_logs(tmp_path_factory) -> dict[str, bytes]:
    """Each stage's stdout and stderr together, as bytes (text mode would turn `\\r` into newlines)."""
    root = tmp_path_factory.mktemp("logs")
    processed_synthetic(root / "made", num_train=8, num_val=4, seed=5)
    project = root / "project"
    for kind in ("interim", "processed"):
        (project / "data" / kind).mkdir(parents=True)
        (root / "made" / kind).rename(project / "data" / kind / "synthetic")
    params = {"data": {"image_size": 64}, "models": {"unet": {"base_channels": 4, "depth": 2}},
              "train": {"epochs": 2, "batch_size": 4, "precision": "fp32", "num_threads": 1},
              "augment": {"crops_per_image": 1}, "plot": {"num_samples": 2},
              "mlflow": {"experiment": "tests", "tracking_uri": f"sqlite:///{project / 'mlflow.db'}",
                         "log_onnx": False}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "DVC_"))}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    logs = {}
    for stage in STAGES:
        result = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert result.returncode == 0, result.stdout.decode()[-3000:]
        logs[stage] = result.stdout
    return logs


def project_lines(output: bytes) -> list[str]:
    return [line for line in output.decode().splitlines() if re.match(STAMP, line)]


def test_training_opens_with_a_summary_and_logs_speed_and_eta_per_epoch(stage_logs):
    lines = project_lines(stage_logs["train"])
    assert re.fullmatch(STAMP + r"training unet \([\d,]+ parameters\) on synthetic: 8 train / 4 val images, 64px, "
                        r"\d+ classes \(background, disc, .*\); 2 epochs of batch 4; device cpu, precision fp32, "
                        r"threads 1", lines[0]), lines[0]
    epochs = [line for line in lines if " epoch " in line and "img/s" in line]
    assert len(epochs) == 2, lines
    for number, line in enumerate(epochs, start=1):
        assert re.fullmatch(STAMP + rf"epoch {number}/2: train_loss [\d.]+ val_loss [\d.]+ val_miou [\d.]+ "
                            rf"lr [\d.e-]+ \| [\d.]+ img/s, elapsed {DURATION}, ETA {DURATION}", line), line
    assert epochs[-1].endswith("ETA 0:00:00")
    assert re.fullmatch(STAMP + r"wrote models/model\.pt \(epoch [12], val mIoU [\d.]+\), reports/train/history\.csv, "
                        r".*; logged to MLflow run [0-9a-f]{32}", lines[-1]), lines[-1]


def test_evaluate_and_plot_end_with_one_line_saying_what_they_wrote(stage_logs):
    evaluate = stage_logs["evaluate"].decode().splitlines()[-1]
    assert re.fullmatch(STAMP + r"wrote reports/eval/confusion_matrix\.csv, reports/eval/metrics\.json, "
                        r"reports/eval/per_class_iou\.json \(val mIoU [\d.]+, pixel accuracy [\d.]+\); "
                        r"attached to MLflow run [0-9a-f]{32}", evaluate), evaluate
    plot = stage_logs["plot"].decode().splitlines()[-1]
    assert re.fullmatch(STAMP + r"wrote 5 figures to reports/figures: .*model_progress\.gif; "
                        r"attached to MLflow run [0-9a-f]{32}", plot), plot


def test_no_progress_bar_frames_off_a_terminal(stage_logs):
    for stage in STAGES:
        assert b"\r" not in stage_logs[stage], stage
