"""compile_model: every model keeps its plug-ins in its compiled graph."""

from __future__ import annotations

import torch

import tcm
from tcm.models import compile_model


def test_a_tcm_model_compiled_after_its_tsm_runs_its_tcm():
    """TSM and TSM + TCM backbones share their class and code; the second compiled in the
    process still runs TCM (dynamo's default skips guards on hooks and would reuse TSM's
    graph, off by 4e-4 here). Compared on the backbones' features, where TCM's share is large."""
    torch._dynamo.reset()
    clip = torch.randn(4, 3, 32, 32)  # (N*T, 3, H, W), T = 4
    for name in ("tsm_resnet10", "tcm_tsm_resnet10"):
        torch.manual_seed(0)
        model = tcm.create_model(name, num_classes=5, num_segments=4, widths=[8, 8, 16, 16])
        backbone = model.backbone.eval()
        with torch.no_grad():
            eager = backbone(clip)
            compiled = compile_model(backbone)(clip)
        torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


def test_in_place_keeps_the_module_and_its_state_dict_keys():
    model = tcm.create_model("tcm_tsm_resnet10", num_classes=5, num_segments=4, widths=[8] * 4)
    keys = list(model.state_dict())
    assert compile_model(model, in_place=True) is model
    assert list(model.state_dict()) == keys
