"""MTDM's fields of frame pairs read from whole clips against those of gathered pairs."""

from __future__ import annotations

import pytest
import torch

from tcm.layers.mtdm import MTDM
from tcm.ops import mtdm_fields, use_backend
from tcm.ops.mtdm_fields import clip_fields_kernels, mtdm_clip_fields

# MTDM's pairs at T = 8 (adjacent frames, then the first against frames 2..7), the slow
# tempo alone, and pairs in no run: backwards, skipping, repeated.
PAIRS = [
    ([0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 7]),
    ([0, 0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7]),
    ([3, 0, 5, 5, 2], [1, 2, 7, 7, 2]),
]


def _clips(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _gathered(clips, firsts, seconds, *args):
    """The fields of the pairs copied out of the clips, as MTDM ran them before."""
    a, b = clips[:, firsts].flatten(0, 1), clips[:, seconds].flatten(0, 1)
    return mtdm_fields(a, b, *args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("firsts, seconds", PAIRS)
@pytest.mark.parametrize("size", [(8, 8), (3, 5)])
def test_matches_the_gathered_pairs(kernels, dtype, firsts, seconds, size):
    clips = _clips(2, 8, 16, *size, dtype=dtype)
    args = (15, 5.0, 100.0)
    assert clip_fields_kernels(clips, 15) is kernels
    grad = _clips(2 * len(firsts), 3, *size, dtype=dtype, seed=1)
    results = []
    for run in (
        lambda c: mtdm_clip_fields(c, firsts, seconds, *args, kernels),
        lambda c: _gathered(c, firsts, seconds, *args),
    ):
        leaf = clips.clone().requires_grad_()
        out = run(leaf)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    close = (
        {"atol": 1e-10, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 1e-5, "rtol": 1e-4}
    )
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, **close)


def test_float64_gradients_are_exact(kernels):
    clips = _clips(1, 4, 3, 2, 3, dtype=torch.float64).requires_grad_()
    # Temperature 1: gradients of a useful size at this scale.
    assert torch.autograd.gradcheck(
        lambda c: mtdm_clip_fields(c, [0, 1, 2, 0, 0], [1, 2, 3, 2, 3], 3, 1.0, 1.0, kernels),
        (clips,),
    )


def test_mtdm_reads_its_pairs_from_the_clips_on_small_maps(kernels, monkeypatch):
    import tcm.layers.mtdm as mtdm_module

    calls = []
    original = mtdm_module.mtdm_clip_fields
    monkeypatch.setattr(
        mtdm_module, "mtdm_clip_fields", lambda *args: calls.append(1) or original(*args)
    )
    torch.manual_seed(0)
    mtdm = MTDM(16, 8).train()
    x, grad = _clips(16, 16, 8, 8), _clips(16, 6, 8, 8, seed=1)
    results = []
    for backend in ("auto", "torch"):
        leaf = x.clone().requires_grad_()
        mtdm.zero_grad(set_to_none=True)
        with use_backend(backend):
            out = mtdm(leaf)
        out.backward(grad)
        results.append([out.detach(), leaf.grad, *(p.grad for p in mtdm.parameters())])
    assert calls == [1]
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_where_it_does_not_apply(kernels):
    assert clip_fields_kernels(_clips(1, 8, 4, 15, 15), 15) is kernels  # P^2 pixels
    assert clip_fields_kernels(_clips(1, 8, 4, 15, 16), 15) is None  # more pixels than P^2
    assert clip_fields_kernels(_clips(8, 4, 8, 8), 15) is None  # not (N, T, C, H, W)
    with use_backend("torch"):
        assert clip_fields_kernels(_clips(1, 8, 4, 8, 8), 15) is None


def test_half_precision_clips_are_computed_in_float(kernels):
    """As :func:`mtdm_fields` does: bfloat16 maps give float32 fields."""
    clips = _clips(1, 4, 8, 8, 8).bfloat16()
    assert clip_fields_kernels(clips, 15) is kernels
    fields = mtdm_clip_fields(clips, [0, 1], [1, 2], 15, 5.0, 100.0, kernels)
    assert fields.dtype == torch.float32
    torch.testing.assert_close(fields, _gathered(clips.float(), [0, 1], [1, 2], 15, 5.0, 100.0))


def test_bad_inputs_are_named(kernels):
    clips = _clips(1, 4, 3, 4, 4)
    with pytest.raises(RuntimeError, match=r"pair 1 \(1, 4\) is not a pair of frames of clips"):
        mtdm_clip_fields(clips, [0, 1], [1, 4], 15, 5.0, 100.0, kernels)
    with pytest.raises(RuntimeError, match="as many first as second frames"):
        mtdm_clip_fields(clips, [0, 1], [1], 15, 5.0, 100.0, kernels)
    with pytest.raises(RuntimeError, match="at most patch_size"):
        mtdm_clip_fields(clips, [0], [1], 3, 5.0, 100.0, kernels)
    with pytest.raises(ValueError, match="positive odd"):
        mtdm_clip_fields(clips, [0], [1], 4, 5.0, 100.0, kernels)
