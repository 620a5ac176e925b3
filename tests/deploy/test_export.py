"""Export to ONNX and TorchScript: parity with PyTorch (fp32, 1e-4), dynamic batch, metadata."""

from __future__ import annotations

import builtins
import json

import pytest
import torch
from deploy_media import CLASSES, tiny_checkpoint

import tcm
from tcm.cli.main import main
from tcm.deploy.export import export_checkpoint, load_torchscript, run_exported

PARITY = 1e-4


def test_mtdm_traced_on_one_batch_runs_any_batch(checkpoint):
    """Traced, MTDM's fields are one operator call: the graph holds for another batch size
    and equals the eager layer."""
    model, _ = tcm.model_from_checkpoint(checkpoint)
    layer = model.backbone.tcm_layers["layer2"].mtdm
    with torch.no_grad():
        traced = torch.jit.trace(layer, torch.randn(8, 16, 8, 8))  # 2 clips of 4 frames
        x = torch.randn(12, 16, 8, 8)  # 3 clips
        torch.testing.assert_close(traced(x), layer(x), atol=1e-5, rtol=1e-5)
    assert "tcm::mtdm_fields(" in str(traced.inlined_graph)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_mtdm_fields_in_onnx_at_every_opset(opset, tmp_path):
    """MTDM's fields through ONNX Runtime equal PyTorch's from opset 11 on (where a Softmax
    over any axis but the last would take the trailing axes with it)."""
    import onnxruntime as ort

    torch.manual_seed(0)
    layer = tcm.layers.MTDM(16, num_segments=4, reduced_channels=8, patch_size=7).eval()
    x = torch.randn(8, 16, 12, 12)
    path = tmp_path / "mtdm.onnx"
    torch.onnx.export(
        layer,
        (x,),
        path,
        opset_version=opset,
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "frames"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = layer(x).numpy()
    (got,) = session.run(None, {"x": x.numpy()})
    assert abs(got - want).max() < 1e-5


def _standard_onnx_ops(path) -> set[str]:
    """The ONNX file's operator types, after checking they are all of the standard domain."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    assert {node.domain for node in nodes} <= {"", "ai.onnx"}
    return {node.op_type for node in nodes}


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    return tiny_checkpoint(fc_std=1.0, seed=3)


def _clips(batch: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(batch, 4, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_and_dynamic_batch(fmt, checkpoint, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    result = export_checkpoint(checkpoint, out, fmt)
    assert result.max_abs_diff < PARITY
    assert result.max_abs_logit > 0.5  # logits large enough for the check to mean something
    model, _ = tcm.model_from_checkpoint(checkpoint)
    for batch in (1, 3):  # exported with batch 1
        clips = _clips(batch)
        with torch.no_grad():
            expected = model(clips)
        got = run_exported(out, fmt, clips)
        assert got.shape == (batch, len(CLASSES))
        assert (got - expected).abs().max().item() < PARITY
    if fmt == "onnx":
        assert {"MatMul", "ArgMax", "Softmax"} <= _standard_onnx_ops(out)
    meta = json.loads(result.metadata_path.read_text())
    assert result.metadata_path.name == out.name + ".json"
    assert meta["frames"] == 4 and meta["input_size"] == 64 and meta["resize"] == [72, 96]
    assert meta["classes"] == CLASSES and len(meta["mean"]) == len(meta["std"]) == 3
    assert meta["input"]["shape"] == ["N", 4, 3, 64, 64]


def test_torchscript_carries_preprocessing(checkpoint, tmp_path):
    out = tmp_path / "model.pt"
    export_checkpoint(checkpoint, out, "torchscript")
    extra = {"preprocessing.json": ""}
    load_torchscript(out, extra)
    assert json.loads(extra["preprocessing.json"])["classes"] == CLASSES


def test_onnx_dynamo_exporter(checkpoint, tmp_path):
    pytest.importorskip("onnxscript")
    result = export_checkpoint(checkpoint, tmp_path / "d.onnx", "onnx", onnx_exporter="dynamo")
    assert result.max_abs_diff < PARITY
    assert {"MatMul", "Softmax"} <= _standard_onnx_ops(result.path)
    got = run_exported(result.path, "onnx", _clips(2))
    assert got.shape == (2, len(CLASSES))


def test_cli_export_prints_the_difference(checkpoint_path, tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    args = ["export", "--checkpoint", str(checkpoint_path), "--format", "torchscript"]
    status = main([*args, "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "largest |torchscript - PyTorch|" in printed
    assert out.is_file() and (tmp_path / "tiny.pt.json").is_file()


def test_missing_onnx_packages_give_a_clear_message(checkpoint, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"tcm\[export\]"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", "onnx")
