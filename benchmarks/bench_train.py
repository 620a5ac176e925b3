"""Training throughput (clips/s) of ``tcm_tsm_resnet50`` against ``tsm_resnet50`` on this machine.

One training step as ``tcm train`` runs it: forward, cross-entropy, backward, gradient-norm
clipping at 200 and the engine's SGD (Nesterov, parameter groups) update, on random clips of
``batch x frames x 3 x size x size``. Steps alternate between the two models and medians are
reported, so load on the machine affects both alike. 174 classes, dropout 0.5, train mode.

Usage::

    python benchmarks/bench_train.py [--batch 2] [--frames 8] [--size 224] [--repeats 5]
                                     [--amp none|bf16] [--channels-last] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import tcm
from side_by_side import medians, time_side_by_side
from tcm.engine.config import OptimConfig
from tcm.engine.evaluation import autocast_context
from tcm.engine.optim import build_optimizer

MODELS = ("tsm_resnet50", "tcm_tsm_resnet50")


def make_step(name: str, args: argparse.Namespace):
    model = tcm.create_model(name, num_classes=174, num_segments=args.frames).train()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, OptimConfig(), lr=0.01)
    clips = torch.randn(args.batch, args.frames, 3, args.size, args.size)
    if args.channels_last:
        clips = clips.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(clips.shape)
    labels = torch.randint(0, 174, (args.batch,))
    device = torch.device("cpu")

    def step() -> None:
        with autocast_context(device, args.amp):
            logits = model(clips)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--amp", choices=("none", "bf16"), default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = {name: make_step(name, args) for name in MODELS}
    # One warm-up each: allocations, kernel selection, extension loading.
    samples = time_side_by_side(steps, args.repeats)
    print(
        f"training step, batch {args.batch} x {args.frames} frames x {args.size}x{args.size}, "
        f"amp {args.amp}, channels_last {args.channels_last}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    median = medians(samples)
    for name in MODELS:
        print(
            f"  {name:18s} {median[name]:7.3f} s/step  {args.batch / median[name]:6.3f} clips/s  "
            f"(min {min(samples[name]):.3f} s, max {max(samples[name]):.3f} s)"
        )
    ratio = median["tcm_tsm_resnet50"] / median["tsm_resnet50"]
    print(f"  tcm / tsm step time: {ratio:.3f}  (TCM costs {100 * (ratio - 1):+.1f}%)")


if __name__ == "__main__":
    main()
