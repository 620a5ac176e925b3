"""Bad inputs, faults and misuses of every command, as a hostile new user would try them.

Each case ends with exit status 2 and one line on stderr that names the file (or key) and the
problem, without a traceback, or it behaves correctly; nothing a user had is overwritten.
Add the cases of a new command here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import tcm.checkpoint
from tcm.checkpoint import load_checkpoint
from tcm.cli.main import main
from tcm.engine import read_metrics
from tcm.engine.scores import EvalResult, save_scores
from tcm.engine.trainer import Trainer
from tcm.engine.workdir import WorkDirLock
from tiny_set import tiny_config

VOLATILE = {"time", "clips_per_s"}  # wall-clock fields of metrics rows


def refused(capsys, argv: list[str], *needles: str) -> str:
    """Run ``tcm ARGV``: exit status 2 and exactly one line on stderr, holding ``needles``."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tcm {argv[0]}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and modification time of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_config(path: Path, tiny_set, **overrides) -> Path:
    cfg = tiny_config(tiny_set, **{"schedule.epochs": 1, **overrides})
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path


def train_args(config: Path, work_dir: Path, *extra: str) -> list[str]:
    return ["train", str(config), "--work-dir", str(work_dir), "--no-progress", *extra]


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


@pytest.fixture(scope="module")
def bad_lists(tiny_set, tmp_path_factory) -> dict[str, Path]:
    """The tiny set's lists with one video that is not there: the first training entry is
    replaced by ``gone_train.mp4``, ``gone_val.mp4`` is added to the validation list."""
    folder = tmp_path_factory.mktemp("bad_lists")
    train = tiny_set.train_list.read_text().splitlines()
    train[0] = "gone_train.mp4 0"
    val = [*tiny_set.val_list.read_text().splitlines(), "gone_val.mp4 1"]
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "val.txt").write_text("\n".join(val) + "\n")
    return {"train": folder / "train.txt", "val": folder / "val.txt", "folder": folder}


RUN_SETTINGS = {"train.log_interval": 3, "train.checkpoint_interval": 2}


@pytest.fixture(scope="module")
def finished_run(tiny_set, bad_lists, tmp_path_factory) -> tuple[Path, Path]:
    """``(config file, work dir)`` of a finished one-epoch run with a missing training video
    and a missing validation video (policy ``skip``), written under umask 022."""
    folder = tmp_path_factory.mktemp("finished")
    config = write_config(
        folder / "run.yaml",
        tiny_set,
        **RUN_SETTINGS,
        **{"data.train_list": str(bad_lists["train"]), "data.val_list": str(bad_lists["val"])},
    )
    previous = os.umask(0o022)
    try:
        assert main(train_args(config, folder / "run")) == 0
    finally:
        os.umask(previous)
    return config, folder / "run"


# -- 1. labels and class lists -------------------------------------------------------------


def test_labels_beyond_the_class_list_stop_before_any_data_is_read(tiny_set, tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_text("red right\n")
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"data.classes": str(one)})
    line = refused(capsys, train_args(config, tmp_path / "run"), "train.txt:5", "label 1")
    assert "[0, 1)" in line and "1 class" in line
    assert not (tmp_path / "run").exists()
    # tcm test checks its list against the class count too
    checkpoint = tmp_path / "fake.pt"
    checkpoint.write_bytes(b"x")
    refused(capsys, ["test", config, "--checkpoint", checkpoint], "val.txt:3", "label 1")


def test_duplicate_class_names_are_an_error(tiny_set, tmp_path, capsys):
    dup = tmp_path / "classes.txt"
    dup.write_text("red right\ngreen left\nred right\n")
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"data.classes": str(dup)})
    refused(capsys, train_args(config, tmp_path / "run"), "classes.txt:3", "listed twice")


# -- 2. evaluation leaves bad videos out ---------------------------------------------------


def test_validation_leaves_a_bad_video_out_and_names_it(finished_run, bad_lists, tmp_path, capsys):
    config, run = finished_run
    (epoch_row,) = [row for row in read_metrics(run) if row["kind"] == "epoch"]
    assert epoch_row["val_skipped"] == 1 and epoch_row["val_skipped_paths"] == ["gone_val.mp4"]
    # tcm test of the same weights on the same list: 6 videos scored, the bad one named, and
    # the same top-1 as validation (nothing scored in place of the missing video).
    out = tmp_path / "test"
    assert main(["test", str(config), "--checkpoint", str(run / "best.pt"), "--out", str(out)]) == 0
    assert "could not be read" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == 6 and metrics["skipped"] == 1
    assert metrics["skipped_videos"][0]["path"] == "gone_val.mp4"
    assert metrics["skipped_videos"][0]["reason"] == "missing"
    assert metrics["top1"] == epoch_row["val_top1"]
    with np.load(out / "scores.npz") as scores:
        assert "gone_val.mp4" not in scores["paths"].tolist()


def test_raise_on_a_bad_validation_video_keeps_the_epoch(tiny_set, bad_lists, tmp_path, capsys):
    config = write_config(
        tmp_path / "c.yaml",
        tiny_set,
        **{"data.val_list": str(bad_lists["val"]), "data.bad_sample_policy": "raise"},
    )
    run = tmp_path / "run"
    refused(capsys, train_args(config, run), "gone_val.mp4", "missing")
    last = load_checkpoint(run / "last.pt")
    assert (last["epoch"], last["step"], last["batch_in_epoch"]) == (0, 3, 3)
    assert not [row for row in read_metrics(run) if row["kind"] == "epoch"]
    # With the list fixed, the resumed run validates the trained epoch without training again.
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"data.bad_sample_policy": "raise"})
    assert main(train_args(config, run, "--resume", "auto")) == 0
    (row,) = [row for row in read_metrics(run) if row["kind"] == "epoch"]
    assert row["step"] == 3 and row["val_skipped"] == 0 and "val_top1" in row


# -- 3. run folders ------------------------------------------------------------------------


def test_a_second_run_into_a_locked_work_dir_is_refused(tiny_set, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_set)
    run = tmp_path / "run"
    with WorkDirLock(run):
        refused(capsys, train_args(config, run), str(run), f"pid {os.getpid()}")
        assert sorted(p.name for p in run.iterdir()) == [".tcm-train.lock"]
    assert not (run / ".tcm-train.lock").exists()


def test_resuming_another_run_into_a_finished_run_is_refused(finished_run, tmp_path, capsys):
    config, run = finished_run
    other = tmp_path / "other"
    shutil.copytree(run, other)
    target = tmp_path / "target"
    shutil.copytree(run, target)
    before = digest(target)
    refused(
        capsys,
        train_args(config, target, "--resume", str(other / "last.pt")),
        str(target),
        "another run",
    )
    assert digest(target) == before


def test_a_run_without_its_last_checkpoint_is_not_replaced(finished_run, tmp_path, capsys):
    config, run = finished_run
    target = tmp_path / "target"
    shutil.copytree(run, target)
    (target / "last.pt").unlink()
    before = digest(target)
    refused(capsys, train_args(config, target), str(target), "already holds a run")
    refused(
        capsys, train_args(config, target, "--resume", "auto"), "last.pt", "cannot be continued"
    )
    assert digest(target) == before


def test_a_rejected_resume_writes_nothing(finished_run, tmp_path, capsys):
    config, run = finished_run
    target = tmp_path / "target"
    shutil.copytree(run, target)
    before = digest(target)
    refused(
        capsys,
        train_args(config, target, "--resume", "auto", "--set", "model.name=tcm_tsn_resnet10"),
        "last.pt",
        "tcm_tsn_resnet10",
    )
    assert digest(target) == before


# -- 4. export never overwrites a checkpoint ------------------------------------------------


def test_export_refuses_to_overwrite_a_checkpoint(finished_run, tmp_path, capsys):
    _, run = finished_run
    target = tmp_path / "run"
    shutil.copytree(run, target)
    before = digest(target)
    best = target / "best.pt"
    export = ["export", "--checkpoint", best, "--format", "torchscript", "--out"]
    refused(capsys, [*export, best], "best.pt", "being exported")
    refused(capsys, [*export, target / "last.pt"], "last.pt", "tcm checkpoint")
    refused(capsys, [*export, tmp_path], str(tmp_path), "is a folder")
    assert digest(target) == before


def test_export_refuses_an_unknown_opset(finished_run, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    _, run = finished_run
    argv = ["export", "--checkpoint", run / "best.pt", "--format", "onnx", "--opset", "3"]
    refused(capsys, [*argv, "--out", tmp_path / "m.onnx"], "opset 3")
    assert not (tmp_path / "m.onnx").exists()


# -- 5. DataLoader workers report one line ----------------------------------------------------


def test_worker_errors_are_one_line(tiny_set, bad_lists, tmp_path, capsys):
    workers = {"data.num_workers": 1, "data.bad_sample_policy": "raise"}
    config = write_config(
        tmp_path / "raise.yaml", tiny_set, **workers, **{"data.train_list": str(bad_lists["train"])}
    )
    refused(capsys, train_args(config, tmp_path / "a"), "gone_train.mp4", "missing")
    # every sample bad, policy skip: the replacements run out
    all_bad = tmp_path / "all_bad.txt"
    all_bad.write_text("".join(f"gone_{i}.mp4 {i % 3}\n" for i in range(8)))
    config = write_config(
        tmp_path / "skip.yaml", tiny_set, **{"data.num_workers": 1, "data.train_list": str(all_bad)}
    )
    refused(capsys, train_args(config, tmp_path / "b"), "gone_", "bad samples in a row")
    # tcm test with workers and a missing video, policy raise
    config = write_config(
        tmp_path / "test.yaml", tiny_set, **workers, **{"data.val_list": str(bad_lists["val"])}
    )
    checkpoint = tmp_path / "model.pt"
    _write_checkpoint(tiny_set, checkpoint)
    refused(
        capsys,
        ["test", config, "--checkpoint", checkpoint, "--out", tmp_path / "t", "--no-progress"],
        "gone_val.mp4",
        "missing",
    )


def _write_checkpoint(tiny_set, path: Path) -> None:
    from tcm.checkpoint import atomic_save, make_checkpoint
    from tcm.engine.model_setup import model_kwargs
    from tcm.engine.preprocessing import preprocessing_from_config
    from tcm.models import create_model

    cfg = tiny_config(tiny_set)
    model = create_model(cfg.model.name, 3, cfg.model.num_segments, **model_kwargs(cfg))
    atomic_save(
        make_checkpoint(
            model.state_dict(),
            model_name=cfg.model.name,
            num_classes=3,
            num_segments=cfg.model.num_segments,
            model_kwargs=model_kwargs(cfg),
            data=preprocessing_from_config(cfg, mean=model.mean, std=model.std).to_dict(),
        ),
        path,
    )


def test_a_killed_worker_is_one_line(tiny_set, tmp_path, capsys, monkeypatch):
    import tcm.data.datasets

    load = tcm.data.datasets.VideoDataset.load

    def killed_in_workers(self, record, rng):
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
        return load(self, record, rng)

    monkeypatch.setattr(tcm.data.datasets.VideoDataset, "load", killed_in_workers)
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"data.num_workers": 1})
    refused(capsys, train_args(config, tmp_path / "run"), "training data", "DataLoader worker")


# -- 6. ensemble weights ---------------------------------------------------------------------


def test_ensemble_weights_must_be_usable(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        scores = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
        (tmp_path / name).mkdir()
        save_scores(
            EvalResult(scores, np.array([0, 1, 2, 0]), list("wxyz")), tmp_path / name / "scores.npz"
        )
    pair = [tmp_path / "a", tmp_path / "b"]
    refused(capsys, ["ensemble", *pair, "--weights", "0", "0"], "positive sum")
    refused(capsys, ["ensemble", *pair, "--weights", "1", "-1"], "non-negative")
    assert main(["ensemble", *map(str, pair), "--weights", "1", "0", "--json"]) == 0
    combined = json.loads(capsys.readouterr().out)
    assert combined["top1"] == combined["inputs"][0]["top1"]


# -- 7. numbers in scientific notation -------------------------------------------------------


def test_every_float_spelling_is_a_number(tiny_set, tmp_path, capsys):
    (tmp_path / "base.yaml").write_text(tiny_config(tiny_set).to_yaml())
    config = tmp_path / "run.yaml"
    config.write_text("_base_: base.yaml\noptim:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    overrides = [
        "--set", "optim.momentum=.5",
        "--set", "schedule.warmup_epochs=1.",
        "--set", "schedule.milestones=[1_000, 2e3]",
        "--set", "optim.clip_grad_norm=1e1",
    ]  # fmt: skip
    assert main(["train", str(config), *overrides, "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["optim"]["lr"], printed["optim"]["weight_decay"]) == (1e-3, 5e-4)
    assert (printed["optim"]["momentum"], printed["optim"]["clip_grad_norm"]) == (0.5, 10.0)
    assert printed["schedule"]["warmup_epochs"] == 1.0
    assert printed["schedule"]["milestones"] == [1000.0, 2000.0]
    assert main(["train", str(config), "--set", "optim.lr=1e-4", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr"] == 1e-4


# -- 8. Kinetics-400 layouts of the downloaders ---------------------------------------------


def test_prepare_finds_kinetics_in_downloader_layouts(tmp_path, capsys):
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (annotations / "train.csv").write_text(
        header + "air drumming,aaa,1,11,train\nabseiling,bbb,20,30,train\n"
    )
    (annotations / "validate.csv").write_text(
        header + "air drumming,ccc,0,10,val\nabseiling,ddd,5,15,val\n"
    )
    root = tmp_path / "k400"
    media = [
        "train/air drumming/aaa_000001_000011.mp4",  # class folders with spaces
        "videos_train/abseiling/bbb_000020_000030.mp4",
        "val/ccc_000000_000010.mp4",  # flat
        "validate/abseiling/ddd_000005_000015.mp4",
    ]
    for relative in media:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"\0")
    out = tmp_path / "lists"
    argv = ["prepare", "kinetics400", "--annotations", annotations, "--root", root]
    assert main([*map(str, argv), "--out", str(out)]) == 0
    assert "no media" not in capsys.readouterr().out
    assert (out / "classes.txt").read_text() == "abseiling\nair drumming\n"
    assert (out / "train.txt").read_text() == (
        "train/air drumming/aaa_000001_000011.mp4 1\nvideos_train/abseiling/bbb_000020_000030.mp4 0\n"
    )
    assert (out / "val.txt").read_text() == (
        "val/ccc_000000_000010.mp4 1\nvalidate/abseiling/ddd_000005_000015.mp4 0\n"
    )
    assert not list(out.glob("missing_*.txt"))


# -- 9. one line instead of a traceback -----------------------------------------------------


def test_existing_files_where_folders_are_expected(finished_run, tiny_set, tmp_path, capsys):
    config, run = finished_run
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    refused(capsys, train_args(config, afile), "afile", "not a folder")
    refused(
        capsys,
        ["test", config, "--checkpoint", run / "best.pt", "--out", afile, "--no-progress"],
        "afile",
        "not a folder",
    )
    refused(
        capsys,
        ["prepare", "ucf101", "--annotations", tmp_path, "--root", tmp_path, "--out", afile],
        "afile",
        "not a folder",
    )
    refused(capsys, ["synth", "--out", afile, "--no-progress"], "afile", "not a folder")
    scores = tmp_path / "scores.npz"
    save_scores(EvalResult(np.eye(3, dtype=np.float32), np.arange(3), list("abc")), scores)
    refused(capsys, ["ensemble", scores, scores, "--out", afile], "afile", "not a folder")
    assert afile.read_text() == "mine\n"


def test_unwritable_work_dir(tiny_set, tmp_path, capsys):
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs Linux's /sys, where no folder can be made")
    config = write_config(tmp_path / "c.yaml", tiny_set)
    refused(capsys, train_args(config, Path("/sys/x")), "/sys/x")


def test_bad_paths_devices_and_values(finished_run, tiny_set, tmp_path, capsys):
    config, run = finished_run
    source = tmp_path / "reference.pth"
    source.write_bytes(b"x")
    refused(capsys, ["convert", source, tmp_path], str(tmp_path), "is a folder")
    refused(capsys, ["check-data", tmp_path, "--root", tmp_path], str(tmp_path), "is a folder")
    video = tiny_set.root / "val_0_0.mp4"
    refused(capsys, ["predict", video, "--checkpoint", run / "best.pt", "--device", "tpu"], "tpu")
    for override, needle in [
        ("data.resize=0", "data.resize"),
        ("data.frame_template=img.jpg", "data.frame_template 'img.jpg'"),
        ("data.frame_template={template}.jpg", "data.frame_template '{template}.jpg'"),
        ("data.frame_template={x}.jpg", "data.frame_template '{x}.jpg'"),
        ("data.scales=[]", "data.scales"),
    ]:
        refused(capsys, train_args(config, tmp_path / "run", "--set", override), needle)
    assert not (tmp_path / "run").exists()


def test_sthv2_annotation_of_the_wrong_shape(tmp_path, capsys):
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing [something]": "0"}))
    (tmp_path / "train.json").write_text(json.dumps(["1", "2"]))
    (tmp_path / "validation.json").write_text("[]")
    argv = ["prepare", "sthv2", "--annotations", tmp_path, "--root", tmp_path]
    refused(capsys, [*argv, "--out", tmp_path / "lists"], "train.json", "entry 0")
    (tmp_path / "train.json").write_text("[{")
    refused(capsys, [*argv, "--out", tmp_path / "lists"], "train.json", "not valid JSON")


def test_a_full_disk_while_saving(tiny_set, tmp_path, capsys, monkeypatch):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    create = tcm.checkpoint._create_temporary

    def on_a_full_disk(path):
        fd, tmp = create(path)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(tcm.checkpoint, "_create_temporary", on_a_full_disk)
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"train.checkpoint_interval": 1})
    run = tmp_path / "run"
    refused(capsys, train_args(config, run), "last.pt", "No space left on device")
    assert not list(run.glob(".*.tmp")) and not (run / "last.pt").exists()


def test_interrupted_run_says_how_to_resume_and_resumes_the_step_rows(
    finished_run, tmp_path, capsys, monkeypatch
):
    # Ctrl-C just after the mid-epoch checkpoint of step 2 (step rows every 3 steps).
    config, reference = finished_run
    save_last = Trainer.save_last

    def interrupted(self):
        save_last(self)
        raise KeyboardInterrupt

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_last", interrupted)
        assert main(train_args(config, run)) == 130
    err = capsys.readouterr().err
    assert err.strip() == "tcm train: interrupted; resume with --resume auto"
    assert load_checkpoint(run / "last.pt")["step"] == 2
    assert main(train_args(config, run, "--resume", "auto")) == 0
    # The step row of step 3 averages steps 1 to 3, as in the uninterrupted run.
    assert stable(read_metrics(run)) == stable(read_metrics(reference))


# -- 10. smaller ones --------------------------------------------------------------------------


def test_byte_order_marks_and_undecodable_files(tiny_set, tmp_path, capsys):
    listing = tmp_path / "val.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + tiny_set.val_list.read_bytes())
    classes = tmp_path / "classes.txt"
    classes.write_bytes(b"\xef\xbb\xbf" + tiny_set.classes.read_bytes())
    argv = ["check-data", str(listing), "--root", str(tiny_set.root), "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 0
    assert "6 entries checked, 0 bad" in capsys.readouterr().out
    listing.write_bytes(b"val_0_0.mp4 0\nbad\xff.mp4 1\n")
    refused(capsys, argv, "val.txt", "line 2", "UTF-8")
    config = tmp_path / "c.yaml"
    config.write_bytes(b"name: caf\xe9\n")
    refused(capsys, ["train", config, "--print-config"], "c.yaml", "UTF-8")


def test_synth_keeps_a_users_own_lists(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("mine.mp4 0\n")
    argv = ["synth", "--out", tmp_path, "--clips-per-class", "10", "--no-progress"]
    refused(capsys, argv, str(tmp_path), "train.txt")
    assert (tmp_path / "train.txt").read_text() == "mine.mp4 0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.txt"]


def test_skipped_training_samples_are_summarised_per_epoch(finished_run):
    _, run = finished_run
    (row,) = [row for row in read_metrics(run) if row["kind"] == "epoch"]
    assert row["train_skipped"] == 1 and row["train_skipped_paths"] == ["gone_train.mp4"]
    log = (run / "train.log").read_text()
    assert "epoch 1: 1 training samples could not be read and were replaced" in log
    assert "gone_train.mp4" in log


def test_checkpoints_have_the_mode_of_the_other_run_files(finished_run):
    _, run = finished_run
    mode = stat.S_IMODE((run / "metrics.jsonl").stat().st_mode)
    assert mode == 0o644  # written under umask 022
    for name in ("last.pt", "best.pt", "config.yaml"):
        assert stat.S_IMODE((run / name).stat().st_mode) == mode, name
