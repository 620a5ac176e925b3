"""The registered operators: PyTorch's own checks, gradients, and graphs that hold one op."""

from __future__ import annotations

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import tcm
import tcm.ops as ops
from tcm.layers import TCM
from tcm.ops import mtdm_fields

# fx's symbolic tracing records calls of this module's mtdm_fields as one node.
torch.fx.wrap("mtdm_fields")

BACKENDS = ["torch", "extension"]


@pytest.fixture(autouse=True)
def _needs_kernels(request):
    """Tests on the "extension" backend skip where the kernels do not build."""
    backend = getattr(request.node, "callspec", None) and request.node.callspec.params.get(
        "backend"
    )
    if backend == "extension":
        request.getfixturevalue("kernels")


def _pair(*shape, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(*shape, dtype=dtype, generator=generator) * 0.05 for _ in range(2)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    """Schema, fake kernel, autograd registration and dispatch as torch.library checks them."""
    a, b = _pair(2, 4, 6, 5, dtype=torch.float32)
    with ops.use_backend(backend):
        for requires_grad in (False, True):
            args = [
                a.clone().requires_grad_(requires_grad),
                b.clone().requires_grad_(requires_grad),
            ]
            torch.library.opcheck(torch.ops.tcm.mtdm_fields.default, (*args, 5, 5.0, 100.0))
            torch.library.opcheck(torch.ops.tcm.local_correlation.default, (*args, 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, patch", [((2, 3, 5, 4), 5), ((1, 2, 3, 7), 15), ((2, 4, 9, 9), 3)])
def test_gradcheck(backend, shape, patch):
    """Away from ties of the arg-max and from zeros of the ReLU the fields are smooth."""
    a, b = (t.requires_grad_() for t in _pair(*shape))
    with ops.use_backend(backend):
        assert torch.autograd.gradcheck(lambda p, q: ops.mtdm_fields(p, q, patch), (a, b))
        assert torch.autograd.gradcheck(lambda p, q: ops.local_correlation(p, q, patch), (a, b))


def test_plain_backward_is_autograd_of_the_plain_forward():
    """The plain kernels' explicit backward equals autograd through the plain forward."""
    a, b = (t.requires_grad_() for t in _pair(3, 8, 7, 6, seed=1))
    grad = torch.randn(3, 3, 7, 6, dtype=torch.float64)
    expected = torch.autograd.grad(ops.mtdm_fields_torch(a, b, 5, 5.0, 100.0), (a, b), grad)
    with ops.use_backend("torch"):
        got = torch.autograd.grad(ops.mtdm_fields(a, b, 5), (a, b), grad)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=1e-10)


def test_decompositions_match_the_operators():
    a, b = _pair(3, 8, 7, 6, dtype=torch.float32)
    table = ops.decompositions()
    fields = table[torch.ops.tcm.mtdm_fields.default](a, b, 7, 5.0, 100.0)
    torch.testing.assert_close(fields, ops.mtdm_fields(a, b, 7), atol=1e-5, rtol=1e-5)
    correlation = table[torch.ops.tcm.local_correlation.default](a, b, 7)
    torch.testing.assert_close(correlation, ops.local_correlation_reference(a, b, 7))


def _layer():
    torch.manual_seed(0)
    return TCM(16, num_segments=4, patch_size=5, reduced_channels=8)


def _tcm_ops(graph) -> list[str]:
    return [str(n.target) for n in graph.nodes if "tcm" in str(n.target)]


def test_export_fx_and_jit_trace_see_one_operator():
    layer, x = _layer().eval(), torch.randn(8, 16, 6, 6)
    program = torch.export.export(layer, (x,))
    assert _tcm_ops(program.graph) == ["tcm.mtdm_fields.default"]
    decomposed = program.run_decompositions(ops.decompositions())
    assert _tcm_ops(decomposed.graph) == []
    with torch.no_grad():
        torch.testing.assert_close(decomposed.module()(x), layer(x), atol=1e-5, rtol=1e-5)
    assert _tcm_ops(make_fx(layer)(x).graph) == ["tcm.mtdm_fields.default"]
    traced = torch.fx.symbolic_trace(lambda a, b: mtdm_fields(a, b, 5))
    assert [n.target for n in traced.graph.nodes if n.op == "call_function"] == [mtdm_fields]
    with torch.no_grad():
        scripted = torch.jit.trace(layer, x)
    assert str(scripted.inlined_graph).count("tcm::mtdm_fields(") == 1


def test_compile_fullgraph_trains_like_eager():
    """torch.compile (inductor, CPU) takes the layer in one graph, forward and backward, and
    gives eager's output and gradients."""
    torch._dynamo.reset()
    x = torch.randn(8, 16, 6, 6, dtype=torch.float64)  # float64: fusions round alike
    results = []
    for compiled in (False, True):
        layer = _layer().double().train()
        model = torch.compile(layer, fullgraph=True) if compiled else layer
        leaf = x.clone().requires_grad_()
        out = model(leaf)
        out.backward(torch.ones_like(out))
        results.append([out.detach(), leaf.grad, *(p.grad for p in layer.parameters())])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", ["tsn_resnet10", "tsm_resnet10", "tcm_tsm_resnet10"])
@pytest.mark.parametrize("training", [True, False])
def test_whole_models_compile_as_one_graph(name, training):
    """torch.compile sees a whole recognizer, hooks and plug-ins included, as one graph with
    TCM's fields as one operator (what ``train.compile`` and ``--compile`` run)."""
    torch._dynamo.reset()
    model = tcm.create_model(name, num_classes=5, num_segments=4, widths=[8, 8, 16, 16])
    model.train(training)
    explained = torch._dynamo.explain(model)(torch.randn(2, 4, 3, 32, 32))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    (graph,) = explained.graphs
    calls = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
    tcm_calls = [target for target in calls if "tcm" in target]
    assert tcm_calls == (["tcm.mtdm_fields"] if "tcm_" in name else [])
