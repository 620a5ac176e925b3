"""How closely exported models reproduce their checkpoint's logits, clip by clip, on real clips.

For each checkpoint given, the clips of a list are read with the checkpoint's preprocessing and
their logits computed by PyTorch (float32, the default ops backend), then by PyTorch in
float64, by the ONNX export (``tcm export``) on ONNX Runtime at each graph optimisation level,
and on OpenVINO where installed. Printed per path: the largest ``|logit - PyTorch's|``, how
many clips differ by more than 1e-4 and 1e-3, and how many change their top-1 class.

MTDM's kernel soft-argmax centres its window on the best-matching displacement, so a pixel
where two displacements match almost equally can switch under rounding alone (another order
of sums); a few clips then differ by much more than the rest, whatever the path.

Usage: ``python benchmarks/bench_export_parity.py [CHECKPOINT ...] [--list LIST --root ROOT]``;
without arguments, on the output of ``make demo`` (``runs/demo``: its four models and its
validation clips), and skipped, exit 0, where there is none.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from tcm.data.annotations import read_list
from tcm.deploy import Predictor
from tcm.deploy.export import INPUT_NAME, export_checkpoint, onnx_session
from tcm.runtime import ExportedModel, available_runtimes

ORT_LEVELS = ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
BATCH = 32
DEMO = Path("runs/demo")


def in_batches(run, clips: torch.Tensor) -> np.ndarray:
    return np.concatenate([run(batch) for batch in clips.split(BATCH)])


def report(name: str, logits: np.ndarray, reference: np.ndarray) -> None:
    worst = np.abs(logits - reference).max(axis=1)  # per clip
    changed = int((logits.argmax(1) != reference.argmax(1)).sum())
    print(
        f"  {name:34s} largest {worst.max():.1e}  clips > 1e-4: {int((worst > 1e-4).sum()):3d}"
        f"  > 1e-3: {int((worst > 1e-3).sum()):3d}  top-1 changed: {changed}"
    )


def compare(checkpoint: Path, paths: list[Path], threads: int) -> None:
    predictor = Predictor(checkpoint)
    model = predictor.model
    clips = torch.stack([predictor.load(path) for path in paths])  # (N, T, 3, S, S)
    with torch.no_grad():
        reference = in_batches(lambda b: model(b).numpy(), clips)
        model.double()
        double = in_batches(lambda b: model(b.double()).numpy(), clips)
        model.float()
    print(f"{checkpoint}: {len(paths)} clips, largest |logit| {np.abs(reference).max():.3g}")
    report("PyTorch float64", double, reference)
    with tempfile.TemporaryDirectory() as folder:
        exported = Path(folder) / "model.onnx"
        export_checkpoint(checkpoint, exported, "onnx")
        for level in ORT_LEVELS:
            session = onnx_session(exported, threads=threads, level=level)
            logits = in_batches(lambda b, s=session: s.run(None, {INPUT_NAME: b.numpy()})[0], clips)
            report(f"ONNX Runtime, {level}", logits, reference)
        if "openvino" in available_runtimes():
            openvino = ExportedModel(exported, "openvino", threads=threads)
            report("OpenVINO", in_batches(lambda b: openvino(b.numpy()), clips), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path, help="default: make demo's models")
    parser.add_argument("--list", type=Path, default=DEMO / "data" / "val.txt")
    parser.add_argument("--root", type=Path, default=DEMO / "data", help="what the list names from")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.checkpoints:
        args.checkpoints = sorted((DEMO / "runs").glob("*/best.pt"))
        if not args.checkpoints or not args.list.is_file():
            print(f"no checkpoints given and no demo output in {DEMO} (make demo); skipped")
            return
    try:
        paths = [args.root / entry.path for entry in read_list(args.list)]
        for checkpoint in args.checkpoints:
            compare(checkpoint, paths, args.threads)
    except (OSError, ValueError) as error:  # a missing or unreadable list, checkpoint or clip
        raise SystemExit(f"bench_export_parity: {error}") from None


if __name__ == "__main__":
    main()
