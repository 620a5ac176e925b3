"""Still-image pretraining of the demo's trunk: reproducible stills and weights, cached by
config, loaded alike by every variant."""

import json
from dataclasses import asdict

import torch

from tcm.data.synth import SHAPES
from tcm.models import create_model
from tcm.recipes.stills import StillsConfig, pretrain_trunk, render_stills
from tcm.recipes.tempo import TempoSettings, variant_config

CONFIG = StillsConfig(widths=(8, 8, 16, 16), stem_width=8, size=32, images=64, epochs=1)


def test_stills_are_one_function_of_the_config():
    images, labels = render_stills(CONFIG, workers=1)
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.uint8
    assert set(labels.tolist()) <= set(range(len(SHAPES))) and len(set(labels.tolist())) > 1
    in_parallel, same_labels = render_stills(CONFIG, workers=2)
    assert torch.equal(in_parallel, images) and torch.equal(same_labels, labels)
    other, _ = render_stills(StillsConfig(**{**asdict(CONFIG), "seed": 1}), workers=1)
    assert not torch.equal(other, images)


def test_pretraining_is_reproducible_and_cached_by_config(tmp_path):
    first = pretrain_trunk(tmp_path / "a", CONFIG)
    second = pretrain_trunk(tmp_path / "b", CONFIG)
    weights = torch.load(first, weights_only=True)
    again = torch.load(second, weights_only=True)
    assert weights.keys() == again.keys()
    assert all(torch.equal(weights[key], again[key]) for key in weights)
    assert json.loads((tmp_path / "a" / "stills.json").read_text()) == json.loads(
        json.dumps(asdict(CONFIG))
    )
    # Another config trains again, in place of the cached weights.
    retrained = pretrain_trunk(tmp_path / "a", StillsConfig(**{**asdict(CONFIG), "seed": 1}))
    assert retrained == first
    changed = torch.load(retrained, weights_only=True)
    assert any(not torch.equal(changed[key], weights[key]) for key in weights)


def test_still_image_trunk_initialises_every_variant_alike(tmp_path):
    path = pretrain_trunk(tmp_path / "stills", CONFIG)
    written = path.stat().st_mtime_ns
    assert pretrain_trunk(tmp_path / "stills", CONFIG) == path  # cached: not trained again
    assert path.stat().st_mtime_ns == written
    trunk = torch.load(path, weights_only=True)
    for variant in ("tsn", "tcm"):
        settings = TempoSettings(
            size=32, widths=(8, 8, 16, 16), num_segments=4, pretrain=True, variants=(variant,)
        )
        config = variant_config(variant, tmp_path, settings, trunk=path)
        model = create_model(
            config.model.name,
            num_classes=10,
            num_segments=4,
            pretrained=config.model.pretrained,
            **config.model.kwargs,
        )
        for key, value in trunk.items():
            torch.testing.assert_close(model.backbone.state_dict()[key], value)
