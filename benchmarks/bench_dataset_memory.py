"""Memory of a DataLoader worker over a Kinetics-size list, through one epoch of index reads.

A list of ``--entries`` samples is generated in the layout of Kinetics-400 (400 class folders
with spaces in their names, ``{youtube_id}_{start:06d}_{end:06d}.mp4``), and read two ways:

- ``packed``: the training dataset as built by ``tcm train`` (:func:`tcm.data.build_dataset`,
  which holds the list as a :class:`~tcm.data.record_table.RecordTable`);
- ``list``: the same samples as a Python list of :class:`~tcm.data.annotations.VideoRecord`
  (how datasets held them before), for comparison.

For each, one forked DataLoader worker reads every sample once in a shuffled order, as an epoch
does before decoding (the record, its path under the root and its label), and reports its
unique memory (USS: private clean + dirty pages, from ``/proc/PID/smaps_rollup``) after each
chunk of samples. No video is decoded: what is measured is what the list costs a worker.

Usage:
    python benchmarks/bench_dataset_memory.py [--entries 240000] [--chunk 4096]
        [--layouts packed list]
"""

from __future__ import annotations

import argparse
import os
import random
import string
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from tcm.data import Preprocessing, build_dataset, read_list

MIB = 2**20


def unique_memory(pid: int | None = None) -> int:
    """USS of a process in bytes: its private pages (``/proc/PID/smaps_rollup``)."""
    total = 0
    with open(f"/proc/{pid or os.getpid()}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:", "Private_Hugetlb:")):
                total += int(line.split()[1]) * 1024
    return total


def write_kinetics_list(path: Path, entries: int, seed: int = 0) -> None:
    """``entries`` lines ``class name/youtubeid_start_end.mp4 label`` over 400 classes."""
    rng = random.Random(seed)
    letters = string.ascii_letters + string.digits + "-_"
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(900)]
    classes = sorted({" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(420)})[:400]
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(entries):
            label = rng.randrange(len(classes))
            start = rng.randrange(0, 600)
            clip = "".join(rng.choices(letters, k=11))
            out.write(f"{classes[label]}/{clip}_{start:06d}_{start + 10:06d}.mp4 {label}\n")


class RecordScan(Dataset):
    """Item ``c``: read the samples of chunk ``c - 1`` of a shuffled epoch as ``VideoDataset``
    does before decoding (item 0 reads none); ``(pid, USS after the chunk)``."""

    def __init__(self, records, root: Path, order: np.ndarray, chunk: int) -> None:
        self.records, self.root, self.order, self.chunk = records, root, order, chunk

    def __len__(self) -> int:
        return 1 - (-len(self.order) // self.chunk)

    def __getitem__(self, c: int) -> tuple[int, int]:
        checksum = 0
        for index in self.order[(c - 1) * self.chunk : c * self.chunk].tolist() if c else []:
            record = self.records[index]
            checksum += len(str(self.root / record.path)) + record.label
        return os.getpid(), unique_memory()


def measure(records, root: Path, chunk: int, seed: int) -> list[int]:
    """The worker's USS before the epoch and after each chunk of it."""
    order = np.random.default_rng(seed).permutation(len(records))
    scan = RecordScan(records, root, order, chunk)
    loader = DataLoader(scan, batch_size=None, num_workers=1, shuffle=False)
    return [uss for _, uss in loader]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=240_000)
    parser.add_argument("--chunk", type=int, default=4096, help="samples per USS reading")
    parser.add_argument(
        "--layouts", nargs="+", choices=("packed", "list"), default=["packed", "list"]
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        list_file = Path(folder) / "train.txt"
        start = time.perf_counter()
        write_kinetics_list(list_file, args.entries, args.seed)
        print(
            f"{args.entries} entries generated in {time.perf_counter() - start:.1f} s "
            f"({list_file.stat().st_size / MIB:.1f} MiB of list)"
        )
        root = Path(folder) / "videos"
        prep = Preprocessing(num_segments=8)
        print("layout   read (s)  worker USS at 0, 1/4, 1/2, 3/4, 1 epoch (MiB)      growth (MiB)")
        for layout in args.layouts:
            start = time.perf_counter()
            dataset = None
            if layout == "packed":
                dataset = build_dataset(list_file, root, prep, train=True, num_classes=400)
                records = dataset.records
            else:
                records = read_list(list_file)
            read = time.perf_counter() - start
            usage = measure(records, root, args.chunk, args.seed)
            quarters = [usage[q * (len(usage) - 1) // 4] for q in range(5)]
            path = " -> ".join(f"{u / MIB:.1f}" for u in quarters)
            growth = (usage[-1] - usage[0]) / MIB
            print(f"{layout:8} {read:8.2f}  {path:46}  {growth:+.1f}")
            del records
            dataset = None


if __name__ == "__main__":
    main()
