"""Shared test fixtures: paths to ../shared, skipped cleanly where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder beside the repository (golden files, real clips)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (golden files and real clips live there)")
    return SHARED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
