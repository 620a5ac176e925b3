"""The visual-tempo comparison (TSN, TSM, TCM) repeated over several seeds, on the CPU.

Each seed generates its own data set and trains every variant from scratch with the demo's
settings; the script prints top-1 overall and per group (direction, tempo, order) as
mean +- standard deviation over the seeds, and writes everything under ``--out``.

Usage: ``python benchmarks/bench_tempo.py [--seeds 0 1 2] [--epochs N] [--out runs/tempo_seeds]``
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from dataclasses import asdict
from pathlib import Path

from tcm.recipes.tempo import TempoSettings, run_tempo_comparison


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} +- {spread:4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="training epochs per variant")
    parser.add_argument("--out", type=Path, default=Path("runs/tempo_seeds"))
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    per_seed = {}
    for seed in args.seeds:
        settings = TempoSettings(seed=seed)
        if args.epochs is not None:
            settings.epochs = args.epochs
        results = run_tempo_comparison(args.out / f"seed{seed}", settings, progress=args.progress)
        per_seed[seed] = results
        print(
            f"seed {seed}: " + ", ".join(f"{r.variant} {r.top1:.1f}" for r in results),
            flush=True,
        )

    variants = [r.variant for r in next(iter(per_seed.values()))]
    groups = list(next(iter(per_seed.values()))[0].groups)
    print(f"\ntop-1 (%) on the validation split, mean +- std over seeds {args.seeds}")
    print(f"{'model':8s} {'overall':>14s} " + " ".join(f"{g:>14s}" for g in groups))
    summary = {}
    for index, variant in enumerate(variants):
        runs = [per_seed[seed][index] for seed in args.seeds]
        overall = [r.top1 for r in runs]
        by_group = {g: [r.groups[g] for r in runs] for g in groups}
        print(
            f"{variant:8s} {mean_std(overall):>14s} "
            + " ".join(f"{mean_std(by_group[g]):>14s}" for g in groups)
        )
        summary[variant] = {"overall": overall, **by_group}
    (args.out / "summary.json").write_text(
        json.dumps(
            {"seeds": args.seeds, "settings": asdict(TempoSettings()), "top1": summary}, indent=2
        )
    )


if __name__ == "__main__":
    main()
