"""Storage options: one frozen description, checked once, passed whole."""

from __future__ import annotations

import pytest

from tcm.data import StorageOptions, VideoRecord, build_dataset
from tcm.data.preprocessing import Preprocessing
from tcm.data.storage_options import DEFAULT_STORAGE


def test_the_defaults_read_one_based_image_folders_and_raise():
    assert StorageOptions() == DEFAULT_STORAGE
    assert DEFAULT_STORAGE.frame_template == "img_{:05d}.jpg"
    assert (DEFAULT_STORAGE.frame_start_index, DEFAULT_STORAGE.bad_sample_policy) == (1, "raise")
    assert (DEFAULT_STORAGE.max_retries, DEFAULT_STORAGE.decode_threads) == (10, 1)
    assert DEFAULT_STORAGE.seed == 0


def test_an_unknown_policy_is_refused_where_the_options_are_made():
    with pytest.raises(ValueError, match=r"bad_sample_policy must be one of \('raise', 'skip'\)"):
        StorageOptions(bad_sample_policy="ignore")
    with pytest.raises(ValueError, match="bad_sample_policy"):
        DEFAULT_STORAGE.replace(bad_sample_policy="ignore")


def test_options_are_immutable_and_replaced_by_copies():
    skip = DEFAULT_STORAGE.replace(bad_sample_policy="skip", seed=5)
    assert (skip.bad_sample_policy, skip.seed) == ("skip", 5)
    assert DEFAULT_STORAGE.seed == 0
    with pytest.raises(AttributeError):
        skip.seed = 1


def test_the_dataset_keeps_the_options_it_was_given(tmp_path):
    storage = StorageOptions(frame_template="{:04d}.png", frame_start_index=0, seed=3)
    dataset = build_dataset(
        [VideoRecord("a.mp4", 0)], tmp_path, Preprocessing(num_segments=2), train=True,
        storage=storage,
    )  # fmt: skip
    assert dataset.storage is storage
    assert (
        build_dataset(
            [VideoRecord("a.mp4", 0)], tmp_path, Preprocessing(num_segments=2), train=False
        ).storage
        == DEFAULT_STORAGE
    )
