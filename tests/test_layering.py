"""The package's layers import only downward.

From the bottom up::

    errors < runtime < checkpoint < utils < ops < layers < models < data < engine < deploy < recipes < cli

``runtime`` (exported models on ONNX Runtime / OpenVINO, NumPy only: no PyTorch) sits just
above ``errors``. ``errors`` (the exception types) and ``checkpoint`` (the on-disk checkpoint format, torch alone)
sit below ``utils``, which reads checkpoints to refuse overwriting them. A module may import its
own package and any package below it, never one above. The data pipeline is further kept apart
from the network: it imports none of ``ops``, ``layers`` and ``models`` (normalisation constants
come from the model's configuration). Every import counts: module-level, inside functions, and
under ``if TYPE_CHECKING:``. The package root (``tcm/__init__.py``) imports its exports lazily,
so ``import tcm`` is allowed everywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tcm

LAYERS = [
    "errors",
    "runtime",
    "checkpoint",
    "utils",
    "ops",
    "layers",
    "models",
    "data",
    "engine",
    "deploy",
    "recipes",
    "cli",
]
NEVER = {"data": {"ops", "layers", "models"}}
"""Packages a layer may not import although they lie below it."""

ROOT = Path(tcm.__file__).parent
SOURCES = sorted(ROOT.rglob("*.py"))


def layer_of(path: Path) -> str:
    """``tcm/engine/config.py`` -> ``engine``; ``tcm/checkpoint.py`` -> ``checkpoint``."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file under the package folder ``root``, in
    line order, relative imports resolved."""
    package = ["tcm", *path.relative_to(root).parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, module))
    return sorted(found)


def tcm_layer(module: str) -> str | None:
    """The layer ``module`` belongs to; ``None`` for other libraries and the package root."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tcm" and len(parts) > 1 else None


def test_every_module_is_in_a_layer():
    unplaced = {layer_of(path) for path in SOURCES} - set(LAYERS) - {"__init__"}
    assert not unplaced, f"place these in LAYERS: {sorted(unplaced)}"


def test_the_package_root_imports_nothing_of_its_own_eagerly():
    assert [m for _, m in imported_modules(ROOT / "__init__.py") if tcm_layer(m)] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_downward(path: Path):
    layer = layer_of(path)
    if layer == "__init__":
        return
    allowed = set(LAYERS[: LAYERS.index(layer) + 1]) - NEVER.get(layer, set())
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in imported_modules(path)
        if tcm_layer(module) is not None and tcm_layer(module) not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "tcm" / "data"
    package.mkdir(parents=True)
    source = package / "x.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..models import zoo\n"
        "def f():\n    from tcm.engine import train\n"
        "from . import y\n"
    )
    found = imported_modules(source, tmp_path / "tcm")
    assert found == [(1, "typing"), (3, "tcm.models"), (5, "tcm.engine"), (6, "tcm.data")]
