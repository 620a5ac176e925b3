"""Training steps with glibc's default allocator and with freed memory kept
(:func:`tcm.utils.allocator.keep_freed_memory`, what ``tcm train`` and ``tcm demo`` do).

Each measurement is a fresh process (the allocator's state is per process, as for a user's
run): it builds the model, runs warm-up steps, then times ``--steps`` training steps (forward,
backward, SGD) and reports the median. The two settings are launched alternately, ``--rounds``
times per model, so load on the machine affects both alike. Printed per model: the median step
of each setting over all its processes, the ratio kept/default, and the per-round ratios.

Models: TSM and TSM + TCM on ResNet-50 (2 clips x 8 x 224, all threads), on MobileNetV2 (the
same), and the demo's ResNet-10 (widths 16-128, 16 clips x 8 x 64, one thread, as ``make demo``
trains each).

Usage: ``python benchmarks/bench_allocator.py [--rounds 3] [--only demo|resnet50|mobilenetv2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "resnet50": [
        {"model": "tsm_resnet50", "batch": 2, "size": 224, "threads": 0, "steps": 4},
        {"model": "tcm_tsm_resnet50", "batch": 2, "size": 224, "threads": 0, "steps": 4},
    ],
    "mobilenetv2": [
        {"model": "tsm_mobilenetv2", "batch": 2, "size": 224, "threads": 0, "steps": 6},
        {"model": "tcm_tsm_mobilenetv2", "batch": 2, "size": 224, "threads": 0, "steps": 6},
    ],
    "demo": [
        {"model": "tsm_resnet10", "batch": 16, "size": 64, "threads": 1, "steps": 20},
        {"model": "tcm_tsm_resnet10", "batch": 16, "size": 64, "threads": 1, "steps": 20},
    ],
}
DEMO_WIDTHS = {"widths": [16, 32, 64, 128], "stem_width": 16}


def child(case: dict) -> None:
    """Time training steps in this process; print the median seconds as JSON."""
    if os.environ.get("TCM_MALLOC") != "default":
        from tcm.utils.allocator import keep_freed_memory

        keep_freed_memory()
    import torch

    import tcm

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    kwargs = DEMO_WIDTHS if case["model"].endswith("resnet10") else {}
    model = tcm.create_model(case["model"], num_classes=11, num_segments=8, **kwargs).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    clips = torch.randn(case["batch"], 8, 3, case["size"], case["size"])
    labels = torch.arange(case["batch"]) % 11

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(clips), labels).backward()
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(2):
        step()
    print(json.dumps({"median": statistics.median(step() for _ in range(case["steps"]))}))


def measure(case: dict, setting: str) -> float:
    env = dict(os.environ, TCM_MALLOC=setting)
    command = [sys.executable, __file__, "--child", json.dumps(case)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    groups = [args.only] if args.only else list(CASES)
    print(f"{args.rounds} rounds, each setting a fresh process per round; median step (s)")
    for group in groups:
        for case in CASES[group]:
            runs: dict[str, list[float]] = {"default": [], "keep": []}
            for _ in range(args.rounds):
                for setting in runs:
                    runs[setting].append(measure(case, setting))
            default, keep = (statistics.median(runs[s]) for s in ("default", "keep"))
            rounds = ", ".join(f"{k / d:.3f}" for k, d in zip(runs["keep"], runs["default"]))
            threads = case["threads"] or "all"
            print(
                f"  {case['model']:22s} {case['batch']:2d} x 8 x {case['size']:3d}, {threads} "
                f"thread(s): default {default:.3f}  kept {keep:.3f}  kept/default "
                f"{keep / default:.3f} (rounds {rounds})"
            )


if __name__ == "__main__":
    main()
