"""The checkpoint format: assembled, written atomically, read back, foreign files refused."""

from __future__ import annotations

import os
import pickle
import stat

import pytest
import torch

from tcm.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    atomic_save,
    is_tcm_checkpoint,
    load_checkpoint,
    make_checkpoint,
    not_saved_by_torch,
)

WEIGHTS = {"fc.weight": torch.arange(6.0).view(3, 2), "fc.bias": torch.zeros(3)}


def checkpoint(**extra):
    return make_checkpoint(
        WEIGHTS,
        model_name="tsm_resnet10",
        num_classes=3,
        num_segments=8,
        model_kwargs={"dropout": 0.5},
        classes=["a", "b", "c"],
        data={"input_size": 112},
        **extra,
    )


def test_a_checkpoint_has_the_documented_entries():
    made = checkpoint(epoch=2)
    assert (made["format"], made["version"]) == (FORMAT_NAME, FORMAT_VERSION)
    assert made["model"] == {
        "name": "tsm_resnet10",
        "num_classes": 3,
        "num_segments": 8,
        "kwargs": {"dropout": 0.5},
    }
    assert made["classes"] == ["a", "b", "c"]
    assert made["data"] == {"input_size": 112}
    assert made["epoch"] == 2
    bare = make_checkpoint(WEIGHTS, model_name="m", num_classes=3, num_segments=1)
    assert (bare["classes"], bare["data"], bare["model"]["kwargs"]) == (None, {}, {})


def test_class_names_must_match_the_class_count():
    with pytest.raises(ValueError, match="2 class names given for a model with 3 classes"):
        make_checkpoint(WEIGHTS, model_name="m", num_classes=3, num_segments=1, classes=["a", "b"])


def test_a_saved_checkpoint_reads_back_with_its_weights(tmp_path):
    path = atomic_save(checkpoint(), tmp_path / "deep" / "model.pt")
    assert path == tmp_path / "deep" / "model.pt"
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["fc.weight"], WEIGHTS["fc.weight"])
    assert loaded["classes"] == ["a", "b", "c"]
    assert is_tcm_checkpoint(path)
    assert not_saved_by_torch(path) == ""
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left


def test_a_saved_checkpoint_has_the_permissions_of_any_new_file(tmp_path):
    previous = os.umask(0o027)
    try:
        path = atomic_save(checkpoint(), tmp_path / "model.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = atomic_save(checkpoint(), tmp_path / "model.pt")
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):
        atomic_save({"bad": lambda: None}, path)  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.pt").write_text("hello")
    (tmp_path / "image.pt").write_bytes(b"\x89PNG\r\n\x1a\n....")
    assert not_saved_by_torch(tmp_path / "empty.pt") == "an empty file"
    assert not_saved_by_torch(tmp_path / "notes.pt") == "a text file, not one torch.save writes"
    assert "begins with b'\\x89PNG" in not_saved_by_torch(tmp_path / "image.pt")
    for name in ("empty.pt", "notes.pt", "image.pt"):
        with pytest.raises(ValueError, match="not a checkpoint"):
            load_checkpoint(tmp_path / name)
        assert not is_tcm_checkpoint(tmp_path / name)
    torch.save({"state_dict": WEIGHTS}, tmp_path / "release.pt")
    with pytest.raises(ValueError, match="run `tcm convert` first"):
        load_checkpoint(tmp_path / "release.pt")
    assert not is_tcm_checkpoint(tmp_path / "release.pt")
    full = (tmp_path / "release.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="damaged or cut short"):
        load_checkpoint(tmp_path / "cut.pt")


def test_a_checkpoint_of_a_newer_version_is_refused(tmp_path):
    path = atomic_save({**checkpoint(), "version": FORMAT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="newer than this tcm"):
        load_checkpoint(path)


def test_load_refuses_a_file_that_inflates_far_beyond_its_size(tmp_path):
    """A zip whose entries inflate to many times the file (a zip bomb, or weights recompressed
    by a zip tool) is refused before torch.load reads it into memory."""
    import zipfile

    stored = tmp_path / "stored.pt"
    weights = make_checkpoint(
        {"w": torch.zeros(10_000_000)}, model_name="tsn_resnet50", num_classes=3, num_segments=8
    )
    atomic_save(weights, stored)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(stored) as source, zipfile.ZipFile(packed, "w") as target:
        for entry in source.infolist():
            target.writestr(entry, source.read(entry), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"packed.pt: not a checkpoint \(its entries inflate"):
        load_checkpoint(packed)
    assert load_checkpoint(stored)["model"]["name"] == "tsn_resnet50"
