"""Cost of TCM on the CPU, measured side by side in one run (fp32).

(a) The local correlation at TCM's shape (56 pairs, 64 channels, 28x28, patch 15): forward
    and forward+backward of ``tcm.ops.local_correlation`` against the brute-force reference.
(b) ``tcm_tsm_resnet50`` against ``tsm_resnet50`` on 1 clip x 8 frames x 224x224: inference and
    one training step (forward, backward, SGD update), as ratios; and the TCM layer timed
    alone, as a share of TSM's inference.

Timings alternate between the two contenders and report medians, so load on the machine
affects both alike; each ratio also comes per round (the two runs adjacent in time) with its
quartiles, which shows how much the machine's speed varied during the run. Usage: ``python benchmarks/bench_model.py [--repeats 15] [--threads N]``.
"""

from __future__ import annotations

import argparse

import torch

import tcm
from side_by_side import (
    median_side_by_side,
    medians,
    paired_ratios,
    quartiles,
    time_side_by_side,
)
from tcm.ops import local_correlation, local_correlation_reference


def correlation_figures(repeats: int) -> None:
    pairs, channels, size, patch = 56, 64, 28, 15
    a = torch.randn(pairs, channels, size, size, requires_grad=True)
    b = torch.randn(pairs, channels, size, size, requires_grad=True)
    grad = torch.randn(pairs, patch * patch, size, size)

    def forward(op):
        def run():
            with torch.no_grad():
                op(a, b, patch)

        return run

    def forward_backward(op):
        def run():
            a.grad = b.grad = None
            op(a, b, patch).backward(grad)

        return run

    fwd = median_side_by_side(
        {"tcm": forward(local_correlation), "brute force": forward(local_correlation_reference)},
        repeats,
    )
    both = median_side_by_side(
        {
            "tcm": forward_backward(local_correlation),
            "brute force": forward_backward(local_correlation_reference),
        },
        max(3, repeats // 2),
    )
    flops = 2 * pairs * patch * patch * size * size * channels
    print(f"(a) local correlation, {pairs} pairs x {channels} ch x {size}x{size}, patch {patch}")
    for name in fwd:
        print(
            f"    {name:12s} forward {fwd[name] * 1e3:8.1f} ms ({flops / fwd[name] / 1e9:5.1f} GFLOP/s)"
            f"   forward+backward {both[name] * 1e3:8.1f} ms"
        )
    print(
        f"    speed-up over brute force: forward {fwd['brute force'] / fwd['tcm']:.2f}x, "
        f"forward+backward {both['brute force'] / both['tcm']:.2f}x"
    )


def tcm_layer_seconds(model: torch.nn.Module, clip: torch.Tensor, repeats: int) -> float:
    """Median seconds of the model's TCM layer alone, on the input it gets inside the model."""
    (layer,) = model.backbone.tcm_layers.values()
    seen = []
    handle = layer.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        model(clip)
    handle.remove()

    def run():
        with torch.no_grad():
            layer(seen[0])

    return median_side_by_side({"layer": run}, 5 * repeats)["layer"]


def model_figures(repeats: int) -> None:
    clip = torch.randn(1, 8, 3, 224, 224)
    target = torch.tensor([3])
    models = {
        name: tcm.create_model(name, num_classes=174, num_segments=8)
        for name in ("tsm_resnet50", "tcm_tsm_resnet50")
    }

    def inference(model):
        model.eval()

        def run():
            with torch.no_grad():
                model(clip)

        return run

    def train_step(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def run():
            model.train()
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(clip), target).backward()
            optimizer.step()

        return run

    infer_runs = time_side_by_side({k: inference(m) for k, m in models.items()}, repeats)
    train_runs = time_side_by_side(
        {k: train_step(m) for k, m in models.items()}, max(3, repeats // 2)
    )
    infer, train = medians(infer_runs), medians(train_runs)
    models["tcm_tsm_resnet50"].eval()
    layer = tcm_layer_seconds(models["tcm_tsm_resnet50"], clip, repeats)
    print("(b) 1 clip x 8 frames x 224x224, fp32")
    for name in models:
        print(f"    {name:18s} inference {infer[name]:7.3f} s   training step {train[name]:7.3f} s")
    for what, runs, times, target in (
        ("inference", infer_runs, infer, 1.03),
        ("training-step", train_runs, train, 1.15),
    ):
        ratio = times["tcm_tsm_resnet50"] / times["tsm_resnet50"]
        low, mid, high = quartiles(paired_ratios(runs, "tcm_tsm_resnet50", "tsm_resnet50"))
        print(
            f"    TCM/TSM {what + ' ratio':22s} {ratio:.3f}  (target <= {target}); per round: "
            f"median {mid:.3f}, quartiles {low:.3f}-{high:.3f}"
        )
    print(
        f"    TCM layer alone (inference, its input inside the model): {layer * 1e3:.1f} ms, "
        f"{layer / infer['tsm_resnet50']:.1%} of TSM's inference"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads")
    correlation_figures(args.repeats)
    model_figures(args.repeats)


if __name__ == "__main__":
    main()
