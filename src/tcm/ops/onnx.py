"""The TCM operators in standard ONNX operators, for ``torch.onnx.export``.

- The TorchScript-based exporter (``dynamo=False``) traces ``tcm::mtdm_fields`` and
  ``tcm::local_correlation`` as such; :func:`register_onnx_symbolics` gives it their
  translations (opset 11 and up).
- The ``torch.export``-based exporter takes the program after
  ``run_decompositions(tcm.ops.decompositions())``: the plain PyTorch form.

Both write the plain form's steps (:func:`tcm.ops.correlation.correlate_rows`, then the
kernel soft-argmax): one batched product per vertical offset, the band picked by reshapes, an
arg-max, a Gaussian window and a softmax; the batch dimension, the map's size and
channels stay dynamic. The TorchScript-based translation of ``tcm::mtdm_fields`` puts the
displacements last and reads the window from a constant table (see :func:`_soft_argmax`):
ONNX runtimes run its steps one full pass over the volume each, so fewer passes run faster.
"""

from __future__ import annotations

import torch

MIN_OPSET = 11
_registered: set[int] = set()


def _const(g, values, dtype=torch.int64):
    return g.op("Constant", value_t=torch.as_tensor(values, dtype=dtype))


def _sizes(g, a):
    """``C``, ``H``, ``W`` of ``(B, C, H, W)`` maps as 1-element int64 tensors of the graph."""
    shape = g.op("Shape", a)
    return [g.op("Slice", shape, _const(g, [i]), _const(g, [i + 1])) for i in (1, 2, 3)]


def _shape(g, *parts):
    """A shape from ints and 1-element tensors."""
    return g.op("Concat", *(_const(g, [p]) if isinstance(p, int) else p for p in parts), axis_i=0)


def _band(g, a, b, patch_size: int):
    """``(B, C, H, W)`` x2 -> ``(B, P, H, W, P)`` correlations by vertical offset, row, column
    and horizontal offset (see ``correlate_rows``), and ``H``, ``W``."""
    channels, height, width = _sizes(g, a)
    p, d = patch_size, patch_size // 2
    span = g.op("Add", width, _const(g, [2 * d]))  # W + 2d
    b_padded = g.op("Pad", b, _const(g, [0, 0, d, 0, 0, 0, d, 0]))  # rows padded by d
    # Rows before channels while the map is small: the P windows of rows are then cut and
    # joined as they are (transposing their P-times larger concatenation cost more).
    b_padded = g.op("Transpose", b_padded, perm_i=[0, 2, 1, 3])  # (B, H + 2d, C, W)
    rows = [
        g.op("Slice", b_padded, _const(g, [i]), g.op("Add", height, _const(g, [i])), _const(g, [1]))
        for i in range(p)
    ]
    b_rows = g.op("Concat", *rows, axis_i=1)  # (B, P*H, C, W)
    b_rows = g.op("Reshape", b_rows, _shape(g, -1, p, height, channels, width))
    a_rows = g.op("Transpose", a, perm_i=[0, 2, 3, 1])  # (B, H, W, C)
    a_rows = g.op("Reshape", a_rows, _shape(g, -1, 1, height, width, channels))
    products = g.op("MatMul", a_rows, b_rows)  # (B, P, H, W, W')
    products = g.op("Pad", products, _const(g, [0, 0, 0, 0, d, 0, 0, 0, 0, d]))
    flat = g.op("Reshape", products, _shape(g, -1, p, height, g.op("Mul", width, span)))
    extra = g.op("Concat", _const(g, [0, 0, 0, 0, 0, 0, 0]), width, axis_i=0)
    flat = g.op("Pad", flat, extra)  # W (W + 2d + 1) values per row
    span1 = g.op("Add", span, _const(g, [1]))
    rows = g.op("Reshape", flat, _shape(g, -1, p, height, width, span1))
    band = g.op("Slice", rows, _const(g, [0]), _const(g, [p]), _const(g, [4]))  # (B,P,H,W,P)
    return band, height, width


def _correlation(g, a, b, patch_size: int):
    """``(B, C, H, W)`` x2 -> ``(B, P*P, H, W)``."""
    band, height, width = _band(g, a, b, patch_size)
    band = g.op("Transpose", band, perm_i=[0, 1, 4, 2, 3])
    return g.op("Reshape", band, _shape(g, -1, patch_size**2, height, width))


def _soft_argmax(g, correlation, patch_size: int, sigma: float, temperature: float):
    """``(B, H, W, P*P)`` -> ``(B, H, W, 3)``: ``kernel_soft_argmax`` with the displacements
    last, so that every step works along the last axis (also the only one opset 11's Softmax
    takes alone). The Gaussian window around each possible arg-max, times the temperature, is
    a constant ``(P*P, P*P)`` table, picked per pixel by its arg-max: one pass over the volume
    where computing it would take seven."""
    p, d = patch_size, patch_size // 2
    index = torch.arange(p * p, dtype=torch.float64)
    rows, cols = torch.div(index, p, rounding_mode="floor"), index % p
    distance2 = (rows[:, None] - rows) ** 2 + (cols[:, None] - cols) ** 2
    table = temperature * torch.exp(-distance2 / (2.0 * sigma * sigma))
    best = g.op("ArgMax", correlation, axis_i=3, keepdims_i=1)  # (B, H, W, 1): first maximum
    confidence = g.op("GatherElements", correlation, best, axis_i=3)
    scale = g.op("Gather", _const(g, table, torch.float32), best, axis_i=0)  # (B, H, W, 1, P*P)
    scale = g.op("Reshape", scale, g.op("Shape", correlation))
    weights = g.op("Softmax", g.op("Mul", correlation, scale), axis_i=3)
    steps = torch.stack([cols - d, rows - d], dim=1) / max(d, 1)  # (P*P, 2): u, v of each k
    uv = g.op("MatMul", weights, _const(g, steps, torch.float32))
    return g.op("Concat", uv, confidence, axis_i=3)


def _correlation_symbolic(g, a, b, patch_size):
    from torch.onnx import symbolic_helper

    return _correlation(g, a, b, symbolic_helper._parse_arg(patch_size, "i"))


def _fields_symbolic(g, a, b, patch_size, sigma, temperature):
    from torch.onnx import symbolic_helper

    patch_size = symbolic_helper._parse_arg(patch_size, "i")
    band, height, width = _band(g, a, b, patch_size)  # (B, P, H, W, P)
    band = g.op("Transpose", band, perm_i=[0, 2, 3, 1, 4])  # (B, H, W, P, P)
    correlation = g.op("Reshape", band, _shape(g, -1, height, width, patch_size**2))
    sigma = symbolic_helper._parse_arg(sigma, "f")
    temperature = symbolic_helper._parse_arg(temperature, "f")
    fields = _soft_argmax(g, g.op("Relu", correlation), patch_size, sigma, temperature)
    return g.op("Transpose", fields, perm_i=[0, 3, 1, 2])  # (B, 3, H, W)


def register_onnx_symbolics(opset: int = MIN_OPSET) -> None:
    """Give torch.onnx's TorchScript-based exporter the operators' translations from ``opset``
    (at least :data:`MIN_OPSET`) on; ``import tcm.ops`` does it for every opset it supports."""
    opset = max(opset, MIN_OPSET)
    if opset in _registered:
        return
    torch.onnx.register_custom_op_symbolic("tcm::local_correlation", _correlation_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("tcm::mtdm_fields", _fields_symbolic, opset)
    _registered.add(opset)
