"""Exported models run by ONNX Runtime and OpenVINO (:mod:`tcm.runtime`): the same
clips, preprocessing and outputs as the checkpoint, through ``tcm.Predictor`` and every mode
of ``tcm predict``; and each way of getting it wrong."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from deploy_media import CLASSES

from tcm.cli.main import main
from tcm.deploy import Predictor
from tcm.deploy.export import export_checkpoint
from tcm.runtime import ExportedModel, available_runtimes
from video_files import write_moving_square

RUNTIMES = [
    pytest.param(
        runtime,
        marks=pytest.mark.skipif(
            runtime not in available_runtimes(), reason=f"{runtime} not installed"
        ),
    )
    for runtime in ("onnxruntime", "openvino")
]
PARITY = 1e-4


@pytest.fixture(scope="module")
def exported(checkpoint_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "tiny.onnx"
    result = export_checkpoint(checkpoint_path, out, "onnx")
    assert result.max_abs_diff < PARITY
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime_video")
    return write_moving_square(folder / "square.mp4", num_frames=40)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_logits_match_pytorch(checkpoint_path, exported, runtime):
    predictor = Predictor(checkpoint_path)
    model = ExportedModel(exported, runtime, threads=2)
    clips = torch.randn(3, 4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = predictor.model(clips).numpy()
    got = model(clips.numpy())
    assert got.shape == (3, len(CLASSES))
    assert np.abs(expected).max() > 1  # logits large enough for the comparison to mean much
    np.testing.assert_allclose(got, expected, atol=PARITY, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_predictor_reads_preprocessing_and_classes_from_the_json(
    checkpoint_path, exported, media, runtime
):
    torch_side = Predictor(checkpoint_path)
    onnx_side = Predictor(exported, runtime=runtime)
    assert onnx_side.model is None and onnx_side.classes == CLASSES
    assert onnx_side.preprocessing == torch_side.preprocessing
    paths = [media["video_a"], media["video_b"], media["bad"], media["frames"]]
    ours = list(onnx_side.predict_many(paths, topk=3, batch_size=2))
    theirs = list(torch_side.predict_many(paths, topk=3, batch_size=2))
    assert [p.ok for p in ours] == [True, True, False, True]
    for a, b in zip(ours, theirs):
        assert a.error == b.error
        assert [s.index for s in a.top] == [s.index for s in b.top]
        for x, y in zip(a.top, b.top):
            assert x.probability == pytest.approx(y.probability, abs=PARITY)


def run_predict(capsys, *args) -> tuple[int, str, str]:
    status = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_clips_and_folders_as_the_checkpoint(checkpoint_path, exported, media, runtime, capsys):
    common = [media["folder"], "--json", "--no-progress"]
    status, out, _ = run_predict(capsys, *common, "--checkpoint", exported, "--runtime", runtime)
    assert status == 1  # the broken file
    status, reference, _ = run_predict(capsys, *common, "--checkpoint", checkpoint_path)
    ours, theirs = json_lines(out), json_lines(reference)
    assert [r["path"] for r in ours] == [r["path"] for r in theirs] and len(ours) == 4
    for a, b in zip(ours, theirs):
        assert ("error" in a) == ("error" in b)
        for x, y in zip(a.get("top", []), b.get("top", [])):
            assert x["index"] == y["index"]
            assert x["probability"] == pytest.approx(y["probability"], abs=PARITY)


def test_cli_windows_timeline_and_stream(checkpoint_path, exported, video, tmp_path, capsys):
    window = ["--window", "16f", "--stride", "4f", "--json", "--no-progress"]
    status, out, _ = run_predict(capsys, video, "--checkpoint", exported, *window)
    assert status == 0
    status, reference, _ = run_predict(capsys, video, "--checkpoint", checkpoint_path, *window)
    ours = [r for r in json_lines(out) if r["type"] == "window"]
    theirs = [r for r in json_lines(reference) if r["type"] == "window"]
    assert len(ours) == len(theirs) > 3
    for a, b in zip(ours, theirs):
        assert (a["start"], a["end"]) == (b["start"], b["end"])
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=PARITY)
        assert "tempo" not in a  # TCM's fields are not outputs of the exported graph
    picture = tmp_path / "timeline.png"
    status, _, err = run_predict(
        capsys, video, "--checkpoint", exported, "--timeline", picture, "--window", "16f"
    )
    assert status == 0 and picture.stat().st_size > 1000, err
    status, out, _ = run_predict(
        capsys, video, "--checkpoint", exported, "--stream", "--window", "16f", "--stride", "8f"
    )
    assert status == 0 and len([line for line in out.splitlines() if " s  " in line]) >= 3


def refused_line(capsys, *args) -> str:
    status, _, err = run_predict(capsys, *args)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    return lines[0]


def test_bad_exports_and_runtimes_one_line(
    checkpoint_path, exported, media, tmp_path, capsys, monkeypatch
):
    clip = media["video_a"]
    lonely = tmp_path / "lonely.onnx"
    shutil.copyfile(exported, lonely)
    assert "lonely.onnx.json: missing" in refused_line(capsys, clip, "--checkpoint", lonely)
    other = tmp_path / "other.onnx"
    shutil.copyfile(exported, other)
    meta = json.loads(exported.with_name(exported.name + ".json").read_text())
    meta["frames"] = 8
    other.with_name("other.onnx.json").write_text(json.dumps(meta))
    line = refused_line(capsys, clip, "--checkpoint", other)
    assert "does not describe its model" in line and "(N, 8, 3, 64, 64)" in line
    line = refused_line(capsys, clip, "--checkpoint", exported, "--runtime", "torch")
    assert "onnxruntime or openvino" in line
    line = refused_line(capsys, clip, "--checkpoint", checkpoint_path, "--runtime", "openvino")
    assert "tcm export" in line
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    line = refused_line(capsys, clip, "--checkpoint", exported, "--runtime", "openvino")
    assert "pip install 'tcm[openvino]'" in line


def test_runtime_module_loads_without_torch():
    code = (
        "import sys; import tcm.runtime; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif("openvino" not in available_runtimes(), reason="openvino not installed")
@pytest.mark.skipif(sys.platform != "linux", reason="signal stacks as on Linux")
def test_openvino_models_freed_in_any_order_leave_signals_working(exported):
    # OpenVINO's models, freed first-made first, reinstall a freed signal stack; the next
    # signal handled on it (a SIGCHLD as a subprocess ends) used to kill the process.
    code = (
        "import gc, signal, subprocess, sys\n"
        "from tcm.runtime import ExportedModel\n"
        f"first = ExportedModel({str(exported)!r}, 'openvino')\n"
        f"second = ExportedModel({str(exported)!r}, 'openvino')\n"
        "del first; gc.collect(); del second; gc.collect()\n"
        "signal.signal(signal.SIGCHLD, lambda *args: None)\n"
        "subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
        "print('signals work')\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "signals work"
