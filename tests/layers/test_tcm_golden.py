"""Equivalence with the reference release's TCM module (golden outputs and gradients)."""

import pytest
import torch

from tcm.layers import TCM

CASES = ("t8_h16", "t16_h10", "t8_n2_h12")


@pytest.fixture(scope="module")
def golden(shared_dir):
    return torch.load(shared_dir / "golden" / "tcm_module_golden.pt", weights_only=True)


def _weights_like(out: torch.Tensor) -> torch.Tensor:
    # The reference built w in float32: sin(0.37 * arange(n)).
    return torch.sin(0.37 * torch.arange(out.numel(), dtype=torch.float32)).reshape(out.shape)


def _module(case, dtype):
    module = TCM(in_channels=case["C"], num_segments=case["T"])
    module.load_state_dict(case["state_dict"])  # strict: reference names map one-to-one
    return module.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", CASES)
def test_outputs_and_input_gradients_match(golden, name, mode, dtype):
    case = golden[name]
    module = _module(case, dtype).train(mode == "train")
    x = case["x"].to(dtype).detach().clone().requires_grad_()
    out = module(x)
    (out * _weights_like(out).to(dtype)).sum().backward()
    torch.testing.assert_close(out.float(), case[f"out_{mode}"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x.grad.float(), case[f"grad_{mode}"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_mtdm_output_matches(golden, name):
    case = golden[name]
    module = _module(case, torch.float32).eval()
    with torch.no_grad():
        fields = module.mtdm(case["x"])
    torch.testing.assert_close(fields, case["mtdm_eval"], atol=1e-4, rtol=1e-4)
