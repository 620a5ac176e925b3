"""TCM's operators on small maps against torch's, side by side, forward + backward on the CPU.

At the shapes of the demo's TCM layer (128 frames of 8 x 8 maps by default, channels-last,
one thread): the narrow 3x3 convolutions (:mod:`tcm.ops.narrow_conv3x3`, against oneDNN's),
the 1x1 convolutions as matrix products (:mod:`tcm.ops.pointwise_conv`, against oneDNN's), the
fused batch norm + ReLU (:mod:`tcm.ops.batch_norm_relu`, against torch's two modules) and the
temporal attention + sum (:mod:`tcm.ops.attention_add`, against the eager ops). Each pair runs
alternately, ``--rounds`` rounds after warm-up; printed are the medians, their ratio and the
quartiles of the per-round ratios.

Usage: ``python benchmarks/bench_small_ops.py [--rounds 50] [--frames 128] [--size 8]
[--threads 1]``
"""

from __future__ import annotations

import argparse

from tcm.utils.allocator import keep_freed_memory

keep_freed_memory()  # as tcm demo does, before the first large allocation

import torch  # noqa: E402
from torch import nn  # noqa: E402

from side_by_side import medians, paired_ratios, quartiles, time_side_by_side  # noqa: E402
from tcm.layers.tam import TemporalAttention  # noqa: E402
from tcm.ops.attention_add import attention_add, attention_kernels_for  # noqa: E402
from tcm.ops.batch_norm_relu import batch_norm_relu  # noqa: E402
from tcm.ops.narrow_conv3x3 import narrow_conv3x3, narrow_kernels_for  # noqa: E402
from tcm.ops.pointwise_conv import pointwise_applies, pointwise_conv  # noqa: E402

FRAMES_PER_CLIP = 8


def maps(frames: int, channels: int, size: int) -> torch.Tensor:
    x = torch.randn(frames, channels, size, size)
    return x.contiguous(memory_format=torch.channels_last)


def forward_backward(fn, *inputs: torch.Tensor):
    """A step that runs ``fn(*inputs)`` and back-propagates a fixed random gradient."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    grad = torch.randn(out.shape).contiguous(memory_format=torch.channels_last)
    return lambda: fn(*leaves).backward(grad)


def narrow_pairs(frames: int, size: int) -> dict[str, tuple]:
    pairs = {}
    for channels, group_channels in ((6, 2), (16, 1), (32, 1), (64, 1)):
        conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels // group_channels)
        x = maps(frames, channels, size)
        kernels = narrow_kernels_for(conv, x, conv.weight)
        if kernels is None:
            raise SystemExit("the compiled kernels do not load here")
        compiled = forward_backward(
            lambda v, c=conv, k=kernels: narrow_conv3x3(v, c.weight, c.bias, k), x
        )
        label = f"3x3 {channels} ch, {group_channels} per group"
        pairs[label] = (compiled, forward_backward(conv, x))
    return pairs


def pointwise_pairs(frames: int, size: int) -> dict[str, tuple]:
    pairs = {}
    for in_channels, out_channels in ((6, 16), (16, 32), (32, 64), (64, 32), (64, 256)):
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        x = maps(frames, in_channels, size)
        # Timed beyond its limits too, to show why they are where they are.
        beyond = "" if pointwise_applies(conv, x, conv.weight) else " (not used here)"
        product = forward_backward(lambda v, c=conv: pointwise_conv(v, c.weight, None), x)
        pairs[f"1x1 {in_channels} -> {out_channels}{beyond}"] = (product, forward_backward(conv, x))
    return pairs


def batch_norm_pairs(frames: int, size: int) -> dict[str, tuple]:
    pairs = {}
    for channels in (6, 16, 32, 64):
        bn, relu = nn.BatchNorm2d(channels), nn.ReLU()
        z = maps(frames, channels, size)
        fused = forward_backward(lambda v, b=bn, r=relu: batch_norm_relu(v, b, r), z)
        eager = forward_backward(lambda v, b=bn, r=relu: r(b(v)), z)
        pairs[f"batch norm + ReLU {channels} ch"] = (fused, eager)
    return pairs


def attention_pair(frames: int, size: int) -> dict[str, tuple]:
    attention = TemporalAttention(FRAMES_PER_CLIP)
    base, x = maps(frames, 32, size), maps(frames, 32, size)
    kernel = attention.conv.weight
    kernels = attention_kernels_for(base, x, kernel)
    if kernels is None:
        raise SystemExit("the compiled kernels do not load here")
    fused = forward_backward(
        lambda b, v: attention_add(b, v, kernel, FRAMES_PER_CLIP, kernels), base, x
    )
    eager = forward_backward(lambda b, v: b + attention(v), base, x)
    return {"attention + sum 32 ch": (fused, eager)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--frames", type=int, default=128, help="a multiple of 8")
    parser.add_argument("--size", type=int, default=8, help="maps of size x size")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.rounds < 2 or args.threads < 1 or args.frames % FRAMES_PER_CLIP or args.size < 1:
        parser.error("--rounds >= 2, --threads >= 1, --frames a multiple of 8, --size >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = {
        **narrow_pairs(args.frames, args.size),
        **pointwise_pairs(args.frames, args.size),
        **batch_norm_pairs(args.frames, args.size),
        **attention_pair(args.frames, args.size),
    }
    print(
        f"forward + backward, {args.frames} x C x {args.size} x {args.size} channels-last, "
        f"{torch.get_num_threads()} thread(s), {args.rounds} rounds: tcm's op vs torch's"
    )
    print(f"  {'':36s} {'tcm':>9s} {'torch':>9s}  ratio (per round: quartiles)")
    for label, (ours, theirs) in pairs.items():
        samples = time_side_by_side({"tcm": ours, "torch": theirs}, args.rounds, 3)
        median = medians(samples)
        first, _, third = quartiles(paired_ratios(samples, "tcm", "torch"))
        print(
            f"  {label:36s} {1e6 * median['tcm']:7.0f}us {1e6 * median['torch']:7.0f}us  "
            f"{median['tcm'] / median['torch']:.2f} ({first:.2f}-{third:.2f})"
        )


if __name__ == "__main__":
    main()
