"""benchmarks/gpu_check.py where there is no GPU: one line and exit 0; its checks' own code runs on the CPU, and a
failing check fails the run."""
from __future__ import annotations

import subprocess
import sys

import torch

from benchmarks import gpu_check
from tests.conftest import REPO_ROOT


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=REPO_ROOT, capture_output=True,
                            text=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check"]


def test_a_train_step_check_lowers_the_loss_on_the_cpu():
    assert gpu_check.train_steps("unet", "fp32", torch.device("cpu")).startswith("loss ")


def test_the_onnx_check_exports_trained_weights_and_compares(tmp_path):
    assert "same class for" in gpu_check.onnx_parity(torch.device("cpu"), tmp_path)


def test_a_failing_check_is_a_row_of_the_table_and_the_others_still_run(capsys):
    def broken() -> str:
        raise AssertionError("losses [nan]")
    rows = gpu_check.run_all([("broken", broken), ("fine", lambda: "1 img/s")])
    assert rows == [("broken", "FAILED", "losses [nan]"), ("fine", "ok", "1 img/s")]
    gpu_check.print_table(rows)
    assert "| broken | FAILED | losses [nan] |" in capsys.readouterr().out
