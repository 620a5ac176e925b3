"""The visual-tempo comparison over seeds, with TCM's ablations, on the CPU.

For every seed the script generates the data set ``tcm demo --seed S`` would, then trains from
scratch, with the demo's recipe, the four variants (TSN, TSN + TCM, TSM, TSM + TCM) and the
ablations of TSM + TCM from the paper: fast tempo only, slow tempo only, TAM without its
temporal attention, and TCM after each other stage. It prints validation top-1 overall and
per group for every run, mean +- std over the seeds, and the paired differences per seed
(TSM + TCM - TSM, TSN + TCM - TSN, each ablation - TSM), and writes ``summary.json``.

Runs go to ``--jobs`` processes of one thread each (one per core by default), as ``tcm demo``
does with its four variants: the seeds' first four rows are what ``tcm demo --seed S`` prints.

Usage::

    python benchmarks/bench_tempo.py                      # seeds 0 1 2, all ablations
    python benchmarks/bench_tempo.py --seeds 3 4 --no-ablations
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tcm.models.resnet import STAGE_NAMES
from tcm.recipes.tempo import (
    VARIANTS,
    TempoSettings,
    generate_data,
    pretrain,
    train_variants,
)

PAIRS = (("tcm", "tsm"), ("tcm_tsn", "tsn"))


def ablations(settings: TempoSettings) -> dict[str, tuple[str, dict[str, Any]]]:
    """Ablation name -> (what it changes, settings of its TSM + TCM run)."""
    options = settings.tcm_options
    table = {
        "tcm fast only": ("fast tempo only", {"tcm_options": {**options, "tempos": ["fast"]}}),
        "tcm slow only": ("slow tempo only", {"tcm_options": {**options, "tempos": ["slow"]}}),
        "tcm no attention": (
            "TAM without temporal attention",
            {"tcm_options": {**options, "temporal_attention": False}},
        ),
    }
    for stage in STAGE_NAMES[:3]:
        if (stage,) != tuple(settings.tcm_stages):
            table[f"tcm {stage}"] = (f"TCM after {stage}", {"tcm_stages": (stage,)})
    return table


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} +- {spread:4.1f}"


def print_table(names, per_seed, seeds, groups) -> None:
    print(f"{'run':18s} " + " ".join(f"{'seed ' + str(s):>7s}" for s in seeds), end="")
    print(f" {'mean +- std':>14s} " + " ".join(f"{g:>14s}" for g in groups))
    for name in names:
        runs = [per_seed[seed][name] for seed in seeds]
        cells = " ".join(f"{r['top1']:7.1f}" for r in runs)
        by_group = " ".join(f"{mean_std([r['groups'][g] for r in runs]):>14s}" for g in groups)
        print(f"{name:18s} {cells} {mean_std([r['top1'] for r in runs]):>14s} {by_group}")


def print_differences(pairs, per_seed, seeds, groups) -> None:
    print(f"{'difference':28s} " + " ".join(f"{'seed ' + str(s):>7s}" for s in seeds), end="")
    print(f" {'mean +- std':>14s} " + " ".join(f"{g:>14s}" for g in groups))
    for first, second in pairs:
        diffs = [per_seed[s][first]["top1"] - per_seed[s][second]["top1"] for s in seeds]
        by_group = " ".join(
            f"{mean_std([per_seed[s][first]['groups'][g] - per_seed[s][second]['groups'][g] for s in seeds]):>14s}"
            for g in groups
        )
        cells = " ".join(f"{d:+7.1f}" for d in diffs)
        print(f"{first + ' - ' + second:28s} {cells} {mean_std(diffs):>14s} {by_group}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="training epochs per run (default: demo's)")
    parser.add_argument("--no-ablations", action="store_true", help="the four variants only")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel runs")
    parser.add_argument("--out", type=Path, default=Path("runs/tempo_bench"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    base = TempoSettings(jobs=args.jobs)
    if args.epochs is not None:
        base.epochs = args.epochs
    extra = {} if args.no_ablations else ablations(base)
    started = time.perf_counter()
    names, jobs = [], []
    for seed in args.seeds:
        settings = replace(base, seed=seed)
        data_root = generate_data(args.out / f"seed{seed}" / "data", settings, progress=False)
        trunk = pretrain(args.out / f"seed{seed}" / "stills", settings, progress=False)
        runs = {variant: (variant, {}) for variant in VARIANTS}
        runs.update({name: ("tcm", change) for name, (_, change) in extra.items()})
        for name, (variant, change) in runs.items():
            work_dir = args.out / f"seed{seed}" / "runs" / name.replace(" ", "_")
            names.append((seed, name))
            jobs.append((variant, data_root, work_dir, replace(settings, **change), trunk))
    print(f"{len(jobs)} runs, {args.jobs} at a time -> {args.out}", flush=True)
    results = train_variants(jobs, args.jobs)

    per_seed: dict[int, dict[str, dict[str, Any]]] = {seed: {} for seed in args.seeds}
    for (seed, name), result in zip(names, results):
        row = asdict(result)
        row.pop("history")
        per_seed[seed][name] = row
    groups = list(results[0].groups)
    print(f"\nvalidation top-1 (%), seeds {args.seeds}, {base.epochs} epochs")
    print_table(list(VARIANTS) + list(extra), per_seed, args.seeds, groups)
    print("\npaired differences (points of top-1; same seed, data and recipe)")
    print_differences(PAIRS + tuple((name, "tsm") for name in extra), per_seed, args.seeds, groups)
    ratio = [
        per_seed[s]["tcm"]["train_seconds"] / per_seed[s]["tsm"]["train_seconds"]
        for s in args.seeds
    ]
    print(f"\ntraining time TSM + TCM / TSM (each beside another run): {mean_std(ratio)}")
    print(f"{len(jobs)} runs in {(time.perf_counter() - started) / 60:.1f} min")
    summary = {
        "seeds": args.seeds,
        "settings": asdict(base),
        "ablations": {name: what for name, (what, _) in extra.items()},
        "runs": {str(seed): per_seed[seed] for seed in args.seeds},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
