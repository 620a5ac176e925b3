"""Shared fixtures of the operator tests."""

from __future__ import annotations

import pytest
import torch

import tcm.ops as ops
from tcm.ops import _extension, backend


@pytest.fixture(scope="module")
def kernels():
    """The compiled kernels' module; the test skips where they do not load."""
    if not ops.extension_available():
        reason = _extension.extension_error() or f"{_extension.DISABLE_ENV} is set"
        pytest.skip(f"compiled kernels unavailable: {reason}")
    return backend.kernels_for(torch.zeros(1))
