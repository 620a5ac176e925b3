"""``tcm ensemble``: combine the score files of several ``tcm test`` runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ensemble",
        help="average the scores of several tcm test runs (e.g. 8 + 16 frames)",
        description=(
            "Average per-video scores (scores.npz files or the folders holding them) of the "
            "same videos, optionally weighted, and report top-1, top-5 and mean class accuracy."
        ),
    )
    parser.add_argument("scores", nargs="+", type=Path, help="score files or tcm test folders")
    parser.add_argument("--weights", type=float, nargs="+", help="one weight per score file")
    parser.add_argument(
        "--out", type=Path, help="write the combined scores, CSV and confusion here"
    )
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.engine.scores import OUTPUT_FILES, SCORES_FILE, ensemble, load_scores
    from tcm.utils.files import check_output_dir, check_output_file

    if args.out is not None:
        check_output_dir(args.out, "--out folder")
        inputs = {
            path / SCORES_FILE if path.is_dir() else path: "one of the score files combined"
            for path in args.scores
        }
        for name in OUTPUT_FILES:
            check_output_file(args.out / name, "--out", inputs=inputs)
    parts = [load_scores(path) for path in args.scores]
    result = ensemble(parts, args.weights)
    if args.out:
        result.save(args.out)
    summary = {
        "inputs": [
            {"scores": str(p), "top1": r.top1, "top5": r.top5} for p, r in zip(args.scores, parts)
        ],
        **result.summary(),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    for item in summary["inputs"]:
        print(f"{item['scores']}: top-1 {item['top1']:.2f}%  top-5 {item['top5']:.2f}%")
    print(
        f"ensemble of {len(parts)}: top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  "
        f"mean class {result.mean_class_acc:.2f}%"
    )
    return 0
