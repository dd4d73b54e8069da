"""Training and inference images/s and GFLOP/s of our models against smp's Unet-resnet34: fp32, channels_last, bf16.

Run from the repo root: `python -m benchmarks.train_throughput` (needs benchmarks/requirements.txt).
smp is measured in the same run, so the ratios hold even when the machine's load changes between runs;
the load average is printed before and after. With `--rounds` > 1 every round measures all models in
turn and the table shows medians over rounds, ratios being medians of each round's own ratio: a burst
(or a lull) of other jobs then moves one round, not the answer. `--convergence` instead trains each
model on one fixed synthetic batch in each mode, to check that bf16 still learns as fp32 does.

GFLOP/s divide the FLOPs torch's FlopCounterMode counts in one train step (forward + backward) and one inference
forward by the median step time; "% fp32" (and "% bf16" where the CPU has native bf16) is the share of the peak
that `cpu_peak_gflops` derives from the CPU's cores, vector width and clock: how far the models are from what
the hardware could do, which img/s alone cannot say.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.config import MultiScaleUNetParams, TrainParams, UNetParams
from pipeline.data.sources.synthetic import CLASSES, render_scene
from pipeline.models.architectures.unet import UNet
from pipeline.models.registry import build_network
from pipeline.training.optim import build_optimizer
from pipeline.training.threads import usable_cores

REFERENCE = "smp Unet-resnet34"
MODES = ("fp32", "cl+fp32", "cl+bf16")
FMA_UNITS = 2  # per core: assumed, /proc/cpuinfo cannot tell. Some AVX-512 Xeons have one 512-bit unit, and Zen 4
# runs 512-bit FMAs on two 256-bit units: on both the real AVX-512 peak is half the estimate


@dataclass(frozen=True)
class CpuPeak:
    cores: int
    lanes: int  # fp32 lanes per vector register
    fma_units: int
    ghz: float
    clock_source: str
    bf16_isa: str | None  # "avx512_bf16" or "amx_bf16" where the CPU computes in bf16 natively

    @property
    def fp32(self) -> float:
        return self.cores * self.lanes * self.fma_units * 2 * self.ghz

    @property
    def bf16(self) -> float | None:
        return 2 * self.fp32 if self.bf16_isa else None

    def describe(self) -> str:
        line = (f"peak fp32 = {self.cores} cores x {self.lanes} lanes x {self.fma_units} FMA units (assumed) x 2 FLOP "
                f"x {self.ghz:.2f} GHz ({self.clock_source}) = {self.fp32:.1f} GFLOP/s; ")
        if self.bf16_isa is None:
            return line + "no native bf16 (neither avx512_bf16 nor amx_bf16): bf16 is shown against fp32 peak only"
        line += f"peak bf16 = 2 x fp32 = {self.bf16:.1f} GFLOP/s ({self.bf16_isa})"
        return line + (", a floor: AMX tiles may go several times higher" if self.bf16_isa == "amx_bf16" else "")


def cpu_peak_gflops(cores: int, cpuinfo: str, max_freq_khz: str | None = None, ghz: float | None = None) -> CpuPeak:
    """Peak GFLOP/s = cores x fp32 lanes x FMA units x 2 FLOP per FMA x GHz; bf16 = 2 x fp32.

    Lanes from the first processor's flags in `cpuinfo` (/proc/cpuinfo's text): avx512f 16, avx2 or fma 8, else
    4 (SSE). FMA units are assumed (FMA_UNITS). The clock is `ghz` if given, else `max_freq_khz` (cpufreq's
    cpuinfo_max_freq), else the "cpu MHz" line: the current clock, which turbo may exceed. bf16 counts as native
    with the avx512_bf16 flag (vdpbf16ps: two bf16 products per fp32 lane, the bit torch's
    cpu._is_avx512_bf16_supported() reads) or amx_bf16, estimated alike at 2x fp32 to stay simple.
    """
    first_processor = cpuinfo.strip().split("\n\n")[0]
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in first_processor.splitlines() if ":" in line)}
    flags = set(fields.get("flags", "").split())
    lanes = 16 if "avx512f" in flags else 8 if flags & {"avx2", "fma"} else 4
    if ghz is not None:
        clock, source = ghz, "--ghz"
    elif max_freq_khz:
        clock, source = int(max_freq_khz) / 1e6, "cpuinfo_max_freq"
    elif "cpu MHz" in fields:
        clock, source = float(fields["cpu MHz"]) / 1e3, "cpu MHz"
    else:
        raise ValueError("no clock in cpufreq or /proc/cpuinfo: pass --ghz")
    bf16_isa = next((isa for isa in ("amx_bf16", "avx512_bf16") if isa in flags), None)
    return CpuPeak(cores, lanes, FMA_UNITS, clock, source, bf16_isa)


def machine_peak(ghz: float | None) -> CpuPeak:
    """This process's peak: torch's threads on the CPUs its affinity allows, this CPU's flags and clock."""
    cores = min(usable_cores(), torch.get_num_threads())
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    return cpu_peak_gflops(cores, Path("/proc/cpuinfo").read_text(),
                           max_freq.read_text() if max_freq.exists() else None, ghz)


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
    """The model and input in `mode`'s memory format ("cl+": channels_last), and the autocast context to run them in."""
    if mode.startswith("cl+"):
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if mode.endswith("bf16"):
        return model, images, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return model, images, nullcontext


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


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs torch's counter sees in one call of `step`: matmuls and convolutions, forward and backward."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def build_steps(make: Callable[[], nn.Module], mode: str, args) -> tuple[nn.Module, Callable[[], object], Callable]:
    """A fresh model in `mode`, with its train step and its inference on one random batch."""
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    model, images, autocast = prepare(make(), images, mode)
    defaults = TrainParams()  # the train stage's optimizer, fused as it builds it
    optimizer = build_optimizer(defaults.optimizer, model.parameters(), lr=1e-3, weight_decay=defaults.weight_decay)

    def infer():
        with torch.inference_mode(), autocast():
            model(images)
    return model, lambda: train_step(model, optimizer, images, target, autocast), infer


def measure(make: Callable[[], nn.Module], mode: str, args) -> tuple[float, float]:
    model, train, infer = build_steps(make, mode, args)
    model.train()
    train_rate = images_per_second(train, args.batch, args.warmup, args.steps)
    model.eval()
    return train_rate, images_per_second(infer, args.batch, args.warmup, args.steps)


def flops_per_image(make: Callable[[], nn.Module], mode: str, args) -> tuple[float, float]:
    """Train-step and inference FLOPs per image, counted once outside the timed loop: they depend on shapes only."""
    model, train, infer = build_steps(make, mode, args)
    model.train()
    train_flops = count_flops(train)
    model.eval()
    return train_flops / args.batch, count_flops(infer) / args.batch


def peak_shares(gflops: float, mode: str, peak: CpuPeak) -> str:
    """`gflops` as % of the fp32 peak, and of the bf16 peak for bf16 rows on a CPU that has one."""
    cells = f"{100 * gflops / peak.fp32:6.1f}"
    if peak.bf16:
        cells += f" {100 * gflops / peak.bf16:6.1f}" if mode.endswith("bf16") else f" {'':6s}"
    return cells


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
    parser.add_argument("--models", nargs="*", choices=list(model_makers(1)),
                        help="subset of model names (the reference is always run)")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--ghz", type=float, help="clock for the peak estimate, where the kernel's is wrong or absent")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--convergence", action="store_true", help="run the convergence check instead")
    parser.add_argument("--conv-steps", type=int, default=30)
    parser.add_argument("--conv-batch", type=int, default=4)
    parser.add_argument("--conv-size", type=int, default=128)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    makers = model_makers(args.classes)
    if args.models:
        makers = {name: make for name, make in makers.items() if name in args.models or name == REFERENCE}
    if args.convergence:
        return convergence(list(makers), args.modes, args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu {torch.backends.cpu.get_cpu_capability()}, "
          f"batch {args.batch}, {args.size}x{args.size}, {args.classes} classes, median of {args.steps} steps; "
          f"load before {os.getloadavg()}")
    peak = machine_peak(args.ghz)
    print(f"CPUs allowed: {usable_cores()}, torch threads: {torch.get_num_threads()}; {peak.describe()}")
    flops = {}
    for name, make in makers.items():
        for mode in args.modes:
            flops[name, mode] = train, infer = flops_per_image(make, mode, args)
            print(f"  {name} {mode}: {train / 1e9:.2f} GFLOP/image train step, {infer / 1e9:.2f} inference",
                  flush=True)
    rounds = []
    for round_ in range(args.rounds):
        rounds.append({})
        for name, make in makers.items():
            for mode in args.modes:
                rounds[-1][name, mode] = train, infer = measure(make, mode, args)
                print(f"  round {round_}: {name} {mode}: train {train:.2f} img/s, infer {infer:.2f} img/s, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load after {os.getloadavg()}\n")
    shares = f"{'% fp32':>6s}" + (f" {'% bf16':>6s}" if peak.bf16 else "")
    print(f"{'model':22s} {'mode':8s} {'train img/s':>11s} {'x smp':>6s} {'GFLOP/s':>8s} {shares} "
          f"{'infer img/s':>11s} {'x smp':>6s} {'GFLOP/s':>8s} {shares}")
    for name, mode in rounds[0]:
        train, infer = (statistics.median(r[name, mode][i] for r in rounds) for i in (0, 1))
        train_ratio, infer_ratio = (statistics.median(r[name, mode][i] / r[REFERENCE, mode][i] for r in rounds)
                                    for i in (0, 1))
        train_flops, infer_flops = flops[name, mode]
        train_gflops, infer_gflops = train * train_flops / 1e9, infer * infer_flops / 1e9
        print(f"{name:22s} {mode:8s} {train:11.2f} {train_ratio:6.2f} {train_gflops:8.2f} "
              f"{peak_shares(train_gflops, mode, peak)} {infer:11.2f} {infer_ratio:6.2f} {infer_gflops:8.2f} "
              f"{peak_shares(infer_gflops, mode, peak)}")


if __name__ == "__main__":
    main()
