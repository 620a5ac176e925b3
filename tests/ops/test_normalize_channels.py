"""The compiled channel normalisation against the eager formula."""

from __future__ import annotations

import pytest
import torch

import tcm.ops as ops


@pytest.fixture(scope="module")
def compiled():
    if not ops.extension_available():
        pytest.skip("compiled kernels unavailable")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(128, 64, 8, 8), (3, 6, 5, 7), (2, 1, 1, 1), (4, 17, 3, 2)])
def test_matches_the_eager_formula_and_writes_the_plain_layout(compiled, dtype, shape):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype).relu().contiguous(memory_format=torch.channels_last)
    x[0, :, 0, 0] = 0  # an all-zero pixel: the eps keeps it finite
    grad = torch.randn(shape, dtype=dtype)
    results = []
    for backend_name in ("extension", "torch"):
        leaf = x.clone().requires_grad_()
        with ops.use_backend(backend_name):
            out = ops.normalize_channels(leaf, 1e-6)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    (fast, fast_grad), (eager, eager_grad) = results
    assert fast.is_contiguous() and fast_grad.is_contiguous(memory_format=torch.channels_last)
    close = (
        {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 1e-5}
    )
    torch.testing.assert_close(fast, eager, **close)
    torch.testing.assert_close(fast_grad, eager_grad, **close)


def test_passes_gradcheck_and_leaves_other_inputs_to_the_formula(compiled):
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with ops.use_backend("extension"):
        assert torch.autograd.gradcheck(ops.normalize_channels, (x.requires_grad_(),))
        plain = torch.randn(2, 5, 3, 4)
        assert ops.normalize_channels(plain).grad_fn is None  # the formula, no autograd needed
        torch.testing.assert_close(
            ops.normalize_channels(plain), ops.normalize_channels_torch(plain)
        )
