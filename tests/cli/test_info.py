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


def test_sizes_and_frame_counts_out_of_range_are_one_line(capsys):
    for option, value, needle in [
        ("--size", "0", "--size must lie in [32, 512], got 0"),
        ("--size", "-4", "--size must lie in [32, 512], got -4"),
        ("--size", "100000", "scale those of 512"),
        ("--frames", "100000", "--frames must lie in [1, 64], got 100000"),
        ("--frames", "0", "--frames must lie in [1, 64], got 0"),
        ("--num-classes", "0", "--num-classes must be at least 1"),
    ]:
        assert main(["info", "tcm_tsm_resnet10", option, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("tcm info: error: ") and needle in err, err
