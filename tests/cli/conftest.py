"""Fixtures of the command-line tests: the tiny labelled video set of ``tiny_set``."""

from __future__ import annotations

import pytest

from tiny_set import TinySet, make_tiny_set


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> TinySet:
    """12 training and 6 validation videos of 3 classes, 12 frames of 40x48."""
    return make_tiny_set(tmp_path_factory.mktemp("cli_tiny_set"))
