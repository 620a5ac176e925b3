"""Fixtures of the command-line tests: the engine tests' tiny labelled video set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_helpers import TinySet, make_tiny_set


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> TinySet:
    """12 training and 6 validation videos of 3 classes, 12 frames of 40x48."""
    return make_tiny_set(tmp_path_factory.mktemp("cli_tiny_set"))
