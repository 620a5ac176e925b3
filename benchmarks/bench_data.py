"""Throughput of the data pipeline on a real 10-second clip.

Prints clips per second for one worker (one process, one thread):

- the loader's path: 8-segment sampling, decoding only the needed frames (seeking to key
  frames), multi-scale crop + flip + normalisation on uint8 tensors;
- the same clip made by decoding every frame of the video first, then sampling;
- test-time single-clip centre crop;

and the throughput of a DataLoader with ``--workers`` worker processes.

Usage:
    python benchmarks/bench_data.py [--video PATH] [--repeats 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

from tcm.data import Preprocessing, VideoRecord, build_dataset, collate_clips
from tcm.data.decoding import VideoReader
from tcm.data.transforms import normalize

DEFAULT_VIDEO = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "videos"
    / "kinetics_arm_wrestling.mp4"
)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _rate(function, repeats: int) -> tuple[float, float]:
    function(0)  # warm-up
    start = time.perf_counter()
    for i in range(repeats):
        function(i + 1)
    elapsed = time.perf_counter() - start
    return repeats / elapsed, 1000 * elapsed / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segments", type=int, default=8)
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"video not found: {args.video}")
    torch.set_num_threads(1)
    video = args.video.resolve()
    records = [VideoRecord(video.name, 0)]
    prep = Preprocessing(num_segments=args.segments, mean=MEAN, std=STD)
    train = build_dataset(records, video.parent, prep, train=True)
    test = build_dataset(records, video.parent, prep, train=False)
    with VideoReader(video) as reader:
        num_frames, (height, width) = reader.num_frames, reader.size
    print(f"video: {video.name}, {num_frames} frames, {width}x{height}; torch threads: 1")

    def loader_path(i: int) -> None:
        train.set_epoch(i)
        train[0]

    def every_frame(i: int) -> None:
        rng = np.random.default_rng([0, i, 0, 0])
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        indices = train.sampler(len(frames), train=True, rng=rng)[0]
        clip = torch.from_numpy(frames[indices]).permute(0, 3, 1, 2)
        clip, _ = train.transform(clip, 0, rng)
        normalize(clip, MEAN, STD)

    def test_path(i: int) -> None:
        test[0]

    decoded = []

    def count_decoded(i: int) -> None:
        rng = np.random.default_rng([0, i, 0, 0])
        with VideoReader(video) as reader:
            reader.get_frames(train.sampler(reader.num_frames, train=True, rng=rng)[0])
            decoded.append(reader.frames_decoded)

    for i in range(args.repeats):
        count_decoded(i)
    rows = [
        ("train clip, needed frames only (loader)", *_rate(loader_path, args.repeats)),
        ("train clip, decoding every frame first", *_rate(every_frame, args.repeats)),
        ("test clip, centre crop (loader)", *_rate(test_path, args.repeats)),
    ]
    print(f"\nper worker, {args.segments} segments, 224x224 output, {args.repeats} clips each:")
    for name, rate, ms in rows:
        print(f"  {name:<42s} {rate:7.1f} clips/s  {ms:7.1f} ms/clip")
    print(f"  frames decoded per training clip: {np.mean(decoded):.0f} of {num_frames} on average")

    count = 8 * max(args.repeats // 4, 4 * args.workers)
    many = build_dataset(records * count, video.parent, prep, train=True)
    loader = DataLoader(many, batch_size=8, num_workers=args.workers, collate_fn=collate_clips)
    start = time.perf_counter()
    batches = iter(loader)
    first = len(next(batches)[1])
    warm = time.perf_counter()
    seen = sum(len(batch[1]) for batch in batches)
    end = time.perf_counter()
    print(
        f"\nDataLoader, {args.workers} workers, batch 8, {first + seen} clips: "
        f"{seen / (end - warm):.1f} clips/s after the first batch, "
        f"{(first + seen) / (end - start):.1f} clips/s with start-up ({os.cpu_count()} CPU cores)"
    )


if __name__ == "__main__":
    main()
