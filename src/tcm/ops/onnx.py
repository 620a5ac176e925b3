"""The TCM operators in standard ONNX operators, for ``torch.onnx.export``.

- The TorchScript-based exporter (``dynamo=False``) traces ``tcm::mtdm_fields`` and
  ``tcm::local_correlation`` as such; :func:`register_onnx_symbolics` gives it their
  translations (opset 11 and up).
- The ``torch.export``-based exporter takes the program after
  ``run_decompositions(tcm.ops.decompositions())``: the plain PyTorch form.

Both write the plain form's steps (:func:`tcm.ops.correlation.correlate_rows`, then the
kernel soft-argmax): one batched product per vertical offset, the band picked by reshapes, an
arg-max, a Gaussian window and a softmax; the batch dimension, the map's size and
channels stay dynamic.
"""

from __future__ import annotations

import torch

MIN_OPSET = 11
_registered: set[int] = set()


def _const(g, values, dtype=torch.int64):
    return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))


def _sizes(g, a):
    """``C``, ``H``, ``W`` of ``(B, C, H, W)`` maps as 1-element int64 tensors of the graph."""
    shape = g.op("Shape", a)
    return [g.op("Slice", shape, _const(g, [i]), _const(g, [i + 1])) for i in (1, 2, 3)]


def _shape(g, *parts):
    """A shape from ints and 1-element tensors."""
    return g.op("Concat", *(_const(g, [p]) if isinstance(p, int) else p for p in parts), axis_i=0)


def _correlation(g, a, b, patch_size: int):
    """``(B, C, H, W)`` x2 -> ``(B, P*P, H, W)`` (see ``correlate_rows``)."""
    channels, height, width = _sizes(g, a)
    p, d = patch_size, patch_size // 2
    span = g.op("Add", width, _const(g, [2 * d]))  # W + 2d
    b_padded = g.op("Pad", b, _const(g, [0, 0, d, 0, 0, 0, d, 0]))  # rows padded by d
    rows = [
        g.op("Slice", b_padded, _const(g, [i]), g.op("Add", height, _const(g, [i])), _const(g, [2]))
        for i in range(p)
    ]
    b_rows = g.op("Concat", *rows, axis_i=1)  # (B, P*C, H, W)
    b_rows = g.op("Reshape", b_rows, _shape(g, -1, p, channels, height, width))
    b_rows = g.op("Transpose", b_rows, perm_i=[0, 1, 3, 2, 4])  # (B, P, H, C, W)
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
    band = g.op("Transpose", band, perm_i=[0, 1, 4, 2, 3])
    return g.op("Reshape", band, _shape(g, -1, p * p, height, width))


def _soft_argmax(g, correlation, patch_size: int, sigma: float, temperature: float):
    """``(B, P*P, H, W)`` -> ``(B, 3, H, W)`` (see ``kernel_soft_argmax``)."""
    p, d = patch_size, patch_size // 2
    index = torch.arange(p * p, dtype=torch.float32)
    rows, cols = torch.div(index, p, rounding_mode="floor"), index % p
    best = g.op("ArgMax", correlation, axis_i=1, keepdims_i=1)  # the first of tied maxima
    confidence = g.op("GatherElements", correlation, best, axis_i=1)
    best = g.op("Cast", best, to_i=1)  # float
    best_row = g.op("Floor", g.op("Div", best, _const(g, float(p), torch.float32)))
    best_col = g.op("Sub", best, g.op("Mul", best_row, _const(g, float(p), torch.float32)))
    dy = g.op("Sub", _const(g, rows.view(1, -1, 1, 1), torch.float32), best_row)
    dx = g.op("Sub", _const(g, cols.view(1, -1, 1, 1), torch.float32), best_col)
    distance2 = g.op("Add", g.op("Mul", dx, dx), g.op("Mul", dy, dy))
    scale = _const(g, -1.0 / (2.0 * sigma * sigma), torch.float32)
    window = g.op("Exp", g.op("Mul", distance2, scale))
    logits = g.op("Mul", g.op("Mul", correlation, _const(g, temperature, torch.float32)), window)
    weights = g.op("Softmax", logits, axis_i=1)
    steps = torch.stack([cols - d, rows - d]) / max(d, 1)  # (2, P*P): u and v of each k
    uv = g.op("Conv", weights, _const(g, steps.view(2, p * p, 1, 1), torch.float32))
    return g.op("Concat", uv, confidence, axis_i=1)


def _correlation_symbolic(g, a, b, patch_size):
    from torch.onnx import symbolic_helper

    return _correlation(g, a, b, symbolic_helper._parse_arg(patch_size, "i"))


def _fields_symbolic(g, a, b, patch_size, sigma, temperature):
    from torch.onnx import symbolic_helper

    patch_size = symbolic_helper._parse_arg(patch_size, "i")
    correlation = g.op("Relu", _correlation(g, a, b, patch_size))
    sigma = symbolic_helper._parse_arg(sigma, "f")
    temperature = symbolic_helper._parse_arg(temperature, "f")
    return _soft_argmax(g, correlation, patch_size, sigma, temperature)


def register_onnx_symbolics(opset: int = MIN_OPSET) -> None:
    """Give torch.onnx's TorchScript-based exporter the operators' translations from ``opset``
    (at least :data:`MIN_OPSET`) on; ``import tcm.ops`` does it for every opset it supports."""
    opset = max(opset, MIN_OPSET)
    if opset in _registered:
        return
    torch.onnx.register_custom_op_symbolic("tcm::local_correlation", _correlation_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("tcm::mtdm_fields", _fields_symbolic, opset)
    _registered.add(opset)
