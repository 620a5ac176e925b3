"""Predictor and ``tcm predict``: videos written here, a bad file among them, real clips."""

from __future__ import annotations

import json

import pytest
import torch
from deploy_media import CLASSES, tiny_checkpoint

import tcm
from tcm.cli.main import main
from tcm.data.bad_video import BadVideoError
from tcm.deploy import Prediction, Predictor, Preprocessing, expand_inputs
from tcm.deploy.inputs import find_frame_template


@pytest.fixture(scope="module")
def predictor(checkpoint_path) -> Predictor:
    return Predictor(checkpoint_path)


def test_predictor_is_exported_at_top_level():
    assert tcm.Predictor is Predictor


def test_predict_video(predictor, media):
    prediction = predictor.predict(media["video_a"], topk=2)
    assert prediction.ok and prediction.path == str(media["video_a"])
    assert len(prediction.top) == 2
    assert prediction.top[0].probability >= prediction.top[1].probability
    assert all(score.label == CLASSES[score.index] for score in prediction.top)
    # The same as running the model by hand on the test pipeline's clip.
    clip = predictor.load(media["video_a"])  # (T, 3, S, S)
    assert clip.shape == (4, 3, 64, 64)
    with torch.no_grad():
        expected = predictor.model(clip[None]).softmax(1)[0]
    assert prediction.top[0].probability == pytest.approx(expected.max().item(), abs=1e-6)


def test_predict_frame_folder_finds_the_name_template(predictor, media):
    assert find_frame_template(media["frames"]) == ("{:06d}.jpg", 0)
    assert predictor.predict(media["frames"], topk=10).top  # topk is capped at K
    assert len(predictor.predict(media["frames"], topk=10).top) == len(CLASSES)


def test_predict_bad_file_raises_with_reason(predictor, media):
    with pytest.raises(BadVideoError) as info:
        predictor.predict(media["bad"])
    assert info.value.reason == "not a video"


def test_predict_many_goes_on_past_a_bad_file(predictor, media):
    paths = expand_inputs([media["folder"]])
    assert [p.name for p in paths] == [
        "a_square.mp4",
        "b_square_fast.mp4",
        "c_broken.mp4",
        "d_frames",
    ]
    results = list(predictor.predict_many(paths, topk=3, batch_size=2))
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].error == "not a video" and "c_broken.mp4" in results[2].message
    # Batched results equal one-by-one results.
    single = predictor.predict(paths[1], topk=3)
    assert [s.index for s in results[1].top] == [s.index for s in single.top]
    assert results[1].top[0].probability == pytest.approx(single.top[0].probability, abs=1e-6)


def test_prediction_to_dict():
    failed = Prediction("x.mp4", error="missing", message="x.mp4: missing")
    assert failed.to_dict() == {"path": "x.mp4", "error": "missing", "message": "x.mp4: missing"}


def test_preprocessing_from_checkpoint_and_fallback():
    prep = Preprocessing.from_checkpoint(tiny_checkpoint())
    assert (prep.num_segments, prep.resize, prep.input_size) == (4, (72, 96), 64)
    bare = Preprocessing.from_checkpoint(tiny_checkpoint(data={}))
    assert (bare.num_segments, bare.resize, bare.input_size) == (4, (240, 320), 224)


def test_checkpoint_without_class_names(media):
    predictor = Predictor(tiny_checkpoint(classes=None))
    assert predictor.predict(media["video_a"], topk=1).top[0].label in {"0", "1", "2"}


def test_cli_predict_json_reports_the_bad_file_and_exits_1(checkpoint_path, media, capsys):
    args = ["predict", str(media["folder"]), "--checkpoint", str(checkpoint_path), "--json"]
    status = main([*args, "--topk", "2"])
    assert status == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 4
    good = [line for line in lines if "top" in line]
    assert len(good) == 3
    for line in good:
        assert [set(entry) for entry in line["top"]] == [{"label", "index", "probability"}] * 2
    (bad,) = [line for line in lines if "error" in line]
    assert bad["path"].endswith("c_broken.mp4") and bad["error"] == "not a video"
    assert "1 of 4 inputs could not be read" in captured.err


def test_cli_predict_text_all_good(checkpoint_path, media, capsys):
    status = main(["predict", str(media["video_a"]), "--checkpoint", str(checkpoint_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert str(media["video_a"]) in out and "%" in out


def test_cli_predict_missing_input_exits_1(checkpoint_path, tmp_path, capsys):
    status = main(["predict", str(tmp_path / "nope.mp4"), "--checkpoint", str(checkpoint_path)])
    assert status == 1
    assert "missing" in capsys.readouterr().err


def test_real_files(predictor, shared_data):
    paths = expand_inputs([shared_data / "videos", shared_data / "frames" / "clip_320x240"])
    names = sorted(p.name for p in paths)
    assert names == ["clip_320x240", "kinetics_arm_wrestling.mp4", "xvid_320x240.avi"]
    results = list(predictor.predict_many(paths, topk=1))
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert all(0 < r.top[0].probability <= 1 for r in results)
