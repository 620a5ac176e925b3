"""The preprocessing a run config describes."""

from __future__ import annotations

from tcm.data.preprocessing import Preprocessing
from tcm.engine.config import RunConfig
from tcm.engine.preprocessing import preprocessing_from_config


def test_every_field_comes_from_its_config_key():
    cfg = RunConfig().replace(
        [
            "model.num_segments=16",
            "data.sampling=dense",
            "data.dense_stride=4",
            "data.input_size=112",
            "data.resize=128",
            "data.short_side_range=[128, 160]",
            "data.train_crop=random",
            "data.scales=[1.0, 0.5]",
            "data.flip=false",
            "eval.num_clips=2",
            "eval.num_crops=3",
        ]
    )
    prep = preprocessing_from_config(cfg, mean=[0.1, 0.2, 0.3], std=[1, 2, 3])
    assert prep == Preprocessing(
        num_segments=16,
        sampling="dense",
        dense_stride=4,
        input_size=112,
        resize=128,
        mean=(0.1, 0.2, 0.3),
        std=(1.0, 2.0, 3.0),
        num_clips=2,
        num_crops=3,
        short_side_range=(128, 160),
        train_crop="random",
        scales=(1.0, 0.5),
        flip=False,
    )
    assert prep.frames_per_input == 2 * 3 * 16


def test_the_default_config_gives_the_reference_recipe_with_the_model_s_statistics():
    from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD

    prep = preprocessing_from_config(RunConfig(), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert prep == Preprocessing()
    assert prep.resize == (240, 320)  # the config's [H, W] list read as a pair


def test_the_storage_options_come_from_the_data_section():
    from tcm.data import StorageOptions
    from tcm.engine.preprocessing import storage_from_config

    cfg = RunConfig().replace(
        [
            "data.frame_template={:05d}.jpg",
            "data.frame_start_index=0",
            "data.bad_sample_policy=raise",
            "data.decode_threads=3",
        ]
    )
    assert storage_from_config(cfg, seed=9) == StorageOptions(
        frame_template="{:05d}.jpg",
        frame_start_index=0,
        bad_sample_policy="raise",
        decode_threads=3,
        seed=9,
    )
    assert storage_from_config(RunConfig()).bad_sample_policy == "skip"  # the config's default
    assert storage_from_config(RunConfig()).seed == 0
