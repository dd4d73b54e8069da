"""The CUDA paths in one run, for a machine with an NVIDIA GPU (about 8 minutes on one H100).

    python -m benchmarks.gpu_check [--skip-pipeline]

1. A training step of every model family in fp32, bf16 autocast and fp16 autocast with a GradScaler, channels_last:
   the loss must be finite and fall over a few steps on one batch.
2. The default `dvc exp run` in a fresh clone with `train.device: auto`: resolved.json must say cuda.
3. The train stage under a 1-process `torchrun` (NCCL): it must finish and log its run.
4. ONNX export of GPU-trained weights and onnxruntime's parity with torch.
5. Inference images/s of the default U-Net at 256², GPU against this machine's CPU.

It prints one table (check, result, detail) and exits 1 if any check failed. Without CUDA it says so in one line and
exits 0, so it can run anywhere.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.pipeline_stages import clone, environment
from pipeline.config import Params
from pipeline.models.onnx_graph import write_onnx
from pipeline.models.registry import build_model
from pipeline.training.device import autocast, memory_format

CLASSES = [f"class{index}" for index in range(6)]
FAMILIES = ("unet", "resnet34_unet", "multiscale_unet", "smp")
PRECISIONS = ("fp32", "bf16", "fp16")
TINY_RUN = ["-S", "train.epochs=1", "-S", "++data.synthetic.num_train=16", "-S", "++data.synthetic.num_val=4",
            "-S", "++mlflow.log_onnx=false"]


def family_model(name: str, image_size: int = 128):
    """Model `name` with its default architecture, from scratch (no encoder weights are fetched)."""
    architecture = {**getattr(Params().models, name).architecture()}
    if "encoder_weights" in architecture:
        architecture["encoder_weights"] = "none"
    return build_model(name, CLASSES, architecture, image_size)


def train_steps(name: str, precision: str, device: torch.device, steps: int = 5) -> str:
    """A few steps on one batch; fails unless every loss is finite and the last is below the first."""
    model = family_model(name).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 128, 128, generator=generator).to(device, memory_format=torch.channels_last)
    masks = torch.randint(0, len(CLASSES), (4, 128, 128), generator=generator).to(device)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), masks)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    if not all(map(torch.isfinite, torch.tensor(losses))) or losses[-1] >= losses[0]:
        raise AssertionError(f"losses {[round(value, 4) for value in losses]}")
    return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def default_experiment(repo: Path) -> str:
    """`dvc exp run` of the default params (one epoch, a small synthetic set): device auto must pick CUDA."""
    dvc(repo, "exp", "run", *TINY_RUN)
    resolved = json.loads((repo / "reports/train/resolved.json").read_text())
    if resolved["device"] != "cuda":
        raise AssertionError(f"device auto picked {resolved['device']}")
    return f"device {resolved['device']}, precision {resolved['precision']}"


def torchrun_stage(repo: Path) -> str:
    """The train stage under a 1-process torchrun, which joins its NCCL rendezvous (the data stages ran before)."""
    started = time.perf_counter()
    output = run_checked(["torchrun", "--standalone", "--nproc_per_node=1", "-m", "stages.train"], repo)
    if "logged to MLflow run" not in output:
        raise AssertionError(output[-500:])
    return f"NCCL, {time.perf_counter() - started:.0f} s"


def onnx_parity(device: torch.device, folder: Path) -> str:
    """Train the default U-Net a few steps on the GPU, export its weights to ONNX, compare onnxruntime with torch."""
    model = family_model("unet").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(2, 3, 128, 128, device=device)
    for _ in range(3):
        optimizer.zero_grad()
        model(images).square().mean().backward()
        optimizer.step()
    return str(write_onnx(model, folder / "model.onnx"))


def images_per_second(device: torch.device, batches: int = 20) -> float:
    model = family_model("unet", 256).to(device, memory_format=memory_format(device, "fp32")).eval()
    images = torch.rand(8, 3, 256, 256, device=device).contiguous(memory_format=memory_format(device, "fp32"))
    with torch.inference_mode():
        model(images)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(batches):
            model(images)
        synchronize(device)
    return batches * len(images) / (time.perf_counter() - started)


def inference_speed(device: torch.device) -> str:
    gpu, cpu = images_per_second(device), images_per_second(torch.device("cpu"), batches=2)
    return f"GPU {gpu:.0f} img/s, CPU {cpu:.1f} img/s ({gpu / cpu:.0f}x)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dvc(repo: Path, *args: str) -> str:
    return run_checked(["dvc", *args], repo)


def run_checked(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"{' '.join(command[:3])} failed: {(result.stdout + result.stderr)[-500:]}")
    return result.stdout + result.stderr


def checks(device: torch.device, workdir: Path, pipeline: bool) -> list[tuple[str, Callable[[], str]]]:
    steps = [(f"train step {name} {precision}", lambda n=name, p=precision: train_steps(n, p, device))
             for name in FAMILIES for precision in PRECISIONS]
    if pipeline:
        repo = workdir / "repo"
        steps += [("dvc exp run, device auto", lambda: default_experiment(clone("HEAD", repo, []))),
                  ("torchrun 1 process", lambda: torchrun_stage(repo))]
    return steps + [("ONNX parity from GPU weights", lambda: onnx_parity(device, workdir)),
                    ("inference 8x256² unet", lambda: inference_speed(device))]


def run_all(steps: list[tuple[str, Callable[[], str]]]) -> list[tuple[str, str, str]]:
    rows = []
    for name, check in steps:
        try:
            rows.append((name, "ok", check()))
        except Exception as error:  # every check runs and reports, whatever the others did
            detail = str(error).splitlines()[0] if str(error) else traceback.format_exc(limit=1).splitlines()[-1]
            rows.append((name, "FAILED", detail[:200]))
        print(f"{rows[-1][0]}: {rows[-1][1]} {rows[-1][2]}", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"| {'check':<{width}} | result | detail |\n|{'-' * (width + 2)}|--------|--------|")
    for name, result, detail in rows:
        print(f"| {name:<{width}} | {result:<6} | {detail} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-pipeline", action="store_true", help="only the in-process checks (no dvc, torchrun)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
        return 0
    device = torch.device("cuda")
    print(f"gpu_check: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_all(checks(device, Path(tmp), not args.skip_pipeline))
    print_table(rows)
    return 1 if any(result != "ok" for _, result, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
