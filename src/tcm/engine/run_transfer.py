"""A run continued in another folder (``tcm train --resume OTHER/last.pt --work-dir NEW``).

The new folder takes the run over: it receives the training log rows up to the checkpoint's
step and the run's ``best.pt`` when that is the best of the epochs the checkpoint holds, so
that it holds the whole run, as the old folder would have; the trainer then writes its own
``last.pt`` at once (see :func:`tcm.engine.run.train`), so that the new folder can be
resumed from the first moment, and a run that had nothing left to train still ends with its
checkpoint where it says.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tcm.checkpoint import load_checkpoint
from tcm.engine.training_checkpoint import BEST
from tcm.engine.training_log import TRAINING_LOG_FILE, read_metrics

logger = logging.getLogger(__name__)


def is_elsewhere(checkpoint: str | os.PathLike, work_dir: str | os.PathLike) -> bool:
    """Whether ``checkpoint`` lies outside the run folder ``work_dir``."""
    return Path(checkpoint).resolve().parent != Path(work_dir).resolve()


def take_over_run(source: Path, work_dir: Path, step: int, best_row: dict[str, Any]) -> None:
    """Copy into ``work_dir`` the training log rows of ``source`` (a run folder) up to ``step``
    and its ``best.pt`` when it holds ``best_row`` (the best epoch the checkpoint knows)."""
    rows = [row for row in read_metrics(source / TRAINING_LOG_FILE) if row.get("step", 0) <= step]
    if rows:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (work_dir / TRAINING_LOG_FILE).write_text(text, encoding="utf-8")
    best = source / BEST
    if not best_row or not best.is_file():
        return
    try:
        recorded = load_checkpoint(best).get("metrics")
    except ValueError as error:
        logger.warning("%s not copied into %s: %s", best, work_dir, error)
        return
    if recorded != best_row:
        logger.warning(
            "%s is not the best epoch of the checkpoint resumed (epoch %s); not copied into %s",
            best,
            best_row.get("epoch"),
            work_dir,
        )
        return
    temporary = work_dir / f".{BEST}.copy.tmp"
    shutil.copyfile(best, temporary)
    os.replace(temporary, work_dir / BEST)
    logger.info("%s: copied from %s (epoch %s)", work_dir / BEST, best, best_row.get("epoch"))
