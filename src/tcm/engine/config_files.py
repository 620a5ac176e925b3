"""Config files: shipped configs by name, ``_base_`` inheritance, overrides, :func:`load_config`.

A YAML file may start with ``_base_: other.yaml`` (a path relative to the file, or the name of
a shipped config; a list merges several, later ones winning): the file's keys are merged over
its base, section by section. ``key.path=value`` overrides (``--set``) come last. An error
names where the value at fault comes from: the file, or the override::

    >>> cfg = load_config("sthv1_tcm_tsm_r50_8f", overrides=["optim.lr=0.02"])
    >>> cfg.optim.lr
    0.02

and ``overrides=["optim.learning_rate=0.02"]`` raises a :class:`~tcm.errors.ConfigError`:
``--set optim.learning_rate=0.02: unknown key 'optim.learning_rate' (did you mean
'optim.lr'?)``.
"""

from __future__ import annotations

import copy
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tcm.engine.config import RunConfig
from tcm.engine.typed_config import apply_overrides, parse_yaml
from tcm.errors import ConfigError

BASE_KEY = "_base_"


def list_configs() -> list[str]:
    """Names of the shipped configs (``src/tcm/configs/*.yaml``; ``_base_*`` files, which
    hold shared parts, are left out)."""
    folder = resources.files("tcm") / "configs"
    return sorted(
        p.name[: -len(".yaml")]
        for p in folder.iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("_")
    )


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config file from a path, or from the name of a shipped config."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    shipped = (
        resources.files("tcm") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
    )
    if shipped.is_file():
        return Path(str(shipped))
    near = difflib.get_close_matches(Path(name).stem, list_configs(), n=3)
    hint = (
        f"; did you mean {', '.join(near)}?"
        if near
        else "; `tcm train --list` shows the shipped configs"
    )
    raise FileNotFoundError(f"{name}: no such config file or shipped config{hint}")


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_dict(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a dict, its ``_base_`` files merged in."""
    from tcm.utils.files import read_text

    path = find_config(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular _base_ chain")
    try:
        data = parse_yaml(read_text(path, "config file")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping")
    bases = data.pop(BASE_KEY, None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = path.parent / base
        source = base_path if base_path.is_file() else base
        merged = _deep_merge(merged, read_config_dict(source, (*_seen, path)))
    return _deep_merge(merged, data)


def load_config(
    name_or_path: str | os.PathLike, overrides: list[str] | dict[str, Any] | None = None
) -> RunConfig:
    """Read a config file (or shipped config name), apply overrides, check every value.

    The run's ``name`` defaults to the file's stem.
    """
    path = find_config(name_or_path)
    data = read_config_dict(path)
    data.setdefault("name", path.stem)
    overrides = overrides or []
    try:
        return RunConfig.from_dict(apply_overrides(data, overrides, RunConfig))
    except ConfigError as error:
        raise ConfigError(f"{_culprit(path, data, overrides, error)}: {error}") from None


def _culprit(
    path: Path, data: dict[str, Any], overrides: list[str] | dict[str, Any], error: ConfigError
) -> str:
    """Where the value behind ``error`` comes from: the config file ``path`` when it fails that
    way alone, else the first override (``--set KEY=VALUE``) after which it does."""
    items = list(overrides.items()) if isinstance(overrides, dict) else list(overrides)
    for count, item in enumerate([None, *items]):
        if item is None:  # the file alone
            try:
                RunConfig.from_dict(data)
            except ConfigError as failure:
                if str(failure) == str(error):
                    return path.name
            continue
        given = dict(items[:count]) if isinstance(overrides, dict) else items[:count]
        try:
            RunConfig.from_dict(apply_overrides(data, given, RunConfig))
        except ConfigError as failure:
            if str(failure) == str(error):
                return f"--set {item if isinstance(item, str) else '='.join(map(str, item))}"
    return path.name
