"""Training checkpoints on disk: ``last.pt`` / ``best.pt``, random states, which file to resume.

A training checkpoint is a :func:`tcm.checkpoint.make_checkpoint` dict (model description,
classes, weights, preprocessing) with the training state added (written and read by
:class:`tcm.engine.training_state.TrainingState`)::

    optimizer, scheduler, scaler    state dicts (scaler None without fp16 loss scaling)
    epoch                           completed epochs
    batch_in_epoch                  micro-batches of epoch ``epoch`` already done
    step                            optimizer steps done
    rng                             random states as tensors (torch, CUDA, numpy, python) of
                                    every process, see :func:`gathered_rng`
    config                          the resolved config, a plain dict
    state                           loop bookkeeping: best metric, running sums of the epoch
    world_size                      processes that wrote it

Everything is tensors, numbers, strings, lists and dicts, so the file loads with
``torch.load(weights_only=True)``. Files are written atomically (temporary file, fsync,
rename): a run killed at any moment leaves the previous complete file in place.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcm.checkpoint import atomic_save, load_checkpoint

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"


def capture_rng() -> dict[str, torch.Tensor]:
    """This process's random states, as tensors."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.stack(torch.cuda.get_rng_state_all())
        if torch.cuda.is_available()
        else torch.empty(0, dtype=torch.uint8),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_meta": torch.tensor([np_state[2], np_state[3], np_state[4]], dtype=torch.float64),
        "python": torch.tensor([py_version, *py_state], dtype=torch.int64),
        "python_gauss": torch.tensor(
            [float("nan") if py_gauss is None else py_gauss], dtype=torch.float64
        ),
    }


def _own_bytes(state: torch.Tensor, what: str) -> torch.Tensor:
    """``state`` as a contiguous CPU byte tensor of its own: a row of a stacked tensor is a view
    at an offset into a shared storage, which ``torch.set_rng_state`` misreads (and may crash
    on)."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.dim() != 1:
        raise ValueError(f"the {what} random state is not a vector of bytes")
    return state.detach().to("cpu").contiguous().clone()


def gathered_rng(states: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """The ``rng`` entry of a checkpoint from every process's :func:`capture_rng` (in rank
    order): rank 0's states, ``torch_ranks`` (every process's torch state, one row each) and
    ``ranks`` (every process's states)."""
    return {
        **states[0],
        "torch_ranks": torch.stack([state["torch"] for state in states]),
        "ranks": list(states),
    }


def rank_rng(rng: dict[str, Any], rank: int) -> dict[str, torch.Tensor]:
    """The random states of process ``rank`` in a checkpoint's ``rng`` (see
    :func:`gathered_rng`; older checkpoints hold only the torch state per process).

    Raises:
        ValueError: no state for that process.
    """
    ranks = rng.get("ranks")
    if isinstance(ranks, list) and 0 <= rank < len(ranks):
        return ranks[rank]
    torch_ranks = rng.get("torch_ranks")
    if not isinstance(torch_ranks, torch.Tensor) or torch_ranks.dim() != 2:
        raise ValueError(f"holds no random state for process {rank}")
    if not 0 <= rank < len(torch_ranks):
        raise ValueError(f"holds no random state for process {rank}")
    return {**rng, "torch": torch_ranks[rank]}


def restore_rng(state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`capture_rng`.

    Raises:
        ValueError: a state is not one this version of torch can take.
    """
    torch_state = _own_bytes(state["torch"], "torch")
    expected = torch.get_rng_state().numel()
    if torch_state.numel() != expected:
        raise ValueError(f"the torch random state has {torch_state.numel()} bytes, not {expected}")
    torch.set_rng_state(torch_state)
    if state["cuda"].numel() and torch.cuda.is_available():
        cuda = [_own_bytes(row, "CUDA") for row in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    pos, has_gauss, cached = state["numpy_meta"].tolist()
    keys = state["numpy_keys"].detach().cpu().numpy().astype(np.uint32)  # a copy
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), cached))
    values = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((values[0], tuple(values[1:]), None if gauss != gauss else gauss))


def check_same_model(checkpoint: dict[str, Any], path: str | Path, name: str, classes: int) -> None:
    """A ``ValueError`` naming ``path`` unless its model is ``name`` with ``classes`` classes."""
    saved = checkpoint["model"]
    if (saved["name"], saved["num_classes"]) != (name, classes):
        raise ValueError(
            f"{path} holds a {saved['name']} with {saved['num_classes']} classes; the config "
            f"builds a {name} with {classes} classes: resume with the model and classes of "
            "the run, or start a new run"
        )


def restore_process_rng(
    checkpoint: dict[str, Any], path: str | Path, rank: int, world: int
) -> bool:
    """Restore process ``rank``'s random states from a training checkpoint read from ``path``;
    ``False`` (nothing restored) when it was written by another number of processes.

    Raises:
        ValueError: naming ``path``, when its random states cannot be used.
    """
    if checkpoint.get("world_size", 1) != world:
        return False
    try:
        restore_rng(rank_rng(checkpoint["rng"], rank))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: unusable random states ({error})") from None
    return True


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights on the CPU (``module.`` wrappers of DDP removed)."""
    model = getattr(model, "module", model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write atomically; returns the path."""
    path = atomic_save(checkpoint, path)
    logger.debug("wrote %s (epoch %s, step %s)", path, checkpoint["epoch"], checkpoint["step"])
    return path


def remove_stale_temporaries(work_dir: str | Path) -> None:
    """Delete temporary files left by a run killed while writing a checkpoint."""
    for tmp in Path(work_dir).glob(".*.pt.*.tmp"):
        tmp.unlink(missing_ok=True)


def find_resume_checkpoint(work_dir: str | Path) -> Path | None:
    """The checkpoint ``--resume auto`` continues from: the work dir's ``last.pt``, else the
    newest ``*.pt`` holding a training state, else ``None``."""
    work_dir = Path(work_dir)
    last = work_dir / LAST
    if last.is_file():
        return last
    candidates = sorted(
        (p for p in work_dir.glob("*.pt") if p.name != BEST),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in candidates:
        try:
            if "optimizer" in load_checkpoint(path):
                return path
        except ValueError:
            continue
    return None


def holds_epoch(path: str | Path, epoch: int) -> bool:
    """Whether ``path`` is a readable checkpoint written for the metrics of epoch ``epoch``."""
    try:
        checkpoint = load_checkpoint(path)
    except (OSError, ValueError):
        return False
    return checkpoint.get("metrics", {}).get("epoch") == epoch


def load_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint that holds a training state (an error names what is missing)."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    missing = [k for k in ("optimizer", "epoch", "step", "rng", "config") if k not in checkpoint]
    if missing:
        raise ValueError(f"{path}: holds no training state to resume from (missing {missing})")
    return checkpoint
