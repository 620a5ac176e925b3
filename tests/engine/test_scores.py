"""Accuracy metrics, score files, per-class tables and ensembles, on hand-made scores."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from tcm.engine.scores import (
    OUTPUT_FILES,
    EvalResult,
    compute_metrics,
    confusion_matrix,
    ensemble,
    load_scores,
    nll,
    save_scores,
    topk_accuracy,
)

# 4 videos, 3 classes; class 2 has no video.
SCORES = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]], dtype=np.float32
)
LABELS = np.array([0, 1, 1, 1])
PATHS = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]


def test_topk_counts_a_label_among_the_k_best():
    assert topk_accuracy(SCORES, LABELS, 1) == 50.0  # a and d
    assert topk_accuracy(SCORES, LABELS, 2) == 100.0
    assert topk_accuracy(SCORES, LABELS, 5) == 100.0  # k past the classes: all of them
    ties = np.array([[0.5, 0.5]])
    assert topk_accuracy(ties, np.array([0]), 1) == 100.0  # ties go to the lower index
    assert topk_accuracy(ties, np.array([1]), 1) == 0.0


def test_confusion_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 2, 0, 1]), LABELS, 3)
    assert matrix.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    assert matrix.dtype == np.int64


def test_metrics_leave_classes_without_videos_out_of_the_mean():
    metrics = compute_metrics(SCORES, LABELS)
    assert metrics["top1"] == 50.0
    assert metrics["top5"] == 100.0
    assert metrics["per_class_acc"][:2].tolist() == [100.0, pytest.approx(100 / 3)]
    assert math.isnan(metrics["per_class_acc"][2])
    assert metrics["mean_class_acc"] == pytest.approx((100 + 100 / 3) / 2)


def test_the_loss_is_the_mean_negative_log_likelihood():
    expected = -np.mean(np.log([0.7, 0.3, 0.4, 0.5]))
    assert nll(SCORES, LABELS) == pytest.approx(expected)
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))


def test_a_result_computes_its_metrics_and_summary():
    result = EvalResult(SCORES, LABELS, PATHS, ["x", "y", "z"], (2, 3))
    assert (result.num_videos, result.top1, result.top5) == (4, 50.0, 100.0)
    summary = result.summary()
    assert summary["views"] == "2x3"
    assert (summary["videos"], summary["classes"], summary["skipped"]) == (4, 3, 0)
    assert "skipped_videos" not in summary
    assert summary["loss"] == pytest.approx(result.loss)


def test_score_files_round_trip_and_the_outputs_are_written(tmp_path):
    result = EvalResult(SCORES, LABELS, PATHS, ["x", "y", "z"], (2, 3))
    written = result.save(tmp_path / "out", confusion_png=False)
    assert set(written) == {"scores", "per_class", "metrics"}
    assert {p.name for p in written.values()} == set(OUTPUT_FILES) - {"confusion.png"}
    again = load_scores(tmp_path / "out")  # a folder means its scores.npz
    assert np.array_equal(again.scores, SCORES) and again.labels.tolist() == LABELS.tolist()
    assert (again.paths, again.classes, again.views) == (PATHS, ["x", "y", "z"], (2, 3))
    with open(written["per_class"], newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "class", "videos", "correct", "accuracy"]
    assert rows[1:] == [["0", "x", "1", "1", "100.0000"], ["1", "y", "3", "1", "33.3333"],
                        ["2", "z", "0", "0", ""]]  # fmt: skip
    assert json.loads(written["metrics"].read_text())["top1"] == 50.0


def test_score_files_without_classes_or_views_read_with_defaults(tmp_path):
    path = save_scores(EvalResult(SCORES, LABELS, PATHS), tmp_path / "s.npz")
    again = load_scores(path)
    assert again.classes is None and again.views == (1, 1)


def test_what_is_not_a_score_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such score file"):
        load_scores(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        load_scores(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", scores=SCORES)
    with pytest.raises(ValueError, match=r"missing \['labels', 'paths'\]"):
        load_scores(tmp_path / "other.npz")


def test_an_ensemble_is_the_weighted_mean_of_the_scores():
    first = EvalResult(SCORES, LABELS, PATHS)
    second = EvalResult(SCORES[:, ::-1].copy(), LABELS, PATHS)
    combined = ensemble([first, second], weights=[3, 1])
    assert np.allclose(combined.scores, (3 * SCORES + SCORES[:, ::-1]) / 4)
    assert combined.paths == PATHS
    assert np.allclose(ensemble([first]).scores, SCORES)


def test_an_ensemble_refuses_what_does_not_combine():
    first = EvalResult(SCORES, LABELS, PATHS)
    with pytest.raises(ValueError, match="nothing to ensemble"):
        ensemble([])
    with pytest.raises(ValueError, match="1 weights for 2 score files"):
        ensemble([first, first], weights=[1])
    with pytest.raises(ValueError, match="non-negative"):
        ensemble([first, first], weights=[1, -1])
    with pytest.raises(ValueError, match="shape"):
        ensemble([first, EvalResult(SCORES[:, :2], LABELS, PATHS)])
    with pytest.raises(ValueError, match="same videos"):
        ensemble([first, EvalResult(SCORES, LABELS, PATHS[::-1])])
