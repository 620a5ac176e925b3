"""``tcm export --quantize int8``: a QDQ model calibrated on listed clips, MTDM left in
float, top-1 compared, a model that loses too much refused, unreadable clips named."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tcm.cli.main import main
from tcm.deploy.export import export_checkpoint
from tcm.deploy.quantize import FLOAT_SCOPE, load_clips, quantize_export
from tcm.runtime import ExportedModel, available_runtimes
from tiny_set import make_tiny_set


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("calibration"), train_per_class=1, val_per_class=2)


@pytest.fixture(scope="module")
def float_export(checkpoint_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("float") / "model.onnx"
    export_checkpoint(checkpoint_path, out, "onnx")
    return out


def test_int8_model_keeps_mtdm_in_float_and_runs(float_export, calibration, tmp_path):
    out = tmp_path / "int8.onnx"
    report = quantize_export(float_export, out, calibration.val_list, calibration.root, force=True)
    assert report.clips == 6 and report.float_nodes > 0 and report.quantized_nodes > 10
    graph = onnx.load(str(out)).graph
    rounded = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    # MTDM's own nodes (not the Q/DQ pair on its output, which belongs to the next conv)
    # read no int8-rounded tensor: weights and activations in float32.
    mtdm = [n for n in graph.node if FLOAT_SCOPE in n.name and "Quantize" not in n.op_type]
    assert rounded and any(n.op_type == "Conv" for n in mtdm)
    assert not any(name in rounded for n in mtdm for name in n.input)
    meta = json.loads(out.with_name("int8.onnx.json").read_text())
    assert meta["quantization"]["top1_int8"] == report.top1_int8
    clips, _ = load_clips(calibration.val_list, calibration.root, meta)  # what it was calibrated on
    reference = ExportedModel(float_export)(clips)
    for runtime in available_runtimes():
        logits = ExportedModel(out, runtime)(clips)
        assert logits.shape == reference.shape
        # int8 moves the logits, but not wildly: within a tenth of their range.
        assert np.abs(logits - reference).max() < 0.1 * np.abs(reference).max()


def test_a_model_that_loses_too_much_is_refused(float_export, calibration, tmp_path):
    out = tmp_path / "refused.onnx"
    with pytest.raises(ValueError, match="not written"):
        quantize_export(float_export, out, calibration.val_list, calibration.root, max_drop=-1)
    assert not list(tmp_path.iterdir())


def test_cli_int8_held_out_evaluation_and_unreadable_clips(
    checkpoint_path, calibration, tmp_path, capsys
):
    out = tmp_path / "model.onnx"
    argv = ["export", "--checkpoint", checkpoint_path, "--format", "onnx", "--out", out]
    argv += ["--quantize", "int8", "--data-root", calibration.root, "--force"]
    held_out = ["--calibration", calibration.train_list, "--evaluation", calibration.val_list]
    assert main([str(a) for a in [*argv, *held_out]]) == 0
    printed = capsys.readouterr().out
    assert f"top-1 on {calibration.val_list} (6 clips)" in printed, printed
    assert (tmp_path / "model_fp32.onnx").is_file()
    assert "quantization" in json.loads((tmp_path / "model.onnx.json").read_text())
    bad = tmp_path / "bad.txt"
    (calibration.root / "broken.mp4").write_bytes(b"not a video")
    bad.write_text(calibration.val_list.read_text() + "broken.mp4 1\n")
    again = tmp_path / "again.onnx"
    argv[argv.index(out)] = again
    assert main([str(a) for a in [*argv, "--calibration", bad]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.txt:7" in err[0] and "unreadable" in err[0], err
