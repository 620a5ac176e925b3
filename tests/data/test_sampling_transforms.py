"""Frame sampling and clip transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcm.data.sampling import DenseSampler, SegmentSampler, build_sampler
from tcm.data.transforms import (
    MultiScaleCrop,
    RandomHorizontalFlip,
    center_crop,
    multi_scale_crop_params,
    normalize,
    resize,
    three_crop,
)


def test_segment_sampler_test_takes_centres():
    np.testing.assert_array_equal(SegmentSampler(4)(40, train=False), [[5, 15, 25, 35]])


def test_segment_sampler_train_one_frame_per_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        (indices,) = SegmentSampler(8)(83, train=True, rng=rng)
        assert ((indices // 10) == np.arange(8)).all()


def test_segment_sampler_several_test_clips():
    clips = SegmentSampler(4)(40, train=False, num_clips=2)
    np.testing.assert_array_equal(clips, [[2, 12, 22, 32], [7, 17, 27, 37]])


@pytest.mark.parametrize("sampler", [SegmentSampler(8), DenseSampler(8, stride=8)])
@pytest.mark.parametrize("train", [True, False])
def test_fewer_frames_than_segments(sampler, train):
    indices = sampler(3, train=train, rng=np.random.default_rng(0))
    assert indices.shape == (1, 8) and indices.min() >= 0 and indices.max() <= 2
    assert (np.diff(indices[0]) >= 0).all() and set(indices[0]) == {0, 1, 2}


def test_dense_sampler():
    sampler = build_sampler("dense", 8, stride=8)
    (indices,) = sampler(280, train=True, rng=np.random.default_rng(1))
    assert (np.diff(indices) == 8).all() and indices[-1] < 280
    clips = sampler(280, train=False, num_clips=3)
    assert clips[0, 0] == 0 and clips[-1, -1] == 279 and (np.diff(clips, axis=1) == 8).all()
    (short,) = sampler(30, train=False)  # the 57-frame span does not fit: stride shrinks
    assert short[-1] < 30 and (np.diff(short) == 4).all()


def test_multi_scale_crop_candidates():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        top, left, h, w = multi_scale_crop_params(240, 320, output_size=224, rng=rng)
        assert h in (240, 210, 180, 158) and w in (240, 210, 180, 158)
        sides = [240, 210, 180, 158]
        assert abs(sides.index(h) - sides.index(w)) <= 1
        step_h, step_w = (240 - h) // 4, (320 - w) // 4
        assert (top, left) in {
            (0, 0),
            (0, 4 * step_w),
            (4 * step_h, 0),
            (4 * step_h, 4 * step_w),
            (2 * step_h, 2 * step_w),
        }
        seen.add((h, w))
    assert len(seen) == 10  # 4 + 3 + 3 pairs with |i - j| <= 1


def test_multi_scale_crop_same_box_for_all_frames():
    clip = torch.randint(0, 256, (8, 3, 240, 320), dtype=torch.uint8)
    clip[3] = clip[0]
    out, _ = MultiScaleCrop(224)(clip, 0, np.random.default_rng(3))
    assert out.shape == (8, 3, 224, 224) and out.dtype == torch.uint8
    torch.testing.assert_close(out[3], out[0])


def test_resize_crops_and_normalize_shapes():
    clip = torch.randint(0, 256, (4, 256, 340, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    assert resize(clip, 256, short_side=True).shape == (4, 3, 256, 340)
    assert resize(clip, 128, short_side=True).shape == (4, 3, 128, 170)
    assert resize(clip, (240, 320)).shape == (4, 3, 240, 320)
    crops = three_crop(clip, 224)
    assert crops.shape == (3, 4, 3, 224, 224)
    torch.testing.assert_close(crops[0], clip[..., 16:240, 0:224])
    torch.testing.assert_close(crops[2], clip[..., 16:240, 116:340])
    torch.testing.assert_close(crops[1], center_crop(clip, 224))
    out = normalize(clip, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, (clip.float() / 255 - 0.5) / 0.25)
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(clip, 300)


def test_uint8_resize_close_to_float():
    clip = torch.randint(0, 256, (2, 3, 60, 80), dtype=torch.uint8)
    a = resize(clip, (45, 60)).float()
    b = resize(clip.float(), (45, 60))
    assert (a - b).abs().max() <= 1.0


def test_flip_swaps_mirror_labels_and_skips_unmirrored():
    clip = torch.arange(2 * 3 * 2 * 4, dtype=torch.uint8).view(2, 3, 2, 4)
    flip = RandomHorizontalFlip(p=1.0, mirror=[2, 1, 0, -1])
    rng = np.random.default_rng(0)
    out, label = flip(clip, 0, rng)
    assert label == 2
    torch.testing.assert_close(out, clip.flip(-1))
    assert flip(clip, 1, rng)[1] == 1
    out, label = flip(clip, 3, rng)
    assert label == 3 and out is clip


def test_multi_scale_crop_snaps_to_output_size():
    rng = np.random.default_rng(0)
    heights = {multi_scale_crop_params(256, 340, output_size=224, rng=rng)[2] for _ in range(500)}
    assert heights == {256, 224, 192, 168}  # int(256 * .875) = 224; int(256 * .66) = 168
    heights = {multi_scale_crop_params(255, 340, output_size=224, rng=rng)[2] for _ in range(500)}
    assert 224 in heights and 223 not in heights  # int(255 * .875) = 223 snaps to 224
