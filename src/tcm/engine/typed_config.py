"""Dataclasses from nested dicts, every value type-checked: the engine under the run config.

Knows nothing of the sections it builds: any (nested) dataclass with fields typed ``bool``,
``int``, ``float``, ``str``, ``Literal[...]``, ``list[...]``, ``dict``, ``Any``, unions and
``None`` is built from a dict (:func:`build_dataclass`), turned back into one
(:func:`to_plain`) and changed by ``key.path=value`` strings (:func:`apply_overrides`). An
unknown key is a :class:`~tcm.errors.ConfigError` that names the nearest valid one. Numbers
are read as people write them: ``1e-4``, ``5E-4``, ``.5``, ``1.``, ``1_000`` (plain YAML 1.1
would read the first two as strings).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from tcm.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-4``, ``5E-4`` and ``1.5e3`` as numbers.

    YAML 1.1, which PyYAML implements, wants a dot and a signed exponent (``1.0e-4``);
    YAML 1.2 and every other reader of numbers accept the forms people write.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$""",
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the number forms of :class:`_Loader`.

    Example:
        >>> parse_yaml("lr: 1e-4")
        {'lr': 0.0001}
    """
    return yaml.load(text, Loader=_Loader)


def _number(text: str) -> float | None:
    """A float spelled as people write it (``1e-4``, ``.5``, ``1.``, ``1_000``), else None."""
    text = text.strip()
    if not re.fullmatch(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?", text):
        return None
    return float(text.replace("_", ""))


def to_plain(value: Any) -> Any:
    """Nested dicts with string keys and lists (not tuples): YAML- and
    ``torch.load(weights_only=True)``-safe."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def build_dataclass(cls: type, data: Any) -> Any:
    """An instance of the dataclass ``cls`` from a (nested) dict, every value checked against
    its field's type; unknown keys are errors.

    Raises:
        ConfigError: naming the key at fault (and the nearest valid key).
    """
    return _build(cls, data, "")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = get_type_hints(cls)
    for name in _field_names(cls):
        path = f"{prefix}{name}"
        keys.append(path)
        if dataclasses.is_dataclass(hints[name]):
            keys.extend(_all_keys(hints[name], path + "."))
    return keys


# Names other training codes use for these keys.
_SYNONYMS = {
    "learning_rate": "lr",
    "base_lr": "lr",
    "lr_steps": "milestones",
    "lr_scheduler": "type",
    "wd": "weight_decay",
    "frames": "num_segments",
    "num_frames": "num_segments",
    "segments": "num_segments",
    "arch": "name",
    "workers": "num_workers",
    "batch": "batch_size",
    "clip_gradient": "clip_grad_norm",
    "clip_grad": "clip_grad_norm",
    "epoch": "epochs",
}


def _suggest(key: str, prefix: str, cls: type, root: type) -> str:
    """`` (did you mean 'x.y'?)`` for an unknown ``prefix + key``, or the valid keys."""
    candidates = _field_names(cls)
    everywhere = _all_keys(root)
    key = _SYNONYMS.get(key, key)
    if key in candidates:
        return f" (did you mean '{prefix}{key}'?)"
    elsewhere = [k for k in everywhere if k.rsplit(".", 1)[-1] == key]
    match = (
        elsewhere[:1]
        or [prefix + m for m in difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)]
        or [
            k
            for leaf in difflib.get_close_matches(
                key, [k.rsplit(".", 1)[-1] for k in everywhere], n=1, cutoff=0.75
            )
            for k in everywhere
            if k.rsplit(".", 1)[-1] == leaf
        ][:1]
    )
    if match:
        return f" (did you mean '{match[0]}'?)"
    where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
    return f"; valid keys of {where}: {', '.join(candidates)}"


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return copy.deepcopy(value)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{path} may not be null")
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError as error:
                problems.append(_type_name(option))
                last = error
        if len(problems) == 1:
            raise last
        raise ConfigError(f"{path} must be {' or '.join(problems)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"{path} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path + ".")
    if value is None:
        raise ConfigError(f"{path} may not be null")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        (item,) = get_args(tp) or (Any,)
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return copy.deepcopy(dict(value))
    return _coerce_scalar(value, tp, path)


def _coerce_scalar(value: Any, tp: Any, path: str) -> Any:
    """``value`` as a ``bool``, ``int``, ``float`` or ``str`` field."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _number(value) is not None:
            return _number(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported field type {tp}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str, root: type | None = None) -> Any:
    root = root or cls
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = set(_field_names(cls))
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key '{prefix}{key}'{_suggest(str(key), prefix, cls, root)}")
    values = {}
    for name in names & data.keys():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name], f"{prefix}{name}.", root)
        else:
            values[name] = _coerce(data[name], tp, f"{prefix}{name}")
    return cls(**values)


def _field_type(cls: type, path: list[str]) -> Any:
    """Type of the field at ``path`` (``None`` inside free-form dicts or unknown keys)."""
    tp: Any = cls
    for part in path:
        if not dataclasses.is_dataclass(tp):
            return None
        hints = get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _parse_value(text: str, tp: Any) -> Any:
    try:
        value = parse_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    accepts_str = tp is str or (get_origin(tp) in (Union, types.UnionType) and str in get_args(tp))
    if accepts_str and value is not None and not isinstance(value, str):
        return text  # e.g. data.frame_template={:05d}.jpg, model.name=123
    return value


def apply_overrides(
    data: dict[str, Any], overrides: list[str] | dict[str, Any], cls: type
) -> dict[str, Any]:
    """Set ``a.b.c=value`` overrides into a nested dict (a copy); values are parsed as YAML.

    ``cls`` is the dataclass the dict describes: the field types say how to read a value (a
    string field takes ``{:05d}.jpg`` as it is). Unknown keys are reported when the dict is
    built (:func:`build_dataclass`).
    """
    data = copy.deepcopy(data)
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            key, sep, raw = text.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {text!r} is not of the form key.path=value")
            key = key.strip()
            items.append((key, _parse_value(raw, _field_type(cls, key.split(".")))))
    for key, value in items:
        parts = key.split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"cannot set {key}: {'.'.join(parts[: depth + 1])} is not a section"
                )
            node = child
        node[parts[-1]] = value
    return data
