"""The compiled CPU kernels against the pure-PyTorch reference, and the choice between them."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import tcm.ops as ops
from tcm.ops import _extension, backend


@pytest.fixture(scope="module")
def compiled():
    """Skip where the kernels cannot be built (the fallback tests below still run)."""
    if not ops.extension_available():
        reason = _extension.extension_error() or f"{_extension.DISABLE_ENV} is set"
        pytest.skip(f"compiled kernels unavailable: {reason}")


def _normalized(*shape, dtype=torch.float32):
    """Non-negative, channel-normalised maps like MTDM's (correlations in [0, 1])."""
    x = torch.randn(*shape, dtype=dtype).relu()
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + 1e-6)


def _forward_backward(backend_name, fn, inputs, weights_seed=1):
    """Output and input gradients of sum(fn(*inputs) * w) on one backend."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    with ops.use_backend(backend_name):
        out = fn(*leaves)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(weights_seed))
    (out * w.to(out.dtype)).sum().backward()
    return out.detach(), [x.grad for x in leaves]


# Pairs, channels, height, width, patch: every size the model tests use (golden cases
# t8_h16, t16_h10, t8_n2_h12; 32x32 clips in tests/models, with TCM at layer1/2/3 and
# patch 5), TCM's shape at 224 (28x28) and at stride 4 (56x56, fewer pairs), the demo's
# (8x8), the last maps of the pixel-products path (H W <= P P: 15x15, 9x25) and the first
# after it (16x15), and odd sizes. On 8x8, 4x4 and 2x2 maps every pixel's window covers the
# map (the products' one-pass backward); on 15x15, 9x25 and 10x10 it does not.
MODEL_SIZES = [
    (208, 64, 8, 8, 15),
    (3, 64, 15, 15, 15),
    (3, 16, 9, 25, 15),
    (3, 16, 16, 15, 15),
    (13, 64, 16, 16, 15),
    (29, 64, 10, 10, 15),
    (26, 64, 12, 12, 15),
    (10, 64, 4, 4, 15),
    (10, 64, 8, 8, 5),
    (10, 64, 2, 2, 5),
    (4, 64, 28, 28, 15),
    (2, 64, 56, 56, 15),
    (3, 17, 9, 21, 7),
    (2, 5, 1, 33, 3),
    (1, 3, 23, 5, 17),
    (2, 20, 7, 7, 1),
]


def _assert_fields_match_the_reference_path(a, b, patch, tolerance, grad_tolerance):
    def fields(p, q):
        return ops.mtdm_fields(p, q, patch)

    fast, fast_grads = _forward_backward("extension", fields, (a, b))
    ref, ref_grads = _forward_backward("torch", fields, (a, b))
    torch.testing.assert_close(fast, ref, atol=tolerance, rtol=tolerance)
    for fast_grad, ref_grad in zip(fast_grads, ref_grads):
        torch.testing.assert_close(fast_grad, ref_grad, atol=grad_tolerance, rtol=grad_tolerance)


@pytest.mark.parametrize("pairs, channels, height, width, patch", MODEL_SIZES)
def test_mtdm_fields_match_the_reference_path(compiled, pairs, channels, height, width, patch):
    a = _normalized(pairs, channels, height, width)
    b = _normalized(pairs, channels, height, width)
    _assert_fields_match_the_reference_path(a, b, patch, 1e-4, 1e-4)


@pytest.mark.parametrize("height, width, patch", [(8, 8, 15), (5, 7, 9), (3, 7, 15), (14, 14, 15)])
def test_mtdm_fields_where_few_or_no_correlations_are_positive(compiled, height, width, patch):
    """Pair 0 has no positive correlation, so every ReLU'd window is zero and its arg-max is
    the first displacement, outside the map for most pixels (the pixel-products path skips the
    rows of b outside the map); in pair 1 only one pixel of b correlates positively. In float64:
    in float32 both paths' gradients of such peaked windows differ by up to 1e-3 anyway."""
    torch.manual_seed(3)
    a, b = (0.5 * torch.randn(4, 2, height, width, dtype=torch.float64) for _ in range(2))
    a[:2], b[:2] = a[:2].abs(), -b[:2].abs()
    b[1, :, height // 2, width - 1] = 1.0
    assert ops.local_correlation(a[:1], b[:1], patch).max() == 0  # zero outside the map
    _assert_fields_match_the_reference_path(a, b, patch, 1e-10, 1e-9)


@pytest.mark.parametrize("height, width, patch", [(8, 8, 15), (3, 7, 15), (5, 7, 9)])
def test_mtdm_fields_take_the_first_of_tied_maxima(compiled, height, width, patch):
    """Two pixels of b equal, so every pixel of a has two largest correlations: the arg-max is
    the first displacement of the two, and the Gaussian window centres there."""
    torch.manual_seed(5)
    a, b = (torch.rand(3, 4, height, width, dtype=torch.float64) for _ in range(2))
    b[:, :, 0, 1] = b[:, :, height - 1, width - 2] = 2.0
    _assert_fields_match_the_reference_path(a, b, patch, 1e-10, 1e-9)


@pytest.mark.parametrize("pairs, channels, height, width, patch", MODEL_SIZES)
def test_correlation_matches_the_reference_path(compiled, pairs, channels, height, width, patch):
    a = torch.randn(pairs, channels, height, width)
    b = torch.randn(pairs, channels, height, width)

    def correlation(p, q):
        return ops.local_correlation(p, q, patch)

    fast, fast_grads = _forward_backward("extension", correlation, (a, b))
    ref, ref_grads = _forward_backward("torch", correlation, (a, b))
    # Sums of 64 products of unit-variance values: compare relative to their scale.
    scale = channels**0.5
    torch.testing.assert_close(fast, ref, atol=1e-5 * scale, rtol=1e-4)
    for fast_grad, ref_grad in zip(fast_grads, ref_grads):
        torch.testing.assert_close(fast_grad, ref_grad, atol=1e-5 * scale * patch, rtol=1e-4)


@pytest.mark.parametrize("shape, patch", [((2, 3, 5, 4), 5), ((1, 2, 3, 7), 15), ((2, 4, 6, 5), 1)])
def test_compiled_backward_passes_gradcheck_in_float64(compiled, shape, patch):
    a = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    with ops.use_backend("extension"):
        assert torch.autograd.gradcheck(
            lambda p, q: ops.local_correlation(p, q, patch), (a, b), fast_mode=True
        )
        # Away from ties of the arg-max and from zeros of the ReLU, the fields are smooth.
        a_pos = (torch.rand(shape, dtype=torch.float64) * 0.05).requires_grad_()
        b_pos = (torch.rand(shape, dtype=torch.float64) * 0.05).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda p, q: ops.mtdm_fields(p, q, patch), (a_pos, b_pos), fast_mode=True
        )


@pytest.mark.parametrize("op", [ops.mtdm_fields, ops.local_correlation])
def test_float64_matches_the_reference_closely(compiled, op):
    a, b = (_normalized(3, 16, 11, 13, dtype=torch.float64) for _ in range(2))

    def fn(p, q):
        return op(p, q, 9)

    fast, fast_grads = _forward_backward("extension", fn, (a, b))
    ref, ref_grads = _forward_backward("torch", fn, (a, b))
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    for fast_grad, ref_grad in zip(fast_grads, ref_grads):
        torch.testing.assert_close(fast_grad, ref_grad, atol=1e-9, rtol=1e-9)


def test_gradient_only_where_asked(compiled):
    a, b = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6, requires_grad=True)
    with ops.use_backend("extension"):
        ops.mtdm_fields(a, b, 5).sum().backward()
        ops.local_correlation(a, b, 5).sum().backward()
    assert a.grad is None and b.grad is not None
    with ops.use_backend("extension"), torch.no_grad():
        assert ops.mtdm_fields(a, b, 5).grad_fn is None


# 9x9 with patch 5 takes the blocked kernels, 8x8 with patch 15 the pixel products.
@pytest.mark.parametrize("size, patch", [(9, 5), (8, 15)])
def test_half_inputs_run_in_float32(compiled, size, patch):
    a, b = _normalized(2, 16, size, size), _normalized(2, 16, size, size)
    with ops.use_backend("extension"):
        out = ops.mtdm_fields(a.bfloat16(), b.bfloat16(), patch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            leaves = a.clone().requires_grad_(), b.clone().requires_grad_()
            auto = ops.mtdm_fields(*leaves, patch)
            auto.sum().backward()
    assert out.dtype == auto.dtype == leaves[0].grad.dtype == torch.float32
    with ops.use_backend("torch"):
        torch.testing.assert_close(auto, ops.mtdm_fields(a, b, patch), atol=1e-5, rtol=1e-5)


def test_large_volumes_reuse_the_memory_of_freed_ones(compiled):
    # Above 32 MB (here 37 MB) a volume comes from the kernels' cache of freed volumes.
    a, b = torch.randn(40, 4, 32, 32), torch.randn(40, 4, 32, 32)
    with ops.use_backend("extension"):
        first = ops.local_correlation(a, b, 15)
        address, expected = first.data_ptr(), first.clone()
        del first
        second = ops.local_correlation(a, b, 15)
    assert second.data_ptr() == address
    torch.testing.assert_close(second, expected, rtol=0, atol=0)
    with ops.use_backend("torch"):
        torch.testing.assert_close(second, ops.local_correlation(a, b, 15))


def test_auto_picks_the_compiled_kernels_on_cpu_float_maps(compiled):
    a = torch.randn(1, 4, 5, 5)
    assert backend.get_backend() == "auto"
    assert backend.kernels_for(a) is not None
    assert backend.kernels_for(a.int()) is None and backend.kernels_for(a.half()) is None
    with ops.use_backend("torch"):
        assert backend.kernels_for(a) is None


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown ops backend"):
        ops.set_backend("cuda-magic")


@pytest.fixture
def fresh_extension_state(monkeypatch):
    """A process where the kernels have not been looked for yet."""
    monkeypatch.setattr(_extension, "_state", {})
    monkeypatch.delenv(_extension.DISABLE_ENV, raising=False)


@pytest.mark.parametrize(
    "failure, message",
    [("missing", "no C++ compiler found"), ("build", "error: boom")],
)
def test_falls_back_with_one_warning_when_the_build_is_impossible(
    monkeypatch, caplog, fresh_extension_state, failure, message
):
    if failure == "missing":
        monkeypatch.setattr(
            _extension, "_missing_tools", lambda: "no C++ compiler found ('c++' is not on PATH)"
        )
    else:
        monkeypatch.setattr(_extension, "_missing_tools", lambda: None)

        def broken_build(folder):
            raise RuntimeError("compiling correlation.cpp\nerror: boom")

        monkeypatch.setattr(_extension, "_build", broken_build)
    a, b = _normalized(2, 8, 6, 6), _normalized(2, 8, 6, 6)
    with caplog.at_level(logging.WARNING, logger=_extension.__name__):
        first = ops.mtdm_fields(a, b, 5)
        ops.local_correlation(a, b, 5)
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1 and message in warnings[0].getMessage()
    with ops.use_backend("torch"):
        torch.testing.assert_close(first, ops.mtdm_fields(a, b, 5), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=re.escape(message)):
        ops.set_backend("extension")
    assert ops.get_backend() == "auto"


def test_disable_variable_never_builds(monkeypatch, fresh_extension_state):
    monkeypatch.setenv(_extension.DISABLE_ENV, "1")

    def no_build(folder):
        raise AssertionError("the kernels must not be built")

    monkeypatch.setattr(_extension, "_build", no_build)
    a = torch.randn(1, 4, 5, 5)
    assert backend.kernels_for(a) is None
    assert ops.mtdm_fields(a, a, 3).shape == (1, 3, 5, 5)
    with pytest.raises(RuntimeError, match="TCM_DISABLE_EXTENSIONS"):
        ops.set_backend("extension")


def _run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout


def test_backend_from_the_environment():
    out = _run_python("import tcm.ops; print(tcm.ops.get_backend())", TCM_OPS_BACKEND="torch")
    assert out.strip() == "torch"


def test_inference_memory_is_bounded_by_inputs_and_outputs(compiled):
    # Peak resident memory of a fresh process: the fused inference path must not build the
    # (B, P*P, H, W) volume (37 MB here); its copies of the inputs are about 2.5x one input.
    out = _run_python(
        """
        import torch, tcm.ops as ops
        from tcm.utils.memory import reset_peak_resident, resident_bytes
        torch.manual_seed(0)
        a, b = torch.randn(13, 64, 56, 56), torch.randn(13, 64, 56, 56)
        for backend in ("extension", "torch"):
            ops.set_backend(backend)
            with torch.no_grad():
                ops.mtdm_fields(a[:1, :, :8, :8], b[:1, :, :8, :8], 15)  # load, start threads
                reset_peak_resident()
                before = resident_bytes()
                fields = ops.mtdm_fields(a, b, 15)
                after = resident_bytes(peak=True)
            del fields
            print(after - before)
        """
    )
    compiled_extra, torch_extra = (int(line) for line in out.split())
    input_bytes = 13 * 64 * 56 * 56 * 4
    volume_bytes = 13 * 225 * 56 * 56 * 4
    # The measurement sees the unfused path's volume (and its chunked temporaries).
    assert torch_extra > volume_bytes
    assert compiled_extra < min(3 * input_bytes, volume_bytes), (compiled_extra, input_bytes)


def test_the_build_folder_is_per_torch_installation(monkeypatch, tmp_path):
    """Two environments (torch elsewhere, or another version) build in folders of their own."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    here = _extension.build_directory()
    assert here.parent == tmp_path / "tcm" and here.name.startswith("tcm_cpu_kernels_")
    monkeypatch.setattr(torch, "__file__", str(tmp_path / "other-venv" / "torch" / "__init__.py"))
    elsewhere = _extension.build_directory()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert len({here, elsewhere, _extension.build_directory()}) == 3


def test_a_failed_build_is_retried_once_from_scratch(monkeypatch, caplog, tmp_path):
    folder = tmp_path / "tcm" / "tcm_cpu_kernels_x"
    folder.mkdir(parents=True)
    (folder / "lock").write_text("")  # left by a killed build
    (folder / "half-written.o").write_text("")
    calls = []

    def build(where):
        calls.append(sorted(p.name for p in where.iterdir()))
        if len(calls) == 1:
            raise RuntimeError("ninja: build stopped\nerror: truncated object file")
        return "module"

    monkeypatch.setattr(_extension, "_build", build)
    with caplog.at_level(logging.INFO, logger=_extension.__name__):
        assert _extension._build_or_load(folder) == "module"
    assert calls == [["half-written.o"], []]  # torch's stale lock gone; then an empty folder
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 1 and "truncated object file" in retries[0]
    assert (folder / _extension.COMPLETE_MARK).exists()
