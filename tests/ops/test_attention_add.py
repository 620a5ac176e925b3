"""The compiled temporal attention + sum against TAM's eager one."""

from __future__ import annotations

import itertools

import pytest
import torch

import tcm.ops as ops
from tcm.layers.tam import TAM, TemporalAttention
from tcm.ops.attention_add import attention_add, attention_kernels_for


def _maps(*shape, channels_last=False, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _attention(num_segments, dtype=torch.float32):
    torch.manual_seed(3)
    attention = TemporalAttention(num_segments).to(dtype)
    with torch.no_grad():  # weights far from 0.5, so the sigmoid's slope matters
        attention.conv.weight.mul_(4)
    return attention


def _step(attention, base, x, grad, backend):
    """Output, the gradients of base and x and of the attention's kernel."""
    base, x = base.clone().requires_grad_(), x.clone().requires_grad_()
    attention.zero_grad(set_to_none=True)
    with ops.use_backend(backend):
        out = attention.add_weighted(base, x)
    out.backward(grad)
    return [out.detach(), base.grad, x.grad, attention.conv.weight.grad]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("base_cl, x_cl", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize(
    "num_segments, channels, height, width",
    [(8, 32, 8, 8), (8, 24, 5, 7), (16, 3, 2, 3), (4, 17, 1, 1), (1, 8, 4, 4)],
)
def test_matches_the_eager_attention(
    kernels, dtype, base_cl, x_cl, num_segments, channels, height, width
):
    attention = _attention(num_segments, dtype)
    shape = (2 * num_segments, channels, height, width)
    base = _maps(*shape, channels_last=base_cl, dtype=dtype)
    x = _maps(*shape, channels_last=x_cl, dtype=dtype, seed=1)
    grad = _maps(*shape, channels_last=base_cl, dtype=dtype, seed=2)
    assert attention_kernels_for(base, x, attention.conv.weight) is kernels
    compiled = _step(attention, base, x, grad, "auto")
    reference = _step(attention, base, x, grad, "torch")
    # Each result in the layout the eager op gives it: the output and base's gradient in
    # base's, x's gradient in x's.
    for ours, theirs in zip(compiled[:3], reference[:3], strict=True):
        assert ours.stride() == theirs.stride()
    close = (
        {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 1e-5}
    )
    for ours, theirs in zip(compiled, reference, strict=True):
        torch.testing.assert_close(ours, theirs, **close)


@pytest.mark.parametrize("x_cl", [False, True])
def test_float64_gradients_are_exact(kernels, x_cl):
    base = _maps(8, 5, 3, 2, dtype=torch.float64).requires_grad_()
    x = _maps(8, 5, 3, 2, channels_last=x_cl, dtype=torch.float64, seed=1).requires_grad_()
    kernel = torch.randn(1, 1, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda b, a, k: attention_add(b, a, k, 4, kernels), (base, x, kernel)
    )


def test_bit_identical_run_to_run_and_across_thread_counts(kernels):
    """Each clip is computed whole by one thread; the kernel's gradient is summed per clip in
    float64 and combined in clip order."""
    attention = _attention(8)
    base = _maps(128, 32, 8, 8)
    x = _maps(128, 32, 8, 8, channels_last=True, seed=1)
    grad = _maps(128, 32, 8, 8, seed=2)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            results.append(_step(attention, base, x, grad, "auto"))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_the_eager_attention_runs_where_the_op_does_not_apply(kernels):
    attention = _attention(8)
    kernel = attention.conv.weight
    base, x = _maps(16, 8, 4, 4), _maps(16, 8, 4, 4, seed=1)
    assert attention_kernels_for(base, x[:, :4], kernel) is None  # shapes differ
    assert attention_kernels_for(base, x.double(), kernel) is None  # dtypes differ
    assert attention_kernels_for(base.bfloat16(), x.bfloat16(), kernel.bfloat16()) is None
    assert attention_kernels_for(base, x.transpose(2, 3), kernel) is None  # neither layout
    assert attention_kernels_for(base, x, torch.ones(1, 1, 2)) is None  # even kernel
    with ops.use_backend("torch"):
        assert attention_kernels_for(base, x, kernel) is None
    # Hooks on the 1D convolution see it run.
    calls = []
    attention.conv.register_forward_hook(lambda *_: calls.append(1))
    out = attention.add_weighted(base, x)
    assert calls == [1]
    torch.testing.assert_close(out, base + attention(x))


def test_tam_training_sums_through_the_op(kernels, monkeypatch):
    """TAM's attention and the sum into the backbone run as the op in training (the demo's
    8x8 maps: TAM's output channels-last, the backbone's plain); outputs and gradients equal
    the eager path's."""
    import tcm.layers.tam as tam_module

    calls = []
    original = tam_module.attention_add

    def counting(*args):
        calls.append(1)
        return original(*args)

    torch.manual_seed(0)
    tam = TAM(32, 8).train()
    fields = torch.randn(16, 6, 8, 8)
    base = torch.randn(16, 32, 8, 8)
    grad = torch.randn(16, 32, 8, 8)

    def run(use_op: bool):
        monkeypatch.setattr(
            tam_module,
            "attention_kernels_for",
            attention_kernels_for if use_op else (lambda *_: None),
        )
        monkeypatch.setattr(tam_module, "attention_add", counting)
        leaves = fields.clone().requires_grad_(), base.clone().requires_grad_()
        tam.zero_grad(set_to_none=True)
        out = tam.add_to(leaves[1], leaves[0])
        out.backward(grad)
        return [out.detach(), *(leaf.grad for leaf in leaves), *(p.grad for p in tam.parameters())]

    compiled = run(True)
    assert calls == [1]
    reference = run(False)
    for ours, theirs in zip(compiled, reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_bad_inputs_are_named(kernels):
    base, x, kernel = _maps(16, 4, 3, 3), _maps(16, 4, 3, 3, seed=1), torch.randn(1, 1, 3)
    with pytest.raises(RuntimeError, match="do not split into clips of 5"):
        kernels.attention_add_forward(base, x, kernel, 5)
    with pytest.raises(RuntimeError, match="one shape and dtype"):
        kernels.attention_add_forward(base, x[:8], kernel, 8)
    with pytest.raises(RuntimeError, match="kernel must be a contiguous"):
        kernels.attention_add_forward(base, x, torch.randn(1, 1, 4), 8)
    with pytest.raises(RuntimeError, match="attended maps must be contiguous"):
        kernels.attention_add_forward(base, x.transpose(2, 3), kernel, 8)
    out, weights, pooled = kernels.attention_add_forward(base, x, kernel, 8)
    with pytest.raises(RuntimeError, match="gradient must match"):
        kernels.attention_add_backward(out[:8], x, kernel, weights, pooled, 8)
    with pytest.raises(RuntimeError, match="weights must be the forward's"):
        kernels.attention_add_backward(out, x, kernel, weights[:, :2], pooled, 8)
