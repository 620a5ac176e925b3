"""The local correlation and MTDM's fields on the CPU: every path side by side in one run.

At TCM's shape (56 pairs, 64 channels, 28x28, patch 15; fp32) it times, alternating between
contenders and reporting medians so that load on the machine affects all alike:

- the correlation forward and forward+backward on the compiled kernels, the pure-PyTorch path
  and the brute-force reference;
- MTDM's fields (correlation, ReLU, kernel soft-argmax), forward and forward+backward, fused
  on the compiled kernels against the unfused pure-PyTorch path;
- torch.mm on 2048x2048 fp32 matrices, this machine's matrix-multiply throughput, in the same
  loop, so each path's useful arithmetic (2 x pairs x P^2 x H x W x C FLOP forward, twice that
  backward) can be given as a fraction of it.

Then, at the demo's shape (``make demo``: 16 clips of 8 frames, 208 pairs of 8x8 maps with 64
channels, patch 15, each training job on one thread), MTDM's fields forward and
forward+backward on one thread, compiled against pure PyTorch.

Peak extra memory: each measurement runs in a fresh process that builds the inputs, warms the
path up on a tiny input (loading libraries, starting threads), resets the kernel's record of
the peak resident set (Linux: ``/proc/self/clear_refs``), then runs one call and reads that
peak (``VmHWM``) against the resident set before the call (``VmRSS``). The difference is the
most memory the call held at once beyond the inputs, temporaries and outputs included
(requires Linux; for the backward it includes the input gradients).

Usage: ``python benchmarks/bench_correlation.py [--repeats 7] [--threads N] [--no-brute-force]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

import torch

import tcm.ops as ops
from side_by_side import median_side_by_side

PAIRS, CHANNELS, SIZE, PATCH = 56, 64, 28, 15
DEMO_PAIRS, DEMO_SIZE = 208, 8
FORWARD_FLOP = 2 * PAIRS * PATCH * PATCH * SIZE * SIZE * CHANNELS
MATMUL_SIZE = 2048


def on_backend(name: str, fn):
    def run():
        with ops.use_backend(name):
            fn()

    return run


def correlation_calls(op, a, b, grad):
    def forward():
        with torch.no_grad():
            op(a, b, PATCH)

    def forward_backward():
        a.grad = b.grad = None
        op(a, b, PATCH).backward(grad)

    return forward, forward_backward


def demo_shape_figures(paths: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    """MTDM's fields at the demo's shape on one thread: seconds per path, forward and both."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(DEMO_PAIRS, CHANNELS, DEMO_SIZE, DEMO_SIZE, requires_grad=True)
        b = torch.randn(DEMO_PAIRS, CHANNELS, DEMO_SIZE, DEMO_SIZE, requires_grad=True)
        grad = torch.randn(DEMO_PAIRS, 3, DEMO_SIZE, DEMO_SIZE)
        forward, both = {}, {}
        for label, name in paths.items():
            fwd, fwd_bwd = correlation_calls(ops.mtdm_fields, a, b, grad)
            forward[label], both[label] = on_backend(name, fwd), on_backend(name, fwd_bwd)
        fwd_times = median_side_by_side(forward, repeats)
        both_times = median_side_by_side(both, repeats)
    finally:
        torch.set_num_threads(threads)
    return {
        label: {"forward_s": fwd_times[label], "forward_backward_s": both_times[label]}
        for label in paths
    }


def matmul_call():
    x, y = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    return lambda: torch.mm(x, y)


MEMORY_SCRIPT = """
import sys, torch, tcm.ops as ops
from tcm.utils.memory import reset_peak_resident, resident_bytes
backend, op_name, mode = sys.argv[1:4]
pairs, channels, size, patch = {pairs}, {channels}, {size}, {patch}
op = {{"correlation": ops.local_correlation, "fields": ops.mtdm_fields,
       "brute force": ops.local_correlation_reference}}[op_name]

ops.set_backend(backend)
torch.manual_seed(0)
a = torch.randn(pairs, channels, size, size, requires_grad=mode == "forward+backward")
b = torch.randn(pairs, channels, size, size, requires_grad=mode == "forward+backward")

def call(p, q):
    out = op(p, q, patch)
    if mode == "forward+backward":
        out.backward(torch.ones_like(out))

with torch.set_grad_enabled(mode == "forward+backward"):
    call(a[:1, :, :6, :6], b[:1, :, :6, :6])
    reset_peak_resident()
    before = resident_bytes()
    call(a, b)
    after = resident_bytes(peak=True)
print(after - before)
"""


def peak_extra_bytes(backend: str, op_name: str, mode: str) -> int:
    script = MEMORY_SCRIPT.format(pairs=PAIRS, channels=CHANNELS, size=SIZE, patch=PATCH)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), backend, op_name, mode],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout
    return int(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-brute-force", action="store_true", help="skip the slow reference")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    compiled = ops.extension_available()
    print(f"torch {torch.__version__}, {args.threads} threads, compiled kernels: {compiled}")

    a = torch.randn(PAIRS, CHANNELS, SIZE, SIZE, requires_grad=True)
    b = torch.randn(PAIRS, CHANNELS, SIZE, SIZE, requires_grad=True)
    grad = torch.randn(PAIRS, PATCH * PATCH, SIZE, SIZE)
    fields_grad = torch.randn(PAIRS, 3, SIZE, SIZE)
    paths = {"pure torch": "torch"}
    if compiled:
        paths = {"compiled": "extension", **paths}
    forward, both = {}, {}
    for label, name in paths.items():
        fwd, fwd_bwd = correlation_calls(ops.local_correlation, a, b, grad)
        forward[f"correlation, {label}"] = on_backend(name, fwd)
        both[f"correlation, {label}"] = on_backend(name, fwd_bwd)
    if not args.no_brute_force:
        fwd, fwd_bwd = correlation_calls(ops.local_correlation_reference, a, b, grad)
        forward["correlation, brute force"], both["correlation, brute force"] = fwd, fwd_bwd
    for label, name in paths.items():
        fwd, fwd_bwd = correlation_calls(ops.mtdm_fields, a, b, fields_grad)
        forward[f"MTDM fields, {label}"] = on_backend(name, fwd)
        both[f"MTDM fields, {label}"] = on_backend(name, fwd_bwd)
    forward["torch.mm"] = both["torch.mm"] = matmul_call()

    fwd_times = median_side_by_side(forward, args.repeats)
    both_times = median_side_by_side(both, args.repeats)
    matmul_rate = (
        2 * MATMUL_SIZE**3 / statistics.median([fwd_times["torch.mm"], both_times["torch.mm"]])
    )
    print(
        f"{PAIRS} pairs x {CHANNELS} ch x {SIZE}x{SIZE}, patch {PATCH}, fp32; "
        f"torch.mm {MATMUL_SIZE}^2: {matmul_rate / 1e9:.1f} GFLOP/s"
    )
    print(
        f"{'':28s} {'forward':>9s} {'GFLOP/s':>8s} {'% mm':>6s} {'fwd+bwd':>9s} "
        f"{'GFLOP/s':>8s} {'% mm':>6s} {'peak fwd':>9s} {'peak f+b':>9s}"
    )
    figures = {"matmul_gflops": matmul_rate / 1e9, "paths": {}}
    for key in forward:
        if key == "torch.mm":
            continue
        op_name, label = key.split(", ")
        backend = paths.get(label, "torch")
        memory_op = "brute force" if label == "brute force" else op_name.split()[-1].lower()
        peak_fwd = peak_extra_bytes(backend, memory_op, "forward")
        peak_both = peak_extra_bytes(backend, memory_op, "forward+backward")
        fwd_rate = FORWARD_FLOP / fwd_times[key]
        both_rate = 3 * FORWARD_FLOP / both_times[key]
        print(
            f"{key:28s} {fwd_times[key] * 1e3:7.1f}ms {fwd_rate / 1e9:8.1f} "
            f"{100 * fwd_rate / matmul_rate:5.1f}% {both_times[key] * 1e3:7.1f}ms "
            f"{both_rate / 1e9:8.1f} {100 * both_rate / matmul_rate:5.1f}% "
            f"{peak_fwd / 2**20:7.1f}MB {peak_both / 2**20:7.1f}MB"
        )
        figures["paths"][key] = {
            "forward_s": fwd_times[key],
            "forward_backward_s": both_times[key],
            "forward_fraction_of_mm": fwd_rate / matmul_rate,
            "forward_backward_fraction_of_mm": both_rate / matmul_rate,
            "peak_extra_forward_bytes": peak_fwd,
            "peak_extra_forward_backward_bytes": peak_both,
        }
    inputs = 2 * PAIRS * CHANNELS * SIZE * SIZE * 4
    volume = PAIRS * PATCH * PATCH * SIZE * SIZE * 4
    print(
        f"(inputs a + b: {inputs / 2**20:.1f} MB; one correlation volume: "
        f"{volume / 2**20:.1f} MB; MTDM fields count the same useful arithmetic as the "
        "correlation)"
    )
    demo = demo_shape_figures(paths, args.repeats)
    print(
        f"demo shape, MTDM fields: {DEMO_PAIRS} pairs x {CHANNELS} ch x "
        f"{DEMO_SIZE}x{DEMO_SIZE}, patch {PATCH}, fp32, 1 thread"
    )
    for label, times in demo.items():
        print(
            f"{label:28s} {times['forward_s'] * 1e3:7.1f}ms forward "
            f"{times['forward_backward_s'] * 1e3:7.1f}ms fwd+bwd"
        )
    figures["demo_shape_fields"] = demo
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
