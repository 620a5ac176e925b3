"""Configs: shipped files, inheritance, typed overrides, clear errors."""

from __future__ import annotations

import re

import pytest
import yaml

from tcm.cli.main import main
from tcm.engine.config import RunConfig
from tcm.engine.config_checks import check_config
from tcm.engine.config_files import list_configs, load_config
from tcm.errors import ConfigError
from tcm.models import list_models

DATASETS = ("sthv1", "sthv2", "k400", "ucf101", "hmdb51")


def test_shipped_configs_cover_every_benchmark():
    names = set(list_configs())
    for dataset in DATASETS:
        for variant in ("tcm_tsm_r50_8f", "tcm_tsm_r50_16f", "tsm_r50_8f", "tsn_r50_8f"):
            assert f"{dataset}_{variant}" in names


@pytest.mark.parametrize("name", list_configs())
def test_shipped_config_loads_and_round_trips(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.model.name in list_models()
    assert RunConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize("dataset", ["sthv2", "k400"])
def test_mobilenetv2_recipes_are_the_resnet_recipes_on_mobilenetv2(dataset):
    mobile = load_config(f"{dataset}_tcm_tsm_mnv2_8f")
    resnet = load_config(f"{dataset}_tcm_tsm_r50_8f")
    assert mobile.model.name == "tcm_tsm_mobilenetv2"
    assert mobile.model.pretrained.endswith("mobilenet_v2-b0353104.pth")
    assert (mobile.data, mobile.optim, mobile.schedule) == (
        resnet.data,
        resnet.optim,
        resnet.schedule,
    )


def test_sthv1_recipe_follows_the_reference():
    cfg = load_config("sthv1_tcm_tsm_r50_8f")
    assert (cfg.model.num_classes, cfg.model.num_segments, cfg.model.dropout) == (174, 8, 0.5)
    assert (cfg.optim.lr, cfg.optim.base_batch_size, cfg.optim.weight_decay) == (0.01, 32, 5e-4)
    assert cfg.optim.nesterov and cfg.optim.clip_grad_norm == 200
    assert (cfg.schedule.epochs, cfg.schedule.milestones) == (50, [30, 40, 45])
    assert cfg.data.resize == [240, 320] and cfg.model.freeze_bn == "none"
    assert load_config("sthv1_tcm_tsm_r50_16f").model.num_segments == 16
    ucf = load_config("ucf101_tcm_tsm_r50_8f")
    assert ucf.model.init_from.endswith("k400_tcm_tsm_r50_8f/best.pt")
    assert ucf.model.num_classes == 101 and ucf.model.freeze_bn == "partial"


def test_base_inheritance_and_typed_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "optim:\n  lr: 0.1\n  momentum: 0.5\ndata:\n  batch_size: 2\n"
    )
    (tmp_path / "run.yaml").write_text("_base_: base.yaml\noptim:\n  lr: 0.2\n")
    cfg = load_config(
        tmp_path / "run.yaml",
        [
            "schedule.milestones=[3, 6]",
            "data.resize=256",
            "data.frame_template={:05d}.jpg",
            "optim.clip_grad_norm=null",
            "model.kwargs.widths=[8, 16, 32, 64]",
            "train.amp=bf16",
        ],
    )
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.data.batch_size) == (0.2, 0.5, 2)
    assert cfg.schedule.milestones == [3.0, 6.0] and cfg.data.resize == 256
    assert cfg.data.frame_template == "{:05d}.jpg" and cfg.optim.clip_grad_norm is None
    assert cfg.model.kwargs == {"widths": [8, 16, 32, 64]} and cfg.name == "run"
    assert isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-4", 1e-4),
        ("5E-4", 5e-4),
        (".5", 0.5),
        ("1.", 1.0),
        ("1_000", 1000.0),
        ("-2.5e+1", -25.0),
    ],
)
def test_every_float_spelling_is_a_number(tmp_path, text, value):
    (tmp_path / "run.yaml").write_text(f"_base_: sthv1_tcm_tsm_r50_8f\noptim:\n  lr: {text}\n")
    assert load_config(tmp_path / "run.yaml").optim.lr == value
    assert (
        load_config("sthv1_tcm_tsm_r50_8f", [f"optim.weight_decay={text}"]).optim.weight_decay
        == value
    )
    assert RunConfig.from_dict({"optim": {"lr": text}}).optim.lr == value


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optim.learning_rate=1", "did you mean 'optim.lr'?"),
        ("model.milestones=[1]", "did you mean 'schedule.milestones'?"),
        ("optim.lr=fast", "optim.lr must be a number"),
        ("train.amp=fp32", "train.amp must be one of"),
        ("data.flip=yes please", "data.flip must be true or false"),
        ("data.batch_size=2.5", "data.batch_size must be an integer"),
    ],
)
def test_bad_values_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("sthv1_tcm_tsm_r50_8f", [override])


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    assert main(["train", "sthv1_tcm_tsm_r50_8f", "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'optim.lr'?" in err and "Traceback" not in err
    assert main(["train", "sthv1_tcm_tsm_r50_8f", "--set", f"data.root={tmp_path}"]) == 2
    assert "data.train_list" in capsys.readouterr().err


def test_check_config_catches_missing_paths_and_class_count(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\nc\n")
    (tmp_path / "train.txt").write_text("x.mp4 0\n")
    cfg = RunConfig.from_dict({"model": {"name": "tsm_resnet10"}})
    with pytest.raises(ConfigError, match=r"data\.root is not set"):
        check_config(cfg)
    cfg = cfg.replace({"data.root": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"data\.train_list is not set"):
        check_config(cfg)
    cfg = cfg.replace({"data.train_list": str(tmp_path / "missing.txt")})
    with pytest.raises(ConfigError, match=r"missing\.txt does not exist"):
        check_config(cfg)
    cfg = cfg.replace(
        {"data.train_list": str(tmp_path / "train.txt"), "data.classes": str(classes)}
    )
    assert check_config(cfg) == (3, ["a", "b", "c"])
    with pytest.raises(
        ConfigError, match=r"model.num_classes=5 but data.classes .* lists 3 classes"
    ):
        check_config(cfg.replace({"model.num_classes": 5}))
    with pytest.raises(ConfigError, match="did you mean 'tsm_resnet101'"):
        check_config(cfg.replace({"model.name": "tsm_resnet11"}))
    with pytest.raises(ConfigError, match=r"data\.decode_threads must be 0 \(one per core\)"):
        check_config(cfg.replace({"data.decode_threads": -1}))


def test_the_whole_config_and_its_loop_section_have_names_of_their_own():
    import tcm.engine
    from tcm.engine.config import TrainLoopConfig

    cfg = RunConfig()
    assert isinstance(cfg.train, TrainLoopConfig)
    assert tcm.engine.RunConfig is RunConfig
    assert tcm.engine.TrainConfig is RunConfig  # the former name of the export, unlisted
    assert "RunConfig" in tcm.engine.__all__ and "TrainConfig" not in tcm.engine.__all__


def test_config_and_divergence_errors_are_tcm_errors():
    from tcm.errors import NonFiniteLossError, TcmError

    assert issubclass(ConfigError, TcmError) and issubclass(ConfigError, ValueError)
    assert issubclass(NonFiniteLossError, TcmError)
    assert issubclass(NonFiniteLossError, RuntimeError)
    with pytest.raises(ConfigError, match=r"did you mean 'optim\.lr'"):
        RunConfig.from_dict({"optim": {"learning_rate": 0.1}})
