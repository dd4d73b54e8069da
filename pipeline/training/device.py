"""Where and in which precision to train: the fastest choice that still converges on each device.

On CUDA, bf16 autocast where the GPU supports it, else fp16 with a gradient scaler. On a CPU, bf16
autocast only with native bf16 units (AVX512-BF16 or AMX): without them (e.g. AVX2-only CPUs) bf16
convolutions run several times slower than fp32 (measured in benchmarks/train_throughput.py).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def pick_precision(name: str, device: torch.device) -> str:
    """'fp32', 'bf16' or 'fp16' for `train.precision` = auto | fp32 | bf16 | fp16."""
    if name != "auto":
        if name == "fp16" and device.type == "cpu":
            raise ValueError("train.precision: fp16 autocast is for CUDA; on a CPU choose fp32, bf16 or auto")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def memory_format(device: torch.device, precision: str) -> torch.memory_format:
    """channels_last on CPUs in any precision (in fp32 oneDNN trains the default U-Net 1.2-1.5x as fast with
    AVX-512, 1.1x with AVX2: benchmarks/train_throughput.py, cl+fp32) and with autocast on GPUs; fp32 on a GPU
    keeps the contiguous layout its fp32 kernels are tuned for."""
    return torch.channels_last if device.type == "cpu" or precision != "fp32" else torch.contiguous_format


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
