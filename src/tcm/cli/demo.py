"""``tcm demo``: the visual-tempo comparison of TSN, TSM and TCM on both, on the CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate a visual-tempo data set, train TSN, TSM and TCM on both, compare them",
        description=(
            "Generate videos whose classes differ only in motion (direction, tempo, temporal "
            "order), train TSN, TSN + TCM, TSM and TSM + TCM on a small ResNet on the CPU, print "
            "top-1 overall and per group, then classify and visualise held-out clips with "
            "the TCM model. Everything goes under --out."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="training epochs per model")
    parser.add_argument("--clips-per-class", type=int, help="generated clips per class")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=("tsn", "tcm_tsn", "tsm", "tcm"),
        help="models to train (default: all four; tcm is TSM + TCM, tcm_tsn is TSN + TCM)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.cli.main import main as tcm_main
    from tcm.data.annotations import read_classes
    from tcm.data.synth import read_groups
    from tcm.recipes.tempo import (
        TCM_VARIANTS,
        TempoSettings,
        chance_levels,
        format_table,
        run_tempo_comparison,
    )

    started = time.perf_counter()
    settings = TempoSettings(seed=args.seed)
    if args.epochs is not None:
        settings.epochs = args.epochs
    if args.clips_per_class is not None:
        settings.clips_per_class = args.clips_per_class
    if args.variants:
        settings.variants = tuple(args.variants)
    out = args.out
    print(f"[1/3] data set and training ({', '.join(settings.variants)}) -> {out}", flush=True)
    results = run_tempo_comparison(out, settings)

    data = out / "data"
    classes = read_classes(data / "classes.txt")
    groups = read_groups(data / "groups.json")
    print("\nTop-1 (%) on the validation split, argmax over all classes:\n")
    print(format_table(results, chance_levels(classes, groups)))
    print(f"\nlearning curves: {out / 'curves.png'}")

    # The TSM + TCM model if trained, else TSN + TCM, else the last.
    by_variant = {r.variant: r for r in results}
    shown = [by_variant.get("tcm") or by_variant.get("tcm_tsn") or results[-1]]
    checkpoint = shown[0].checkpoint
    examples = held_out_examples(data, classes, groups)
    print(f"\n[2/3] tcm predict on held-out clips ({shown[0].model})", flush=True)
    command = ["predict", *map(str, examples), "--checkpoint", checkpoint, "--topk", "3"]
    print("$ tcm " + " ".join(command), flush=True)
    predict_status = tcm_main(command)

    print("\n[3/3] tcm visualize: frames, displacement fields and temporal attention", flush=True)
    pictures = []
    for example in examples:
        picture = out / "visualize" / f"{example.stem}.png"
        command = ["visualize", str(example), "--checkpoint", checkpoint, "--out", str(picture)]
        if shown[0].variant in TCM_VARIANTS:
            print("$ tcm " + " ".join(command), flush=True)
            if tcm_main(command) == 0:
                pictures.append(picture)
    minutes = (time.perf_counter() - started) / 60
    print(f"\ndone in {minutes:.1f} min; everything is under {out.resolve()}")
    print(f"  table: {out / 'results.md'}   curves: {out / 'curves.png'}")
    for picture in pictures:
        print(f"  picture: {picture}")
    return predict_status


def held_out_examples(data: Path, classes: list[str], groups: dict[str, str]) -> list[Path]:
    """One clip of the first class of each group from the test split (val if none)."""
    from tcm.data.annotations import read_list

    listing = data / "test.txt" if (data / "test.txt").is_file() else data / "val.txt"
    first_of_class: dict[int, Path] = {}
    for record in read_list(listing):
        first_of_class.setdefault(record.label, data / record.path)
    picked = {}
    for label, path in sorted(first_of_class.items()):
        picked.setdefault(groups[classes[label]], path)
    return list(picked.values())
