"""Model options given on the command line (``--set model.kwargs...``) reach the plug-ins."""

from __future__ import annotations

import tcm
from tcm.cli.main import main
from tcm.models import tcm_layers
from tiny_set import tiny_config


def _train(tiny_set, tmp_path, *sets: str) -> tuple[int, object]:
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_config(tiny_set, **{"schedule.epochs": 1}).to_yaml())
    args = ["train", str(config), "--work-dir", str(tmp_path / "run")]
    for value in sets:
        args += ["--set", value]
    return main(args), tmp_path / "run"


def test_one_tcm_stage_given_as_a_string_is_one_layer_name(tiny_set, tmp_path):
    code, run = _train(tiny_set, tmp_path, "model.kwargs.tcm_stages=layer1")
    assert code == 0
    model, _ = tcm.model_from_checkpoint(run / "last.pt")
    assert list(tcm_layers(model.backbone)) == ["layer1"]


def test_tcm_stages_that_are_no_layer_names_are_one_line(tiny_set, tmp_path, capsys):
    code, run = _train(tiny_set, tmp_path, "model.kwargs.tcm_stages=3")
    assert code == 2
    err = capsys.readouterr().err
    assert "tcm_stages: expected a layer name or a list of layer names, got 3" in err
    assert "Traceback" not in err and not (run / "last.pt").exists()
