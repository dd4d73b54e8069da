"""Training and inference images/s of our models against smp's Unet-resnet34, in fp32 and channels_last+bf16.

Run from the repo root: `python -m benchmarks.train_throughput` (needs benchmarks/requirements.txt).
smp is measured in the same run, so the ratios hold even when the machine's load changes between runs;
the load average is printed before and after. With `--rounds` > 1 every round measures all models in
turn and the table shows medians over rounds, ratios being medians of each round's own ratio: a burst
(or a lull) of other jobs then moves one round, not the answer. `--convergence` instead trains each
model on one fixed synthetic batch in both precisions, to check that bf16 still learns as fp32 does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pipeline.config import MultiScaleUNetParams, UNetParams
from pipeline.data.sources.synthetic import CLASSES, render_scene
from pipeline.models.architectures.unet import UNet
from pipeline.models.registry import build_network

REFERENCE = "smp Unet-resnet34"
MODES = ("fp32", "cl+bf16")


def model_makers(num_classes: int) -> dict[str, Callable[[], nn.Module]]:
    return {
        "unet base64 depth4": lambda: UNet(num_classes, base_channels=64, depth=4),
        "unet (default)": lambda: build_network("unet", num_classes, UNetParams().architecture()),
        "resnet34_unet": lambda: build_network("resnet34_unet", num_classes, {"encoder_weights": "none"}),
        "multiscale_unet": lambda: build_network("multiscale_unet", num_classes,
                                                 MultiScaleUNetParams().architecture()),
        REFERENCE: lambda: smp.Unet("resnet34", encoder_weights=None, classes=num_classes),
    }


def prepare(model: nn.Module, images: torch.Tensor, mode: str):
    """The model and input in `mode`'s memory format, and the autocast context to run them in."""
    if mode == "fp32":
        return model, images, nullcontext
    model = model.to(memory_format=torch.channels_last)
    return model, images.contiguous(memory_format=torch.channels_last), \
        lambda: torch.autocast("cpu", dtype=torch.bfloat16)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images, target, autocast) -> float:
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        logits = model(images)
    loss = F.cross_entropy(logits.float(), target)
    loss.backward()
    optimizer.step()
    return loss.item()


def images_per_second(step: Callable[[], object], batch: int, warmup: int, steps: int) -> float:
    """Median over `steps` timed calls after `warmup` untimed ones: robust to another job's burst."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def measure(make: Callable[[], nn.Module], mode: str, args) -> tuple[float, float]:
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    model, images, autocast = prepare(make(), images, mode)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    train = images_per_second(lambda: train_step(model, optimizer, images, target, autocast),
                              args.batch, args.warmup, args.steps)
    model.eval()

    def infer():
        with torch.inference_mode(), autocast():
            model(images)
    return train, images_per_second(infer, args.batch, args.warmup, args.steps)


def fixed_batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` synthetic scenes resized to size x size: real shapes to learn, identical for every run."""
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(batch):
        image, mask = render_scene(rng)
        images.append(np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)))
        masks.append(np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST)))
    images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return (images - 0.45) / 0.225, torch.from_numpy(np.stack(masks)).long()


def convergence(names: list[str], modes: list[str], args) -> None:
    makers = {name: make for name, make in model_makers(len(CLASSES)).items() if name in names}
    images, target = fixed_batch(args.conv_batch, args.conv_size)
    print(f"\nconvergence: {args.conv_steps} Adam steps (lr 1e-3) on one fixed batch of {args.conv_batch} "
          f"synthetic {args.conv_size}x{args.conv_size} images, {len(CLASSES)} classes, same init per model")
    print(f"{'model':22s} {'mode':8s} {'loss@0':>8s} {'loss@end':>9s} {'drop %':>7s} {'pixel acc':>9s}")
    for name, make in makers.items():
        for mode in modes:
            torch.manual_seed(0)
            model, batch, autocast = prepare(make(), images, mode)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            model.train()
            losses = [train_step(model, optimizer, batch, target.masked_fill(target == 255, -100), autocast)
                      for _ in range(args.conv_steps)]
            model.eval()
            with torch.inference_mode(), autocast():
                predicted = model(batch).argmax(1)
            valid = target != 255
            accuracy = (predicted[valid] == target[valid]).float().mean().item()
            print(f"{name:22s} {mode:8s} {losses[0]:8.3f} {losses[-1]:9.3f} "
                  f"{100 * (1 - losses[-1] / losses[0]):7.1f} {accuracy:9.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="*", help="subset of model names (the reference is always run)")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--convergence", action="store_true", help="run the convergence check instead")
    parser.add_argument("--conv-steps", type=int, default=30)
    parser.add_argument("--conv-batch", type=int, default=4)
    parser.add_argument("--conv-size", type=int, default=128)
    args = parser.parse_args()

    makers = model_makers(args.classes)
    if args.models:
        makers = {name: make for name, make in makers.items() if name in args.models or name == REFERENCE}
    if args.convergence:
        return convergence(list(makers), args.modes, args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu {torch.backends.cpu.get_cpu_capability()}, "
          f"batch {args.batch}, {args.size}x{args.size}, {args.classes} classes, median of {args.steps} steps; "
          f"load before {os.getloadavg()}")
    rounds = []
    for round_ in range(args.rounds):
        rounds.append({})
        for name, make in makers.items():
            for mode in args.modes:
                rounds[-1][name, mode] = train, infer = measure(make, mode, args)
                print(f"  round {round_}: {name} {mode}: train {train:.2f} img/s, infer {infer:.2f} img/s, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load after {os.getloadavg()}\n")
    print(f"{'model':22s} {'mode':8s} {'train img/s':>11s} {'x smp':>6s} {'infer img/s':>11s} {'x smp':>6s}")
    for name, mode in rounds[0]:
        train, infer = (statistics.median(r[name, mode][i] for r in rounds) for i in (0, 1))
        train_ratio, infer_ratio = (statistics.median(r[name, mode][i] / r[REFERENCE, mode][i] for r in rounds)
                                    for i in (0, 1))
        print(f"{name:22s} {mode:8s} {train:11.2f} {train_ratio:6.2f} {infer:11.2f} {infer_ratio:6.2f}")


if __name__ == "__main__":
    main()
