"""Evaluation: tcm test reports exactly what its saved scores say; ensembles; metrics."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tcm.checkpoint import atomic_save, make_checkpoint
from tcm.cli.main import main
from tcm.data import Preprocessing, build_dataset
from tcm.engine.model_setup import model_kwargs
from tcm.engine.preprocessing import preprocessing_from_config
from tcm.engine.scores import compute_metrics, ensemble, load_scores
from tcm.models import create_model
from tiny_set import tiny_config


def _checkpoint(cfg, path, seed):
    torch.manual_seed(seed)
    model = create_model(cfg.model.name, 3, cfg.model.num_segments, **model_kwargs(cfg))
    for module in model.modules():  # random running statistics: scores that differ per video
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
    with torch.no_grad():
        model.fc.weight.normal_(0, 1.0)
    checkpoint = make_checkpoint(
        model.state_dict(),
        model_name=cfg.model.name,
        num_classes=3,
        num_segments=cfg.model.num_segments,
        model_kwargs=model_kwargs(cfg),
        classes=["red right", "green left", "blue down"],
        data=preprocessing_from_config(cfg, mean=model.mean, std=model.std).to_dict(),
    )
    atomic_save(checkpoint, path)
    return model.eval()


def _test(config_file, checkpoint, out, views, capsys):
    args = ["test", str(config_file), "--checkpoint", str(checkpoint), "--views", views]
    code = main([*args, "--json", "--out", str(out)])
    assert code == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_tcm_test_compile_gives_the_eager_scores(tiny_set, tmp_path, capsys):
    cfg = tiny_config(tiny_set)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.to_yaml())
    _checkpoint(cfg, tmp_path / "a.pt", seed=1)
    _test(config_file, tmp_path / "a.pt", tmp_path / "eager", "1x1", capsys)
    args = ["test", str(config_file), "--checkpoint", str(tmp_path / "a.pt"), "--compile"]
    assert main([*args, "--views", "1x1", "--json", "--out", str(tmp_path / "compiled")]) == 0
    scores = [np.load(tmp_path / name / "scores.npz")["scores"] for name in ("eager", "compiled")]
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-4)


def test_tcm_test_matches_accuracy_computed_by_hand(tiny_set, tmp_path, capsys):
    cfg = tiny_config(tiny_set)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.to_yaml())
    model = _checkpoint(cfg, tmp_path / "a.pt", seed=1)
    report = _test(config_file, tmp_path / "a.pt", tmp_path / "a", "2x3", capsys)

    with np.load(tmp_path / "a" / "scores.npz") as saved:
        scores, labels = saved["scores"], saved["labels"]
    assert scores.shape == (6, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    predicted = scores.argmax(axis=1)
    top1 = 100.0 * np.mean(predicted == labels)
    per_class = [100.0 * np.mean(predicted[labels == k] == k) for k in range(3)]
    assert report["top1"] == top1
    assert report["top5"] == 100.0  # 3 classes
    assert report["mean_class_acc"] == pytest.approx(np.mean(per_class), abs=1e-12)
    assert report["videos"] == 6 and report["views"] == "2x3"
    with open(tmp_path / "a" / "per_class.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(per_class, abs=1e-4)
    assert (tmp_path / "a" / "confusion.png").stat().st_size > 0

    # Scores are the softmax averaged over the 2 clips x 3 crops of a video.
    dataset = build_dataset(
        str(tiny_set.val_list),
        str(tiny_set.root),
        Preprocessing(
            num_segments=4,
            num_clips=2,
            num_crops=3,
            input_size=32,
            resize=(36, 44),
            mean=model.mean,
            std=model.std,
        ),
        train=False,
    )
    clip, _ = dataset[3]
    with torch.no_grad():
        views = model(clip.view(6, 4, 3, 32, 32)).softmax(dim=1)
    np.testing.assert_allclose(scores[3], views.mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)

    # Ensemble of two score files: the average of the scores, reported as by hand.
    _checkpoint(cfg, tmp_path / "b.pt", seed=2)
    _test(config_file, tmp_path / "b.pt", tmp_path / "b", "1x1", capsys)
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    combined = json.loads(capsys.readouterr().out)
    average = (scores + load_scores(tmp_path / "b").scores) / 2
    assert combined["top1"] == 100.0 * np.mean(average.argmax(axis=1) == labels)
    np.testing.assert_allclose(
        ensemble([tmp_path / "a", tmp_path / "b"]).scores, average, atol=1e-7
    )


def test_metrics_of_known_scores():
    scores = np.array(
        [
            [0.5, 0.2, 0.1, 0.1, 0.05, 0.05],
            [0.0, 0.2, 0.3, 0.35, 0.1, 0.05],
            [0.0, 0.1, 0.2, 0.3, 0.25, 0.15],
        ]
    )
    labels = np.array([0, 0, 1])
    metrics = compute_metrics(scores, labels)
    assert metrics["top1"] == pytest.approx(100 / 3)
    assert metrics["top5"] == pytest.approx(200 / 3)  # video 1's label is 6th of 6
    assert metrics["mean_class_acc"] == pytest.approx(25.0)  # class 0: 1/2, class 1: 0/1
    assert metrics["confusion"][0].tolist() == [1, 0, 0, 1, 0, 0]
    assert np.isnan(metrics["per_class_acc"][2])


def test_test_command_rejects_a_class_count_mismatch(tiny_set, tmp_path, capsys):
    cfg = tiny_config(tiny_set)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.to_yaml())
    _checkpoint(cfg, tmp_path / "a.pt", seed=1)
    four = tmp_path / "four.txt"
    four.write_text("a\nb\nc\nd\n")
    code = main(
        [
            "test",
            str(config_file),
            "--checkpoint",
            str(tmp_path / "a.pt"),
            "--set",
            f"data.classes={four}",
        ]
    )
    assert code == 2
    assert "3 classes" in capsys.readouterr().err
