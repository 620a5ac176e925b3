"""TCM's cost on a light and a heavy backbone, on the CPU, side by side in one run (fp32).

(a) Inference per clip (1 x 8 frames x 224x224, batch 1) of TSN, TSM and TSM + TCM on
    MobileNetV2 and on ResNet-50: the six models run in turn, round after round; printed are
    the median seconds and, per backbone, TCM/TSM as the ratio of medians and per round (the
    two runs adjacent in time) with its quartiles. With ``--control``, a seventh and eighth
    contender per round: the TSM + TCM models with their TCM layer skipped (the identity),
    whose ratio to TSM shows how far two runs of the same work differ on the machine.
(b) Where TCM's time goes on each backbone: the TCM layer alone on its input inside the model,
    and its parts: MTDM (of which its 1x1 channel reduction; the rest is the correlation and
    the soft-argmax) and TAM, each timed alone on its own input.
(c) With ``--video-minutes M`` (default 10; 0 skips it): ``tcm predict VIDEO --window 2
    --stride 1`` on a generated M-minute 640x360 25 fps H.264 video with a TSM-MobileNetV2 +
    TCM checkpoint (random weights; speed does not depend on them), run as the command a
    user types, decoding included: windows per second and seconds of video per second of wall
    time.

Usage: ``python benchmarks/bench_backbones.py [--repeats 10] [--threads N] [--video-minutes 10]
[--train] [--control]`` (``--train`` also times one training step per TSM/TCM model, as a ratio).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import tcm
from bench_long_video import write_long_video
from random_models import calibrate_batch_norm
from side_by_side import median_side_by_side, medians, paired_ratios, quartiles, time_side_by_side
from tcm.checkpoint import atomic_save, make_checkpoint
from tcm.models import tcm_layers

FRAMES, SIZE, CLASSES = 8, 224, 174
BACKBONES = {"mobilenetv2": "MobileNetV2", "resnet50": "ResNet-50"}


def build(name: str) -> torch.nn.Module:
    """The model with BatchNorm statistics measured on random clips, in eval mode (see
    :func:`random_models.calibrate_batch_norm`: left uncalibrated, MobileNetV2 runs on
    subnormal floats)."""
    torch.manual_seed(0)
    model = tcm.create_model(name, num_classes=CLASSES, num_segments=FRAMES)
    return calibrate_batch_norm(model, FRAMES, 112, batches=2)


def without_tcm(name: str) -> torch.nn.Module:
    """The model ``name`` with its TCM layer skipped: the same work as TSM, for a control."""
    model = build(name)
    for layer in tcm_layers(model.backbone).values():
        layer.forward = lambda x: x
    return model


def inference_figures(repeats: int, control: bool) -> None:
    clip = torch.randn(1, FRAMES, 3, SIZE, SIZE)
    names = [f"{v}_{b}" for b in BACKBONES for v in ("tsn", "tsm", "tcm_tsm")]
    models = {name: build(name) for name in names}
    if control:
        models.update({f"control_{b}": without_tcm(f"tcm_tsm_{b}") for b in BACKBONES})

    def infer(model):
        def run():
            with torch.no_grad():
                model(clip)

        return run

    samples = time_side_by_side({n: infer(m) for n, m in models.items()}, repeats, warmup=2)
    median = medians(samples)
    print(f"(a) inference per clip, 1 x {FRAMES} x {SIZE}x{SIZE}, {repeats} rounds (median s)")
    for backbone, label in BACKBONES.items():
        tsn, tsm, tcm_ = (median[f"{v}_{backbone}"] for v in ("tsn", "tsm", "tcm_tsm"))
        rounds = paired_ratios(samples, f"tcm_tsm_{backbone}", f"tsm_{backbone}")
        low, mid, high = quartiles(rounds)
        print(
            f"  {label:12s} TSN {tsn:.3f}  TSM {tsm:.3f}  TSM+TCM {tcm_:.3f}  "
            f"TCM/TSM {tcm_ / tsm:.3f} (per round {mid:.3f}, quartiles {low:.3f}-{high:.3f})"
        )
        if control:
            same = median[f"control_{backbone}"]
            low, mid, high = quartiles(
                paired_ratios(samples, f"control_{backbone}", f"tsm_{backbone}")
            )
            print(
                f"  {'':12s} control (TCM layer skipped)/TSM {same / tsm:.3f} "
                f"(per round {mid:.3f}, quartiles {low:.3f}-{high:.3f})"
            )
    for backbone, label in BACKBONES.items():
        layer_figures(
            models[f"tcm_tsm_{backbone}"], label, clip, median[f"tsm_{backbone}"], repeats
        )


def layer_figures(model, label: str, clip: torch.Tensor, tsm_seconds: float, repeats: int) -> None:
    ((stage, layer),) = tcm_layers(model.backbone).items()
    captured = {}
    handle = layer.register_forward_pre_hook(lambda m, args: captured.update(x=args[0]))
    with torch.no_grad():
        model(clip)
        handle.remove()
        x = captured["x"]
        fields = layer.mtdm(x)
    parts = {
        "TCM layer": lambda: layer(x),
        "MTDM": lambda: layer.mtdm(x),
        "of which the reduction": lambda: layer.mtdm.chnl_reduction(x),
        "TAM": lambda: layer.tam(fields),
    }

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()

        return run

    seconds = median_side_by_side({k: no_grad(v) for k, v in parts.items()}, repeats, warmup=2)
    shape = "x".join(str(d) for d in x.shape)
    text = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in seconds.items())
    share = seconds["TCM layer"] / tsm_seconds
    print(f"(b) {label}: TCM after {stage} on {shape}: {text}; layer = {share:.1%} of TSM")


def training_figures(repeats: int) -> None:
    clip = torch.randn(1, FRAMES, 3, SIZE, SIZE)
    target = torch.tensor([3])
    for backbone, label in BACKBONES.items():
        steps = {}
        for variant in ("tsm", "tcm_tsm"):
            model = build(f"{variant}_{backbone}").train()
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

            def step(model=model, optimizer=optimizer):
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(clip), target).backward()
                optimizer.step()

            steps[variant] = step
        samples = time_side_by_side(steps, repeats, warmup=2)
        median = medians(samples)
        low, mid, high = quartiles(paired_ratios(samples, "tcm_tsm", "tsm"))
        print(
            f"(train) {label}: TSM {median['tsm']:.3f} s, TSM+TCM {median['tcm_tsm']:.3f} s per "
            f"step; TCM/TSM {median['tcm_tsm'] / median['tsm']:.3f} (per round {mid:.3f}, "
            f"quartiles {low:.3f}-{high:.3f})"
        )


def long_video_figures(minutes: float, folder: Path) -> None:
    video = folder / "long_640x360.mp4"
    seconds = write_long_video(video, minutes, size=360, fps=25, width=640)
    print(f"(c) generated {minutes:g} min of 640x360 at 25 fps in {seconds:.0f} s")
    model = build("tcm_tsm_mobilenetv2")
    checkpoint_path = folder / "tcm_tsm_mobilenetv2.pt"
    checkpoint = make_checkpoint(
        model.state_dict(),
        model_name="tcm_tsm_mobilenetv2",
        num_classes=CLASSES,
        num_segments=FRAMES,
        data={"num_segments": FRAMES, "resize": 256, "input_size": SIZE},
    )
    atomic_save(checkpoint, checkpoint_path)
    command = [
        *(sys.executable, "-m", "tcm.cli.main", "predict", str(video)),
        *("--checkpoint", str(checkpoint_path), "--window", "2", "--stride", "1"),
        *("--json", "--no-progress"),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = json.loads(result.stdout.strip().splitlines()[-1])
    windows = len(report.get("windows", [])) or round(minutes * 60 - 1)
    print(
        f"(c) tcm predict --window 2 --stride 1, TSM-MobileNetV2 + TCM: {windows} windows in "
        f"{wall:.0f} s (start-up included): {windows / wall:.1f} windows/s, "
        f"{minutes * 60 / wall:.1f} s of video per s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--video-minutes", type=float, default=10.0)
    parser.add_argument("--train", action="store_true", help="also time training steps")
    parser.add_argument(
        "--control", action="store_true", help="also time each TCM model with TCM skipped"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    inference_figures(args.repeats, args.control)
    if args.train:
        training_figures(args.repeats)
    if args.video_minutes > 0:
        with tempfile.TemporaryDirectory() as folder:
            long_video_figures(args.video_minutes, Path(folder))


if __name__ == "__main__":
    main()
