import json

from tcm.cli.main import main


def test_info_reports_tcm_share(capsys):
    assert main(["info", "tcm_tsm_resnet18", "--size", "64", "--frames", "4", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["tcm_params"] > 0
    assert 0 < stats["tcm_flops"] < stats["flops"]
    assert 0 < stats["tcm_flop_share"] < 0.1


def test_info_without_model_lists_models(capsys):
    assert main(["info"]) == 0
    assert "tcm_tsm_resnet50" in capsys.readouterr().out.split()
