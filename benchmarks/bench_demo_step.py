"""A training step of the demo's models, TSM and TSM + TCM, side by side on the CPU.

The models ``make demo`` trains: ResNet-10 with stage widths 16-128, TCM after layer2 (8x8
maps, 32 channels), 11 classes, 16 clips x 8 frames x 64x64 per step, one thread each, with the
allocator setting of ``tcm demo`` (freed memory kept). One step: forward, cross-entropy,
backward, SGD with momentum. The two models alternate, ``--rounds`` rounds after warm-up;
printed are the median step of each, TCM/TSM as the ratio of medians and per round (two runs
adjacent in time) with its quartiles. With ``--compile`` both models also run through
``torch.compile`` (inductor), in the same rounds. Then where TCM's time goes, each part timed
alone, forward and backward, on the input it gets inside the model: the TCM layer, MTDM's
fields (the operator ``tcm::mtdm_fields`` on its 208 frame pairs), MTDM whole, and TAM.

Usage: ``python benchmarks/bench_demo_step.py [--rounds 100] [--threads 1] [--compile]`` (fewer
rounds are not enough where the machine's speed drifts: 20 rounds once gave 1.29 as the ratio
of medians and 1.41 per round)
"""

from __future__ import annotations

import argparse

from tcm.utils.allocator import keep_freed_memory

keep_freed_memory()  # as tcm demo does, before the first large allocation

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tcm  # noqa: E402
import tcm.layers.mtdm  # noqa: E402
from side_by_side import medians, paired_ratios, quartiles, time_side_by_side  # noqa: E402
from tcm.models import compile_model, tcm_layers  # noqa: E402
from tcm.ops import mtdm_fields  # noqa: E402

MODELS = {"TSM": "tsm_resnet10", "TSM + TCM": "tcm_tsm_resnet10"}
DEMO = {"widths": [16, 32, 64, 128], "stem_width": 16}
CLIPS, FRAMES, SIZE, CLASSES = 16, 8, 64, 11


def make_step(name: str, clips: torch.Tensor, labels: torch.Tensor, compiled: bool = False):
    torch.manual_seed(0)
    model = tcm.create_model(name, num_classes=CLASSES, num_segments=FRAMES, **DEMO).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    forward = compile_model(model) if compiled else model

    def step() -> None:
        F.cross_entropy(forward(clips), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def tcm_input(model: torch.nn.Module, clips: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model's TCM layer and the ``(N*T, C, H, W)`` features it gets."""
    (layer,) = tcm_layers(model.backbone).values()
    seen = []
    hook = layer.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach()))
    with torch.no_grad():
        model(clips)
    hook.remove()
    return layer, seen[0]


def forward_backward(fn, *inputs: torch.Tensor):
    """A step that runs ``fn(*inputs)`` and back-propagates a fixed random gradient."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    grad = torch.randn(fn(*leaves).shape)
    return lambda: fn(*leaves).backward(grad)


def parts(model: torch.nn.Module, clips: torch.Tensor) -> dict[str, object]:
    layer, x = tcm_input(model, clips)
    mtdm = layer.mtdm
    with torch.no_grad():
        fields_in = mtdm(x)
    captured = []
    original = tcm.layers.mtdm.mtdm_fields

    def spy(a, b, *args):
        captured.append((a.detach(), b.detach(), *args))
        return original(a, b, *args)

    tcm.layers.mtdm.mtdm_fields = spy  # MTDM's frame pairs as the operator receives them
    try:
        with torch.no_grad():
            mtdm(x)
    finally:
        tcm.layers.mtdm.mtdm_fields = original
    a, b, *args = captured[0]
    fields = forward_backward(lambda p, q: mtdm_fields(p, q, *args), a, b)
    return {
        "TCM layer": forward_backward(layer, x),
        "  MTDM": forward_backward(mtdm, x),
        "    fields (correlation + soft-argmax)": fields,
        "  TAM": forward_backward(layer.tam, fields_in),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    args = parser.parse_args()
    if args.rounds < 2 or args.threads < 1:
        parser.error("--rounds must be at least 2 (quartiles) and --threads at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clips = torch.randn(CLIPS, FRAMES, 3, SIZE, SIZE)
    labels = torch.randint(0, CLASSES, (CLIPS,))
    built = {label: make_step(name, clips, labels) for label, name in MODELS.items()}
    if args.compile:
        for label, name in MODELS.items():
            built[f"{label}, compiled"] = make_step(name, clips, labels, compiled=True)
    samples = time_side_by_side({label: step for label, (_, step) in built.items()}, args.rounds, 3)
    median = medians(samples)
    print(
        f"training step, demo models, {CLIPS} clips x {FRAMES} x {SIZE}x{SIZE}, "
        f"{torch.get_num_threads()} thread(s), {args.rounds} rounds"
    )
    for label in built:
        print(f"  {label:20s} {1000 * median[label]:7.1f} ms")
    for kind in ("", ", compiled") if args.compile else ("",):
        tcm_label, tsm_label = f"TSM + TCM{kind}", f"TSM{kind}"
        first, mid, third = quartiles(paired_ratios(samples, tcm_label, tsm_label))
        ratio = median[tcm_label] / median[tsm_label]
        print(
            f"  TCM/TSM{kind}: {ratio:.3f} (per round: median {mid:.3f}, quartiles "
            f"{first:.3f}-{third:.3f})"
        )
    timed = medians(time_side_by_side(parts(built["TSM + TCM"][0], clips), args.rounds, 3))
    print("TCM alone, forward + backward, on its input inside the model")
    for label, seconds in timed.items():
        print(f"  {label:40s} {1000 * seconds:6.1f} ms")


if __name__ == "__main__":
    main()
