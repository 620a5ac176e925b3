"""The data package stays independent of the models."""

from __future__ import annotations

import ast
from pathlib import Path

import tcm.data


def test_data_package_never_imports_models():
    for path in Path(tcm.data.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.startswith("tcm.models") for name in names), (
                f"{path.name} imports {names}"
            )
