"""Throughput of the data pipeline on a real 10-second clip, per loader worker.

Training clips (8 segments, multi-scale crop, flip, normalisation; 224x224), one process and
one thread unless said, made side by side (alternating, so load on the machine affects all
alike) from the same video stored three ways:

- the original file (H.264, 4 key frames in 280 frames), 1 decoder;
- the original file with ``--decode-threads`` decoders in parallel threads
  (``data.decode_threads``: each decodes some of the stretches that start at a key frame);
- the file re-encoded by ``tcm prepare --reencode`` (a key frame every 8 frames, no B-frames),
  with 1 decoder and with ``--decode-threads``;
- JPEG frame folders, extracted by ``tcm prepare --extract-frames`` at the video's size, read
  in one thread and with ``--decode-threads`` threads (the images split between them).

Then where a clip's time goes for each (open and index, decode, colour conversion to RGB, each
augmentation step, normalisation) and how many frames are decoded per clip; the test clip
(centre crop); and a DataLoader with ``--workers`` worker processes.

Usage:
    python benchmarks/bench_data.py [--video PATH] [--repeats 40] [--workers 2]
        [--decode-threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

import tcm.data.video_reader as video_reader
from side_by_side import medians, time_side_by_side
from tcm.data import Preprocessing, StorageOptions, VideoRecord, build_dataset, collate_clips
from tcm.data.datasets import VideoDataset
from tcm.data.extract import extract_frames
from tcm.data.media import open_media
from tcm.data.reencode import reencode_video
from tcm.data.transforms import normalize
from tcm.data.video_reader import VideoReader

DEFAULT_VIDEO = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "videos"
    / "kinetics_arm_wrestling.mp4"
)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _clip_maker(dataset: VideoDataset):
    """A function that makes the next training clip (epoch 0, 1, ...: new draws each time)."""
    epochs = itertools.count()

    def make() -> None:
        dataset.set_epoch(next(epochs))
        dataset[0]

    return make


def stage_times(dataset: VideoDataset, epoch: int) -> tuple[dict[str, float], int]:
    """Seconds per stage of item 0 at ``epoch`` (the draws of ``dataset[0]``), and the frames
    decoded. Mirrors :meth:`VideoDataset.load` step by step."""
    record = dataset.records[0]
    rng = np.random.default_rng([dataset.seed, epoch, 0, 0])
    times: dict[str, float] = defaultdict(float)
    convert = video_reader.frame_to_rgb

    def timed_convert(frame):
        start = time.perf_counter()
        out = convert(frame)
        times["colour conversion to RGB"] += time.perf_counter() - start
        return out

    start = time.perf_counter()
    reader = open_media(
        dataset.root / record.path,
        num_frames=record.num_frames,
        frame_template=dataset.storage.frame_template,
        frame_start_index=dataset.storage.frame_start_index,
        threads=dataset.storage.decode_threads,
    )
    times["open + index (demux every packet)"] = time.perf_counter() - start
    indices = dataset.sampler(record.num_frames or reader.num_frames, train=True, rng=rng)[0]
    video_reader.frame_to_rgb = timed_convert  # the reader looks it up at each call
    try:
        start = time.perf_counter()
        frames = reader.get_frames(indices)
        decode = time.perf_counter() - start
    finally:
        video_reader.frame_to_rgb = convert
    times["decode (seek, demux, decode)"] = decode - times["colour conversion to RGB"]
    decoded = getattr(reader, "frames_decoded", len(set(indices.tolist())))
    reader.close()
    clip, label = torch.from_numpy(frames).permute(0, 3, 1, 2), record.label
    for step in dataset.transform.transforms:
        start = time.perf_counter()
        clip, label = step(clip, label, rng)
        times["augment: " + repr(step).split("(")[0]] += time.perf_counter() - start
    start = time.perf_counter()
    normalize(clip, dataset.mean, dataset.std)
    times["normalise"] = time.perf_counter() - start
    return times, decoded


def print_breakdown(datasets: dict[str, VideoDataset], repeats: int) -> None:
    """Median milliseconds per stage and source, over ``repeats`` clips each (alternating)."""
    samples = {name: defaultdict(list) for name in datasets}
    decoded = {name: [] for name in datasets}
    for epoch in range(repeats):
        for name, dataset in datasets.items():
            times, count = stage_times(dataset, epoch)
            for stage, seconds in times.items():
                samples[name][stage].append(seconds)
            decoded[name].append(count)
    stages = list(dict.fromkeys(stage for name in samples for stage in samples[name]))
    width = max(len(stage) for stage in stages) + 2
    print(f"\nwhere a training clip's time goes, median ms over {repeats} clips:")
    print(" " * width + "".join(f"{name:>14s}" for name in datasets))
    for stage in [*stages, "sum"]:
        row = []
        for name in datasets:
            if stage == "sum":
                values = [sum(v[i] for v in samples[name].values()) for i in range(repeats)]
            else:
                values = samples[name].get(stage, [0.0])
            row.append(f"{1000 * statistics.median(values):14.2f}")
        print(f"  {stage:<{width - 2}s}" + "".join(row))
    print(
        f"  {'frames decoded per clip':<{width - 2}s}"
        + "".join(f"{np.mean(decoded[name]):14.0f}" for name in datasets)
    )


def _sources(video: Path, scratch: Path, extracted: int, threads: int) -> dict[str, tuple]:
    """``(records, root, decoders)`` of each way of storing the clip, by row name."""
    original = [VideoRecord(video.name, 0)]
    reencoded = [VideoRecord(f"{video.stem}.mp4", 0)]
    frames = [VideoRecord(video.stem, 0, extracted)]
    return {
        "original": (original, video.parent, 1),
        f"original, {threads} threads": (original, video.parent, threads),
        "re-encoded": (reencoded, scratch / "reencoded", 1),
        f"re-encoded, {threads} threads": (reencoded, scratch / "reencoded", threads),
        "JPEG frames": (frames, scratch / "frames", 1),
        f"JPEG frames, {threads} threads": (frames, scratch / "frames", threads),
    }


def print_clip_rates(datasets: dict[str, VideoDataset], repeats: int, segments: int) -> None:
    """Training clips per second of each dataset, side by side, against the first."""
    seconds = medians(
        time_side_by_side(
            {name: _clip_maker(dataset) for name, dataset in datasets.items()}, repeats
        )
    )
    base = next(iter(seconds.values()))
    print(
        f"\ntraining clips per worker, {segments} segments, 224x224, median of "
        f"{repeats} clips each, side by side:"
    )
    for name, value in seconds.items():
        print(
            f"  {name:<24s} {1 / value:7.1f} clips/s  {1000 * value:7.1f} ms/clip  "
            f"x{base / value:.2f}"
        )


def print_loader_rates(sources: dict[str, tuple], prep, workers: int, repeats: int) -> None:
    """Clips per second through a DataLoader of ``workers`` processes, original and
    re-encoded file."""
    count = 8 * max(repeats // 4, 4 * workers)
    print(f"\nDataLoader, {workers} workers, batch 8, {count} clips:")
    for name in ("original", "re-encoded"):
        records, root, _ = sources[name]
        many = build_dataset(records * count, root, prep, train=True)
        loader = DataLoader(many, batch_size=8, num_workers=workers, collate_fn=collate_clips)
        start = time.perf_counter()
        batches = iter(loader)
        first = len(next(batches)[1])
        warm = time.perf_counter()
        seen = sum(len(batch[1]) for batch in batches)
        end = time.perf_counter()
        print(
            f"  {name:<12s} {seen / (end - warm):6.1f} clips/s after the first batch, "
            f"{(first + seen) / (end - start):6.1f} with start-up "
            f"({os.cpu_count()} CPU cores)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeats", type=int, default=40, help="clips per contender")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (0: skip)")
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument(
        "--decode-threads", type=int, default=2, help="decoders of the threaded rows (0: cores)"
    )
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"video not found: {args.video}")
    torch.set_num_threads(1)
    video = args.video.resolve()
    with VideoReader(video) as reader:
        num_frames, (height, width) = reader.num_frames, reader.size
    print(f"video: {video.name}, {num_frames} frames, {width}x{height}; torch threads: 1")

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start = time.perf_counter()
        reencode_video(video, scratch / "reencoded" / f"{video.stem}.mp4")
        reencode_s = time.perf_counter() - start
        start = time.perf_counter()
        extracted = extract_frames(video, scratch / "frames" / video.stem)
        extract_s = time.perf_counter() - start
        print(f"re-encoded in {reencode_s:.1f} s, frames extracted in {extract_s:.1f} s")

        prep = Preprocessing(num_segments=args.segments, mean=MEAN, std=STD)
        sources = _sources(video, scratch, extracted, args.decode_threads)
        datasets = {
            name: build_dataset(
                records, root, prep, train=True, storage=StorageOptions(decode_threads=threads)
            )
            for name, (records, root, threads) in sources.items()
        }
        print_clip_rates(datasets, args.repeats, args.segments)
        print_breakdown(
            {name: datasets[name] for name in ("original", "re-encoded", "JPEG frames")},
            args.repeats,
        )

        test = build_dataset([VideoRecord(video.name, 0)], video.parent, prep, train=False)
        test_s = medians(time_side_by_side({"test": lambda: test[0]}, args.repeats))["test"]
        print(f"\ntest clip, centre crop, original file: {1 / test_s:.1f} clips/s")

        if args.workers > 0:
            print_loader_rates(sources, prep, args.workers, args.repeats)


if __name__ == "__main__":
    main()
