"""Preprocessing: one description of sampling, geometry, views and normalisation, written into
checkpoints and read back unchanged."""

from __future__ import annotations

import logging

import pytest

from tcm.data.preprocessing import Preprocessing
from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD


def test_the_defaults_are_the_reference_recipe():
    prep = Preprocessing()
    assert (prep.num_segments, prep.input_size, prep.resize) == (8, 224, (240, 320))
    assert (prep.mean, prep.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert prep.views == (1, 1) and prep.frames_per_input == 8


def test_lists_become_tuples_so_equal_descriptions_compare_equal():
    from_yaml = Preprocessing(
        resize=[256, 340], mean=[0.5, 0.5, 0.5], scales=[1, 0.5], short_side_range=[256, 320]
    )
    assert from_yaml.resize == (256, 340)
    assert from_yaml.mean == (0.5, 0.5, 0.5) and from_yaml.scales == (1.0, 0.5)
    assert from_yaml.short_side_range == (256, 320)
    assert from_yaml == Preprocessing(
        resize=(256, 340), mean=(0.5,) * 3, scales=(1.0, 0.5), short_side_range=(256, 320)
    )
    assert Preprocessing(resize=256).resize == 256  # the short side
    assert Preprocessing(resize=None).resize is None


def test_test_views_multiply_the_frames():
    prep = Preprocessing(num_segments=16, num_clips=2, num_crops=3)
    assert prep.views == (2, 3)
    assert prep.frames_per_input == 2 * 3 * 16
    fewer = prep.replace(num_clips=1, num_crops=1)
    assert fewer.frames_per_input == 16 and prep.num_clips == 2  # a copy


def test_the_checkpoint_entry_round_trips_as_plain_lists():
    prep = Preprocessing(num_segments=4, resize=(128, 171), short_side_range=(128, 160))
    entry = prep.to_dict()
    assert entry["resize"] == [128, 171] and entry["short_side_range"] == [128, 160]
    assert entry["mean"] == list(IMAGENET_MEAN)
    assert all(not isinstance(value, tuple) for value in entry.values())
    assert Preprocessing.from_dict(entry) == prep


def test_unknown_entries_are_ignored_and_missing_ones_take_the_defaults():
    old = {"num_segments": 16, "frame_template": "{:05d}.jpg", "input_size": None}
    prep = Preprocessing.from_dict(old)
    assert prep.num_segments == 16 and prep.input_size == 224
    assert Preprocessing.from_dict({"resize": None}).resize is None  # null is a value here


def test_a_checkpoint_without_preprocessing_gets_the_reference_test_recipe(caplog):
    with caplog.at_level(logging.WARNING, logger="tcm"):
        prep = Preprocessing.from_checkpoint({"model": {"num_segments": 16}})
    assert "records no preprocessing" in caplog.text
    assert prep == Preprocessing(num_segments=16)
    recorded = Preprocessing(num_segments=8, input_size=112).to_dict()
    prep = Preprocessing.from_checkpoint({"model": {"num_segments": 16}, "data": recorded})
    assert (prep.num_segments, prep.input_size) == (8, 112)  # the entry's own frames


def test_a_description_is_immutable():
    with pytest.raises(AttributeError):
        Preprocessing().num_segments = 4
