"""``tcm prepare`` on full-size generated annotations of the five data sets: wall time and peak
memory.

For each data set the official annotation files are generated at their real size, and the media
laid out on disk as the downloaders do (hard links to one small file, and frame folders of
``--frames`` links to one JPEG), so that ``tcm prepare`` finds every entry:

- Something-Something V1: 174 classes, 86,017 + 11,522 frame folders;
- Something-Something V2: 174 templates, 168,913 + 24,777 WebM files;
- Kinetics-400: 400 classes, 240,000 + 20,000 clips in ``train/<class>/`` and ``val/<class>/``;
- UCF-101: 101 classes, 9,537 + 3,783 AVI files (split 1);
- HMDB-51: 51 classes, 3,570 + 1,530 AVI files (split 1; 70 + 30 per class).

Each ``tcm prepare`` runs in its own process; its peak memory is the process's maximum resident
set (``ru_maxrss`` of ``wait4``). No video is decoded.

Usage:
    python benchmarks/bench_prepare.py [--scale 1.0] [--datasets kinetics400 sthv2 ...]
        [--frames 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # (train, val) entries at full size
    "sthv1": (86_017, 11_522),
    "sthv2": (168_913, 24_777),
    "kinetics400": (240_000, 20_000),
    "ucf101": (9_537, 3_783),
    "hmdb51": (3_570, 1_530),
}
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # a minimal JFIF


def _names(rng: random.Random, count: int, words: int = 3) -> list[str]:
    vocabulary = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(600)
    ]
    names: set[str] = set()
    while len(names) < count:
        names.add(" ".join(rng.sample(vocabulary, rng.randint(1, words))))
    return sorted(names)


class Media:
    """Hard links to one file (or small files where links are refused)."""

    def __init__(self, folder: Path) -> None:
        self.video = folder / "one_video.bin"
        self.video.write_bytes(b"\x00" * 64)
        self.jpeg = folder / "one_frame.jpg"
        self.jpeg.write_bytes(JPEG)

    def link(self, source: Path, target: Path) -> None:
        try:
            os.link(source, target)
        except OSError:
            target.write_bytes(source.read_bytes())

    def video_at(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.link(self.video, path)

    def frames_at(self, folder: Path, count: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            self.link(self.jpeg, folder / f"{i:05d}.jpg")


def _sizes(dataset: str, scale: float) -> tuple[int, int]:
    return tuple(max(1, round(n * scale)) for n in SIZES[dataset])


def make_sthv1(ann: Path, root: Path, media: Media, scale: float, frames: int, rng) -> int:
    classes = _names(rng, 174, 6)
    (ann / "something-something-v1-labels.csv").write_text("\n".join(classes) + "\n")
    clip = 1
    for split, count in zip(("train", "validation"), _sizes("sthv1", scale), strict=True):
        lines = []
        for _ in range(count):
            lines.append(f"{clip};{rng.choice(classes)}")
            media.frames_at(root / str(clip), frames)
            clip += 1
        (ann / f"something-something-v1-{split}.csv").write_text("\n".join(lines) + "\n")
    return clip - 1


def make_sthv2(ann: Path, root: Path, media: Media, scale: float, frames: int, rng) -> int:
    templates = [f"Putting [something] {name}" for name in _names(rng, 174, 4)]
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}
    (ann / "labels.json").write_text(json.dumps(labels))
    clip, total = 1, 0
    for split, count in zip(("train", "validation"), _sizes("sthv2", scale), strict=True):
        items = []
        for _ in range(count):
            template = rng.choice(templates)
            items.append(
                {"id": str(clip), "label": template, "template": template, "placeholders": ["a"]}
            )
            media.video_at(root / f"{clip}.webm")
            clip += 1
        (ann / f"{split}.json").write_text(json.dumps(items))
        total += count
    return total


def make_kinetics400(ann: Path, root: Path, media: Media, scale: float, frames: int, rng) -> int:
    classes = _names(rng, 400)
    letters = string.ascii_letters + string.digits + "-_"
    total = 0
    for split, count in zip(("train", "val"), _sizes("kinetics400", scale), strict=True):
        with open(ann / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for _ in range(count):
                name, start = rng.choice(classes), rng.randrange(600)
                youtube_id = "".join(rng.choices(letters, k=11))
                writer.writerow([name, youtube_id, start, start + 10, split])
                media.video_at(
                    root / split / name / f"{youtube_id}_{start:06d}_{start + 10:06d}.mp4"
                )
        total += count
    return total


def make_ucf101(ann: Path, root: Path, media: Media, scale: float, frames: int, rng) -> int:
    classes = ["".join(w.capitalize() for w in name.split()) for name in _names(rng, 101, 2)]
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = _sizes("ucf101", scale)
    for split, count in (("trainlist01", train), ("testlist01", test)):
        lines = []
        for k in range(count):
            label = k % len(classes)
            video = f"{classes[label]}/v_{classes[label]}_g{k // 101 % 25 + 1:02d}_c{k:05d}.avi"
            media.video_at(root / video)
            lines.append(f"{video} {label + 1}" if split.startswith("train") else video)
        (ann / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return train + test


def make_hmdb51(ann: Path, root: Path, media: Media, scale: float, frames: int, rng) -> int:
    classes = [name.replace(" ", "_") for name in _names(rng, 51, 2)]
    train, test = _sizes("hmdb51", scale)
    per_train, per_test = max(1, train // 51), max(1, test // 51)
    for name in classes:
        lines = []
        for k in range(per_train + per_test + 10):  # 10 unused videos per class
            video = f"{name}_video_{k:04d}.avi"
            flag = 1 if k < per_train else 2 if k < per_train + per_test else 0
            media.video_at(root / name / video)
            lines.append(f"{video} {flag}")
        (ann / f"{name}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return (per_train + per_test) * len(classes)


MAKERS = {
    "sthv1": make_sthv1,
    "sthv2": make_sthv2,
    "kinetics400": make_kinetics400,
    "ucf101": make_ucf101,
    "hmdb51": make_hmdb51,
}


def run_prepare(dataset: str, ann: Path, root: Path, out: Path) -> tuple[float, int, str]:
    """Wall seconds, peak resident bytes and the last output line of one ``tcm prepare``."""
    command = [sys.executable, "-m", "tcm.cli.main", "prepare", dataset, "--annotations", str(ann)]
    command += ["--root", str(root), "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"tcm prepare {dataset} failed:\n{output}")
    return wall, usage.ru_maxrss * 1024, output.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(MAKERS), default=list(MAKERS))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
    parser.add_argument("--frames", type=int, default=2, help="images per frame folder")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    print(
        f"{'dataset':12} {'entries':>8} {'generated (s)':>13} {'prepare (s)':>11} {'µs/entry':>9} {'peak MB':>8}"
    )
    try:
        for dataset in args.datasets:
            folder = base / dataset
            ann, root, out = folder / "annotations", folder / "media", folder / "lists"
            ann.mkdir(parents=True, exist_ok=True)
            root.mkdir(exist_ok=True)
            start = time.perf_counter()
            entries = MAKERS[dataset](
                ann, root, Media(folder), args.scale, args.frames, random.Random(args.seed)
            )
            generated = time.perf_counter() - start
            wall, peak, last = run_prepare(dataset, ann, root, out)
            print(
                f"{dataset:12} {entries:8d} {generated:13.1f} {wall:11.1f} "
                f"{1e6 * wall / entries:9.1f} {peak / 1e6:8.0f}   ({last})",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
