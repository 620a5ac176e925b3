"""Config values that would run and give a wrong or no result are refused before anything runs,
and a config error says where the value came from (the file or a ``--set``)."""

from __future__ import annotations

import pytest
from test_bad_inputs import _write_checkpoint, refused, train_args, write_config


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.clip_grad_norm=0", "optim.clip_grad_norm must be positive, or null"),
        ("optim.clip_grad_norm=-1", "optim.clip_grad_norm must be positive"),
        ("train.eval_interval=-1", "train.eval_interval must be 0 (never) or more"),
        ("train.checkpoint_interval=-2", "train.checkpoint_interval must be 0"),
        ("dist.timeout_min=0", "dist.timeout_min must be at least 1 minute"),
    ],
)
def test_values_that_silently_break_a_run(tiny_set, tmp_path, capsys, override, needle):
    config = write_config(tmp_path / "c.yaml", tiny_set)
    refused(capsys, train_args(config, tmp_path / "run", "--set", override), needle)
    assert not (tmp_path / "run").exists()


def test_an_unknown_model_option_is_named_before_anything_runs(tiny_set, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_set)
    argv = train_args(config, tmp_path / "run", "--set", "model.kwargs={patch_sise: 5}")
    line = refused(capsys, argv, "has no option 'patch_sise'", "did you mean 'patch_size'?")
    assert "tcm_stages" in line  # the options it has
    refused(
        capsys,
        train_args(config, tmp_path / "run", "--set", "model.kwargs={widths: 5}"),
        "model.kwargs {'widths': 5}",
    )
    assert not (tmp_path / "run").exists()


def test_errors_name_the_override_or_the_file_they_come_from(tiny_set, tmp_path, capsys):
    config = write_config(tmp_path / "good.yaml", tiny_set)
    argv = ["train", config, "--print-config"]
    refused(capsys, [*argv, "--set", "optim.lrr=1"], "error: --set optim.lrr=1: unknown key")
    refused(
        capsys,
        [*argv, "--set", "optim.lr=0.1", "--set", "data.batch_size=x"],
        "error: --set data.batch_size=x: data.batch_size must be an integer",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: good.yaml\noptim:\n  lrr: 1\n")
    refused(
        capsys,
        ["train", bad, "--set", "optim.lr=0.1", "--print-config"],
        "error: bad.yaml: unknown",
    )


def test_absurd_test_views_are_refused_up_front(tiny_set, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_set)
    checkpoint = tmp_path / "model.pt"
    _write_checkpoint(tiny_set, checkpoint)
    argv = ["test", config, "--checkpoint", checkpoint, "--out", tmp_path / "out"]
    argv += ["--set", "data.input_size=224"]  # 1.4 TB of input: more than any machine here
    line = refused(capsys, [*argv, "--views", "100000x1"], "100000x1 test views", "memory")
    assert "GB" in line and "--views" in line
    assert not (tmp_path / "out").exists()


def test_initial_weights_of_another_model_are_summarised(tiny_set, tmp_path, capsys):
    from tcm.checkpoint import atomic_save, make_checkpoint
    from tcm.models import create_model

    other = create_model("tsm_resnet18", 3, 4)  # thousands of keys and shapes that differ
    source = tmp_path / "other.pt"
    atomic_save(
        make_checkpoint(
            other.state_dict(), model_name="tsm_resnet18", num_classes=3, num_segments=4
        ),
        source,
    )
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"model.init_from": str(source)})
    line = refused(capsys, train_args(config, tmp_path / "run"), "model.init_from", "other.pt")
    assert len(line) < 700 and "more" in line, line
    assert not (tmp_path / "run").exists()
