"""Training and evaluation engine: configs, the training loop, checkpoints, metrics.

- :mod:`~tcm.engine.config`: the run config, a dataclass per section;
  :mod:`~tcm.engine.config_files`: YAML files with ``_base_``, ``--set`` overrides;
  :mod:`~tcm.engine.config_checks`: the checks before a run; :mod:`~tcm.engine.typed_config`:
  typed dataclasses from dicts.
- :mod:`~tcm.engine.run`: :func:`train` (single process, or every process of ``torchrun``).
- :mod:`~tcm.engine.trainer`: the trainer of one run; :mod:`~tcm.engine.training_epoch`: its
  epochs (forward, backward, clipping, step rows).
- :mod:`~tcm.engine.training_state`: the training state, saved to and restored from a
  checkpoint.
- :mod:`~tcm.engine.preprocessing`: the preprocessing and storage options a config describes.
- :mod:`~tcm.engine.evaluation`: :func:`evaluate`, running a model over a test set.
- :mod:`~tcm.engine.scores`: accuracy metrics, score files, per-class tables, :func:`ensemble`.
- :mod:`~tcm.engine.training_checkpoint`: full training state, ``last.pt`` / ``best.pt``, resume.
- :mod:`~tcm.engine.workdir`: the run folder's lock and what a new run may do with a folder.
- :mod:`~tcm.engine.optim`: parameter groups, SGD, learning-rate scaling and schedules.
- :mod:`~tcm.engine.distributed`: process group, samplers, reductions.
- :mod:`~tcm.engine.training_log`: ``metrics.jsonl``, TensorBoard, training curves.

Example (a config built in Python, no YAML)::

    from tcm.engine import DataConfig, ModelConfig, ScheduleConfig, RunConfig, evaluate, train

    cfg = RunConfig(
        name="tsm10",
        model=ModelConfig(name="tsm_resnet10", num_segments=8,
                          kwargs={"widths": [16, 32, 64, 128], "stem_width": 16}),
        data=DataConfig(root="data/videos", train_list="data/train.txt",
                        val_list="data/val.txt", classes="data/classes.txt",
                        input_size=112, resize=128, batch_size=8, num_workers=2),
        schedule=ScheduleConfig(epochs=10, type="cosine", warmup_epochs=1),
    )
    result = train(cfg, "runs/tsm10", progress=True)
    print(result.final["val_top1"], result.checkpoint)
    scores = evaluate(result.best_checkpoint, "data/val.txt", "data/videos", num_clips=2)
    print(scores.top1, scores.top5, scores.mean_class_acc)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ConfigError": "tcm.errors",
    "DataConfig": "tcm.engine.config",
    "DistConfig": "tcm.engine.config",
    "EvalConfig": "tcm.engine.config",
    "ModelConfig": "tcm.engine.config",
    "OptimConfig": "tcm.engine.config",
    "ScheduleConfig": "tcm.engine.config",
    "RunConfig": "tcm.engine.config",
    "TrainLoopConfig": "tcm.engine.config",
    "check_config": "tcm.engine.config_checks",
    "list_configs": "tcm.engine.config_files",
    "load_config": "tcm.engine.config_files",
    "EvalResult": "tcm.engine.scores",
    "compute_metrics": "tcm.engine.scores",
    "ensemble": "tcm.engine.scores",
    "evaluate": "tcm.engine.evaluation",
    "load_scores": "tcm.engine.scores",
    "read_metrics": "tcm.engine.training_log",
    "NonFiniteLossError": "tcm.errors",
    "TrainResult": "tcm.engine.trainer",
    "train": "tcm.engine.run",
}

# Former names, still importable but not listed: the whole config was called TrainConfig, like
# its ``train`` section (TrainLoopConfig).
_FORMER_NAMES = {"TrainConfig": "RunConfig"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    name = _FORMER_NAMES.get(name, name)
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tcm.engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
