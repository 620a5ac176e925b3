import pytest
import torch

from tcm.ops import kernel_soft_argmax


def test_sharp_peak_gives_its_displacement():
    patch_size, radius = 7, 3
    correlation = torch.zeros(1, patch_size * patch_size, 2, 2)
    # Pixel (0, 0): peak at i=5 (down 2), j=1 (left 2).
    correlation[0, 5 * patch_size + 1, 0, 0] = 1.0
    out = kernel_soft_argmax(correlation, patch_size)
    u, v, conf = out[0, :, 0, 0]
    assert u == pytest.approx(-2 / radius, abs=1e-6)
    assert v == pytest.approx(2 / radius, abs=1e-6)
    assert conf == 1.0


def test_flat_correlation_gives_zero_displacement():
    out = kernel_soft_argmax(torch.zeros(2, 25, 3, 3), 5)
    torch.testing.assert_close(out[:, :2], torch.zeros(2, 2, 3, 3))


def test_gradcheck():
    # Distinct values keep the arg-max away from ties.
    correlation = torch.rand(1, 9, 3, 2, dtype=torch.float64) * 0.05
    correlation.requires_grad_()
    assert torch.autograd.gradcheck(lambda c: kernel_soft_argmax(c, 3), (correlation,))


def test_wrong_volume_raises():
    with pytest.raises(ValueError, match="expected a correlation volume"):
        kernel_soft_argmax(torch.zeros(1, 24, 3, 3), 5)
