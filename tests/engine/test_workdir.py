"""The run folder: its lock refuses a second run, and what a new or resumed run may do with a
folder that holds a run."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tcm.engine.workdir import LOCK_FILE, WorkDirLock, resume_checkpoint, run_files
from tcm.errors import WorkDirError


def training_checkpoint(path):
    """A file ``--resume auto`` takes for a training checkpoint (it holds an optimizer)."""
    from tcm.checkpoint import atomic_save, make_checkpoint

    checkpoint = make_checkpoint({}, model_name="m", num_classes=1, num_segments=1, optimizer={})
    return atomic_save(checkpoint, path)


def test_the_lock_names_its_holder_and_refuses_a_second_run(tmp_path):
    work = tmp_path / "run"
    with WorkDirLock(work) as lock:
        assert lock.created_dir and work.is_dir()
        pid, host, _ = (work / LOCK_FILE).read_text().split()
        assert int(pid) == os.getpid() and host
        with pytest.raises(WorkDirError):
            WorkDirLock(work).acquire()
    assert not (work / LOCK_FILE).exists()
    with WorkDirLock(work):  # free again
        pass


def test_a_refused_run_leaves_no_folder_it_created(tmp_path):
    lock = WorkDirLock(tmp_path / "new").acquire()
    lock.release(remove_dir=True)
    assert not (tmp_path / "new").exists()
    existing = WorkDirLock(tmp_path).acquire()
    existing.release(remove_dir=True)  # not created by the lock: kept
    assert tmp_path.is_dir()


def test_a_file_is_not_a_run_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkDirError, match="not a folder"):
        WorkDirLock(tmp_path / "file").acquire()


def test_run_files_are_what_makes_a_folder_a_run(tmp_path):
    assert run_files(tmp_path) == []
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / "best.pt").write_bytes(b"")
    assert run_files(tmp_path) == ["best.pt", "metrics.jsonl"]


def test_a_new_run_needs_a_folder_without_a_run(tmp_path):
    assert resume_checkpoint(tmp_path, None) is None
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(WorkDirError, match=r"already holds a run \(metrics.jsonl\)"):
        resume_checkpoint(tmp_path, None)


def test_resume_auto_continues_the_folder_s_checkpoint(tmp_path):
    assert resume_checkpoint(tmp_path, "auto") is None  # nothing yet: a start
    last = training_checkpoint(tmp_path / "last.pt")
    assert resume_checkpoint(tmp_path, "auto") == last


def test_resume_auto_refuses_a_run_that_lost_its_checkpoint(tmp_path):
    row = {"kind": "epoch", "epoch": 1, "step": 4}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(WorkDirError, match=r"not its checkpoint last\.pt"):
        resume_checkpoint(tmp_path, "auto")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "step", "step": 1}) + "\n")
    assert resume_checkpoint(tmp_path, "auto") is None  # stopped before its first checkpoint


def test_resume_from_a_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        resume_checkpoint(tmp_path / "new", tmp_path / "absent.pt")
    own = tmp_path / "own"
    own.mkdir()
    last = training_checkpoint(own / "last.pt")
    assert resume_checkpoint(own, last) == last  # its own folder
    assert resume_checkpoint(tmp_path / "empty", last) == last  # an empty folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text("")
    with pytest.raises(WorkDirError, match="holds another run"):
        resume_checkpoint(other, last)
    assert torch.load(last, weights_only=True)["optimizer"] == {}
