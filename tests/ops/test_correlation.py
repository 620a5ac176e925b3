import pytest
import torch

from tcm.ops import correlation, local_correlation, use_backend
from tcm.ops.correlation import local_correlation_reference, local_correlation_torch


def brute_force(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The definition, element by element."""
    batch, _, height, width = a.shape
    radius = patch_size // 2
    out = torch.zeros(batch, patch_size * patch_size, height, width, dtype=a.dtype)
    for i in range(patch_size):
        for j in range(patch_size):
            for y in range(height):
                for x in range(width):
                    yy, xx = y + i - radius, x + j - radius
                    if 0 <= yy < height and 0 <= xx < width:
                        out[:, i * patch_size + j, y, x] = (a[:, :, y, x] * b[:, :, yy, xx]).sum(1)
    return out


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 4, 6, 3), (1, 2, 1, 1)])
@pytest.mark.parametrize("patch_size", [1, 3, 5, 9])
def test_both_paths_match_the_definition(shape, patch_size):
    a = torch.randn(shape, dtype=torch.float64)
    b = torch.randn(shape, dtype=torch.float64)
    expected = brute_force(a, b, patch_size)
    torch.testing.assert_close(local_correlation_reference(a, b, patch_size), expected)
    torch.testing.assert_close(local_correlation_torch(a, b, patch_size), expected)
    # The entry point, on whichever path the backend picks here.
    torch.testing.assert_close(local_correlation(a, b, patch_size), expected)


@pytest.mark.parametrize("patch_size", [1, 3, 5, 7, 9, 11, 13, 15])
def test_gradcheck_odd_sizes_and_borders(patch_size):
    # Maps smaller than the patch: every displacement reaches over a border somewhere.
    a = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, q: local_correlation_torch(p, q, patch_size), (a, b), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda p, q: local_correlation_reference(p, q, patch_size), (a, b), fast_mode=True
    )


def test_chunking_bounds_temporaries_without_changing_results():
    a, b = torch.randn(6, 8, 12, 12), torch.randn(6, 8, 12, 12)
    whole = local_correlation_torch(a, b, 7)
    # One sample per chunk at most.
    chunked = local_correlation_torch(a, b, 7, max_temp_bytes=1)
    torch.testing.assert_close(chunked, whole)


def test_large_maps_are_split_into_chunks(monkeypatch):
    calls = []
    original = correlation.correlate_rows

    def spy(a, b, patch_size):
        calls.append(a.shape[0])
        return original(a, b, patch_size)

    monkeypatch.setattr(correlation, "correlate_rows", spy)
    # TCM at stride 4 of a 224 input, one 8-frame clip: 13 pairs of 56x56 maps.
    a, b = torch.randn(13, 64, 56, 56), torch.randn(13, 64, 56, 56)
    local_correlation_torch(a, b, 15, max_temp_bytes=64 * 2**20)
    assert len(calls) > 1 and sum(calls) == 13


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_half_precision_and_autocast_accumulate_in_float32(backend):
    with use_backend(backend):
        _check_half_precision()


def _check_half_precision():
    a, b = torch.randn(2, 16, 9, 9), torch.randn(2, 16, 9, 9)
    expected = local_correlation(a, b, 5)
    out = local_correlation(a.bfloat16(), b.bfloat16(), 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=0.5, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = local_correlation(a, b, 5)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, expected)


@pytest.mark.parametrize(
    "a_shape, b_shape, patch_size",
    [((1, 2, 4, 4), (1, 2, 4, 5), 3), ((2, 4, 4), (2, 4, 4), 3), ((1, 2, 4, 4), (1, 2, 4, 4), 4)],
)
def test_invalid_arguments_raise(a_shape, b_shape, patch_size):
    with pytest.raises(ValueError):
        local_correlation(torch.zeros(a_shape), torch.zeros(b_shape), patch_size)


@pytest.mark.parametrize(("shape", "patch"), [((3, 16, 9, 11), 5), ((2, 8, 6, 6), 15)])
def test_unchunked_correlation_matches_reference(shape, patch):
    a, b = torch.randn(shape), torch.randn(shape)
    expected = correlation.local_correlation_reference(a, b, patch)
    got = correlation.correlate_rows(a, b, patch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
