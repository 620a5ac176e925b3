"""Cost of ``tcm check-data`` per Kinetics clip: the thorough check (every frame decoded)
against ``--quick`` (packets and frame count read, a test clip's frames decoded).

A list of ``--entries`` hard links to one real Kinetics clip (10 s, 340x256 H.264, key frames
at 0, 187, 230 and 268 of 280) is checked both ways, side by side in rounds, in this process
(one worker): CPU seconds per clip, and the time a full Kinetics-400 training list (240k clips)
would take on ``--workers`` processes. The same for the clip as ``tcm prepare --reencode``
writes it (a key frame every 8 frames), where a test clip's frames need few others.

Usage:
    python benchmarks/bench_check_data.py [--video PATH] [--entries 40] [--rounds 3]
        [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tcm.data import VideoRecord
from tcm.data.checks import check_records
from tcm.data.reencode import reencode_video

DEFAULT_VIDEO = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"
) / "kinetics_arm_wrestling.mp4"
KINETICS_TRAIN = 240_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--entries", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8, help="for the full-list estimate")
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"{args.video}: no such video (pass --video)")
    with tempfile.TemporaryDirectory() as folder:
        reencoded = Path(folder) / "reencoded.mp4"
        reencode_video(args.video, reencoded)
        for video, stored in ((args.video, "original"), (reencoded, "re-encoded")):
            seconds = measure(video, Path(folder) / stored, args)
            report(f"{args.video.name}, {stored}", seconds, args)


def measure(video: Path, root: Path, args) -> dict[str, list[float]]:
    """CPU seconds per clip of each mode, per round."""
    seconds: dict[str, list[float]] = {"thorough": [], "quick": []}
    root.mkdir()
    records = []
    for i in range(args.entries):
        os.link(video.resolve(), root / f"clip_{i:05d}.mp4")
        records.append(VideoRecord(f"clip_{i:05d}.mp4", 0, line=i + 1))
    for _ in range(args.rounds):
        for mode in seconds:
            start = time.process_time()
            results = check_records(records, root, quick=mode == "quick", segments=args.segments)
            seconds[mode].append((time.process_time() - start) / len(records))
            assert all(result.ok for result in results)
    return seconds


def report(title: str, seconds: dict[str, list[float]], args) -> None:
    print(f"{title}: {args.entries} entries x {args.rounds} rounds, one process")
    print(f"  mode       CPU ms per clip (rounds)     240k clips on {args.workers} workers")
    for mode, values in seconds.items():
        per_clip = statistics.median(values)
        minutes = per_clip * KINETICS_TRAIN / args.workers / 60
        rounds = ", ".join(f"{1000 * v:.1f}" for v in values)
        print(f"  {mode:9}  {1000 * per_clip:6.1f} ({rounds})   {minutes:6.0f} min")
    ratio = statistics.median(seconds["thorough"]) / statistics.median(seconds["quick"])
    print(f"  quick is {ratio:.1f} times cheaper")


if __name__ == "__main__":
    main()
