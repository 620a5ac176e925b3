"""Random-weight models with realistic activations, for the speed benchmarks. Imported by the
scripts of this folder (``python benchmarks/bench_*.py`` puts it on the path)."""

from __future__ import annotations

import torch


@torch.no_grad()
def calibrate_batch_norm(
    model: torch.nn.Module, frames: int, size: int, batches: int = 4, seed: int = 1
) -> torch.nn.Module:
    """Measure BatchNorm's running statistics on random clips ``(2, frames, 3, size, size)``
    (a plain average over ``batches``), then put the model in eval mode; returns it.

    Left at their initial values (mean 0, variance 1), the statistics do not normalise a
    random-weight network: MobileNetV2's activations then shrink to subnormal floats, which
    the CPU handles many times slower than a trained model's."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        model(torch.randn(2, frames, 3, size, size, generator=generator))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()
