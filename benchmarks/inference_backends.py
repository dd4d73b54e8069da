"""Inference images/s of one model in torch fp32, torch bf16 (where the CPU has it natively) and onnxruntime.

Run from the repo root: `python -m benchmarks.inference_backends [--model "unet (default)"] [--batch 8]`.
Every backend runs the same random batch in the same run, round after round, so the ratios against torch fp32
hold when the machine's load changes; each is the median of the rounds' own ratios. torch fp32 runs as predict
runs it (contiguous tensors), torch bf16 as training does on such CPUs (channels_last + bf16 autocast), and
onnxruntime runs the graph `python -m pipeline.export` writes (checked against torch first; its export time and
parity are printed too) with onnxruntime's default threads.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.train_throughput import images_per_second, model_makers
from pipeline.models.onnx_graph import OnnxSegmenter, write_onnx
from pipeline.models.segmenter import SegmentationModel


def backends(model: SegmentationModel, images: torch.Tensor, graph: OnnxSegmenter) -> dict[str, Callable[[], object]]:
    """One inference of `images` per backend; bf16 only where torch says the CPU computes it natively."""
    def torch_fp32():
        with torch.inference_mode():
            model(images)

    steps = {"torch fp32": torch_fp32}
    if torch.cpu._is_avx512_bf16_supported():
        channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)  # a copy: .to() works in place
        images_last = images.contiguous(memory_format=torch.channels_last)

        def torch_bf16():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                channels_last(images_last)
        steps["torch bf16"] = torch_bf16
    steps["onnxruntime"] = lambda: graph(images)
    return steps


def main() -> None:
    makers = model_makers(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(makers), default="unet (default)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    network = model_makers(args.classes)[args.model]()
    model = SegmentationModel(network, [f"class {i}" for i in range(args.classes)], args.size).eval()
    images = torch.rand(args.batch, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        parity = write_onnx(model, Path(tmp) / "model.onnx")
        print(f"{args.model}: ONNX export and check {time.perf_counter() - started:.1f} s, "
              f"{(Path(tmp) / 'model.onnx').stat().st_size / 1e6:.1f} MB; {parity}")
        graph = OnnxSegmenter(Path(tmp) / "model.onnx")
    steps = backends(model, images, graph)
    if "torch bf16" not in steps:
        print("torch bf16: skipped, this CPU has no native bf16 (torch.cpu._is_avx512_bf16_supported() is false)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.classes} classes, median of {args.steps} steps, {args.rounds} rounds; load {os.getloadavg()}")
    rounds = []
    for round_ in range(args.rounds):
        rounds.append({name: images_per_second(step, args.batch, args.warmup, args.steps)
                       for name, step in steps.items()})
        print(f"  round {round_}: " + ", ".join(f"{name} {speed:.2f} img/s" for name, speed in rounds[-1].items()),
              flush=True)
    print(f"load after {os.getloadavg()}\n\n{'backend':12s} {'img/s':>8s} {'x fp32':>7s}")
    for name in steps:
        speed = statistics.median(r[name] for r in rounds)
        ratio = statistics.median(r[name] / r["torch fp32"] for r in rounds)
        print(f"{name:12s} {speed:8.2f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
