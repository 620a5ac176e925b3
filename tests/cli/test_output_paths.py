"""Outputs are checked before any work: an output that is one of the inputs or a checkpoint, a
folder, the wrong kind of file, or a place that cannot be written is refused at once, in one
line, and nothing the user had is touched."""

from __future__ import annotations

import numpy as np
import pytest
from test_bad_inputs import _write_checkpoint, digest, refused

from tcm.cli.main import main
from tcm.engine.scores import EvalResult, save_scores


@pytest.fixture(scope="module")
def checkpoint(tiny_set, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    _write_checkpoint(tiny_set, path)
    return path


def test_ensemble_never_writes_over_its_inputs(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        scores = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
        save_scores(
            EvalResult(scores, np.array([0, 1, 2, 1]), list("wxyz")), tmp_path / name / "scores.npz"
        )
    pair = [tmp_path / "a", tmp_path / "b"]
    before = digest(tmp_path)
    refused(capsys, ["ensemble", *pair, "--out", tmp_path / "a"], "a/scores.npz", "score files")
    refused(
        capsys,
        ["ensemble", tmp_path / "a" / "scores.npz", tmp_path / "b", "--out", tmp_path / "b"],
        "b/scores.npz",
    )
    assert digest(tmp_path) == before
    assert main(["ensemble", *map(str, pair), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "scores.npz").is_file()


def test_a_bad_score_file_is_named(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("not scores\n")
    refused(capsys, ["ensemble", text, text], "notes.npz", "not a score file")
    objects = tmp_path / "objects.npz"
    np.savez(
        objects,
        scores=np.array([1, "a"], dtype=object),
        labels=np.zeros(2),
        paths=np.array(["a", "b"]),
    )
    refused(capsys, ["ensemble", objects, objects], "objects.npz", "Object arrays")


def test_check_data_keeps_its_list_classes_and_checkpoints(tiny_set, checkpoint, tmp_path, capsys):
    listing = tmp_path / "val.txt"
    listing.write_bytes(tiny_set.val_list.read_bytes())
    classes = tmp_path / "classes.txt"
    classes.write_bytes(tiny_set.classes.read_bytes())
    argv = ["check-data", listing, "--root", tiny_set.root, "--workers", "1", "--no-progress"]
    before = digest(tmp_path), checkpoint.read_bytes()
    refused(capsys, [*argv, "--good-list", listing], "val.txt", "the list being checked")
    refused(capsys, [*argv, "--good-list", classes], "classes.txt", "the classes file")
    refused(capsys, [*argv, "--good-list", checkpoint], "model.pt", "tcm checkpoint")
    refused(capsys, [*argv, "--good-list", tmp_path], str(tmp_path), "is a folder")
    assert (digest(tmp_path), checkpoint.read_bytes()) == before


def test_unwritable_outputs_are_refused_before_any_work(
    tiny_set, checkpoint, read_only_dir, tmp_path, capsys, monkeypatch
):
    import tcm.cli.check_data
    import tcm.deploy.predictor

    def never(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(tcm.cli.check_data, "check_records", never)
    monkeypatch.setattr(tcm.deploy.predictor.Predictor, "__init__", never)
    video = tiny_set.root / "val_0_0.mp4"
    check = ["check-data", tiny_set.val_list, "--root", tiny_set.root, "--no-progress"]
    refused(
        capsys,
        [*check, "--good-list", read_only_dir / "good.txt"],
        "read_only",
        "not writable",
        "good.txt",
    )
    predict = ["predict", video, "--checkpoint", checkpoint, "--timeline"]
    refused(capsys, [*predict, read_only_dir / "t.png"], "read_only", "not writable")
    for name in ("timeline.pt", "timeline.mp4", "timeline"):
        refused(capsys, [*predict, tmp_path / name], name, "must be a .png")
    (tmp_path / "d").mkdir()
    refused(capsys, [*predict, tmp_path / "d"], "d: is a folder")
    disguised = tmp_path / "timeline.png"
    disguised.write_bytes(checkpoint.read_bytes())
    refused(capsys, [*predict, disguised], "timeline.png", "tcm checkpoint")
    refused(
        capsys,
        ["visualize", video, "--checkpoint", checkpoint, "--out", read_only_dir / "v.png"],
        "not writable",
    )
    assert (
        not list(tmp_path.glob("timeline*.png*"))
        or disguised.read_bytes() == checkpoint.read_bytes()
    )


def test_the_timeline_lands_where_it_is_said_to(tiny_set, checkpoint, tmp_path, capsys):
    out = tmp_path / "pictures" / "timeline.png"
    video = tiny_set.root / "val_0_0.mp4"
    argv = ["predict", str(video), "--checkpoint", str(checkpoint), "--timeline", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert f"wrote {out}\n" in capsys.readouterr().err
    assert out.read_bytes().startswith(b"\x89PNG")
