"""The throughput benchmark's peak estimate and FLOP counts: the "% of peak" columns are only as right as both."""
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from benchmarks.train_throughput import count_flops, cpu_peak_gflops, flops_per_image, train_step


def cpuinfo(flags: str, mhz: str | None = "3000.000", processors: int = 2) -> str:
    """/proc/cpuinfo's text: one block per processor, blank-line separated, as the kernel writes it."""
    block = f"processor\t: {{}}\nmodel name\t: Fake CPU\nflags\t\t: fpu sse sse2 {flags}\n"
    block += f"cpu MHz\t\t: {mhz}\n" if mhz else ""
    return "\n".join(block.format(i) for i in range(processors))


def test_avx2_peak_is_cores_lanes_fma_units_two_flop_ghz():
    peak = cpu_peak_gflops(2, cpuinfo("avx avx2 fma"))
    assert (peak.cores, peak.lanes, peak.fma_units, peak.ghz, peak.clock_source) == (2, 8, 2, 3.0, "cpu MHz")
    assert peak.fp32 == pytest.approx(2 * 8 * 2 * 2 * 3.0)  # 192, DESIGN.md's ~190 for two AVX2 cores
    assert peak.bf16 is None and "no native bf16" in peak.describe()


def test_avx512_bf16_doubles_the_lanes_and_cpufreq_max_beats_cpu_mhz():
    peak = cpu_peak_gflops(1, cpuinfo("avx2 fma avx512f avx512_bf16"), max_freq_khz="3500000\n")
    assert (peak.lanes, peak.ghz, peak.clock_source, peak.bf16_isa) == (16, 3.5, "cpuinfo_max_freq", "avx512_bf16")
    assert peak.fp32 == pytest.approx(16 * 2 * 2 * 3.5)
    assert peak.bf16 == pytest.approx(2 * peak.fp32)


def test_ghz_override_sse_lanes_and_amx():
    peak = cpu_peak_gflops(4, cpuinfo("amx_bf16 amx_tile"), max_freq_khz="3500000", ghz=2.0)
    assert (peak.lanes, peak.ghz, peak.clock_source) == (4, 2.0, "--ghz")
    assert peak.fp32 == pytest.approx(4 * 4 * 2 * 2 * 2.0)
    assert peak.bf16 == pytest.approx(2 * peak.fp32) and "AMX" in peak.describe()


def test_no_clock_anywhere_asks_for_ghz():
    with pytest.raises(ValueError, match="--ghz"):
        cpu_peak_gflops(1, cpuinfo("avx2", mhz=None))


CIN, COUT, K, H, W, BATCH = 3, 5, 3, 8, 8, 2
CONV_FORWARD = 2 * CIN * COUT * K * K * H * W * BATCH  # one multiply and one add per weight per output pixel


def conv_step(input_requires_grad: bool) -> int:
    torch.manual_seed(0)
    conv = nn.Conv2d(CIN, COUT, K, padding=K // 2)
    images = torch.rand(BATCH, CIN, H, W, requires_grad=input_requires_grad)
    target = torch.randint(0, COUT, (BATCH, H, W))
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1)
    return count_flops(lambda: train_step(conv, optimizer, images, target, nullcontext))


def test_conv_train_step_counts_forward_and_both_gradients():
    assert conv_step(input_requires_grad=True) == 3 * CONV_FORWARD  # forward, input gradient, weight gradient
    assert conv_step(input_requires_grad=False) == 2 * CONV_FORWARD  # a first layer has no input gradient


def test_flops_per_image_are_per_image_and_the_same_in_channels_last_bf16():
    args = SimpleNamespace(batch=BATCH, size=H, classes=COUT)
    for mode in ("fp32", "cl+bf16"):
        train, infer = flops_per_image(lambda: nn.Conv2d(CIN, COUT, K, padding=K // 2), mode, args)
        assert (train, infer) == (2 * CONV_FORWARD / BATCH, CONV_FORWARD / BATCH)
