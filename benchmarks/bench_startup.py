"""From launch to the first training step: a Kinetics-size list against a small one.

Two data sets of hard links to one real clip, laid out as Kinetics-400 (class folders): one of
``--large`` training entries (and a tenth of that for validation), one of ``--small``. The same
small TCM-TSM-ResNet-10 (4 frames of 32x32, 2 loader workers) is trained on each with ``tcm
train`` in a new process, and the time from launch to the first step row in ``metrics.jsonl``
is taken (then the run is stopped), the two sizes alternating over ``--rounds``. What grows
with the list is reading it (once per process), checking its labels and building the datasets.

Usage:
    python benchmarks/bench_startup.py [--large 240000] [--small 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DEFAULT_VIDEO = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"
) / "kinetics_arm_wrestling.mp4"
CLASSES = 400
LINKS_PER_FILE = 50_000  # below ext4's limit of hard links to one file (65,000)


def make_set(folder: Path, video: Path, train: int) -> Path:
    """``train`` + ``train // 10`` hard links in class folders, the lists and a config."""
    root = folder / "videos"
    for label in range(CLASSES):
        (root / f"class {label:03d}").mkdir(parents=True)
    for split, count in (("train", train), ("val", max(CLASSES, train // 10))):
        with open(folder / f"{split}.txt", "w") as listing:
            for i in range(count):
                label = i % CLASSES
                name = f"class {label:03d}/{split}_{i:07d}_000010_000020.mp4"
                if i % LINKS_PER_FILE == 0:
                    source = folder / f"{split}_{i // LINKS_PER_FILE}.mp4"
                    source.write_bytes(video.read_bytes())
                os.link(source, root / name)
                listing.write(f"{name} {label}\n")
    (folder / "classes.txt").write_text("".join(f"class {i:03d}\n" for i in range(CLASSES)))
    config = {
        "model": {
            "name": "tcm_tsm_resnet10",
            "num_segments": 4,
            "kwargs": {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 5},
        },
        "data": {
            "root": str(root),
            "train_list": str(folder / "train.txt"),
            "val_list": str(folder / "val.txt"),
            "classes": str(folder / "classes.txt"),
            "input_size": 32,
            "resize": [36, 44],
            "batch_size": 4,
            "num_workers": 2,
        },
        "optim": {"lr": 0.01, "base_batch_size": None},
        "schedule": {"epochs": 1},
        "train": {"device": "cpu", "tensorboard": False, "log_interval": 1},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def time_to_first_step(config: Path, work_dir: Path, limit: float = 600.0) -> float:
    """Seconds from launching ``tcm train`` to its first step row; the run is then stopped."""
    command = [sys.executable, "-m", "tcm.cli.main", "train", str(config)]
    command += ["--work-dir", str(work_dir), "--no-progress"]
    metrics = work_dir / "metrics.jsonl"
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        while time.perf_counter() - start < limit:
            if process.poll() is not None:
                raise RuntimeError(f"tcm train ended early:\n{process.stderr.read().decode()}")
            if metrics.is_file() and any(
                json.loads(line).get("kind") == "step" for line in metrics.read_text().splitlines()
            ):
                return time.perf_counter() - start
            time.sleep(0.05)
        raise RuntimeError(f"no step after {limit} s")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its loader workers
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--large", type=int, default=240_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        video = folder / "clip.mp4"
        video.write_bytes(args.video.read_bytes())
        configs = {}
        for size in (args.small, args.large):
            start = time.perf_counter()
            configs[size] = make_set(folder / f"set_{size}", video, size)
            print(
                f"{size} + {max(CLASSES, size // 10)} entries made in {time.perf_counter() - start:.0f} s"
            )
        times: dict[int, list[float]] = {size: [] for size in configs}
        for round_ in range(args.rounds):
            for size, config in configs.items():
                seconds = time_to_first_step(config, folder / f"run_{size}_{round_}")
                times[size].append(seconds)
                print(
                    f"round {round_ + 1}: {size:7d} entries: {seconds:.1f} s to the first step",
                    flush=True,
                )
        small, large = (statistics.median(times[s]) for s in (args.small, args.large))
        print(
            f"median: {args.small} entries {small:.1f} s, {args.large} entries {large:.1f} s, ratio {large / small:.2f}"
        )


if __name__ == "__main__":
    main()
