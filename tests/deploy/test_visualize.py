"""``tcm visualize``: fields in input pixels that follow motion, PNG and GIF output, checkpoints
of the project and converted reference checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deploy_media import MEAN, STD
from PIL import Image

import tcm
from tcm.checkpoint import make_checkpoint
from tcm.cli.main import main
from tcm.deploy import Predictor, visualize
from tcm.deploy.tcm_maps import collect_tcm_maps
from tcm.deploy.visualize import flow_to_rgb


def _translating_frames(folder, *, frames: int, shift: int, size: int = 96):
    """Frames of a smooth random texture moving right by ``shift`` pixels per frame."""
    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8))
    base = np.asarray(texture.resize((size, size), Image.BILINEAR))
    folder.mkdir()
    for t in range(frames):
        Image.fromarray(np.roll(base, shift * t, axis=1)).save(folder / f"img_{t + 1:05d}.png")
    return folder


def test_fields_measure_the_motion_in_input_pixels(tmp_path):
    """A TCM (random weights, no temporal shift) on a texture moving 8 px per frame: the fast
    field reads 8 px to the right at every frame, the slow field 8, 16, 24 px."""
    torch.manual_seed(0)
    kwargs = {"widths": [16, 32, 32, 32], "stem_width": 16, "patch_size": 7}
    model = tcm.create_model("tcm_tsn_resnet10", 3, 4, **kwargs).eval()
    checkpoint = make_checkpoint(
        model.state_dict(),
        model_name="tcm_tsn_resnet10",
        num_classes=3,
        num_segments=4,
        model_kwargs=kwargs,
        data={"num_segments": 4, "resize": None, "input_size": 96, "mean": MEAN, "std": STD},
    )
    folder = _translating_frames(tmp_path / "frames", frames=4, shift=8)
    predictor = Predictor(checkpoint)
    maps = collect_tcm_maps(predictor.model, predictor.load(folder))
    assert maps.fields.shape == (4, 6, 12, 12) and maps.stride == 8 and maps.radius == 3
    assert maps.attention.shape == (4, 32)
    assert ((maps.attention > 0) & (maps.attention < 1)).all()
    inner = (slice(None), slice(None), slice(2, -2), slice(3, -3))  # away from the wrap-around
    fast = maps.displacement_pixels("fast")[inner].flatten(2).median(dim=2).values  # (T, 2)
    slow = maps.displacement_pixels("slow")[inner].flatten(2).median(dim=2).values
    torch.testing.assert_close(fast, torch.tensor([[8.0, 0.0]] * 4), atol=0.5, rtol=0)
    expected_slow = torch.tensor([[8.0, 0.0], [16.0, 0.0], [24.0, 0.0], [24.0, 0.0]])
    torch.testing.assert_close(slow, expected_slow, atol=0.5, rtol=0)


def test_attention_matches_the_layer(checkpoint_path, media):
    """The layer adds TAM's features scaled by the recorded attention: y = x + features * a."""
    predictor = Predictor(checkpoint_path)
    layer = predictor.model.backbone.tcm_layers["layer2"]
    seen = {}
    handles = [
        layer.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o)),
        layer.tam.conv4.register_forward_hook(lambda m, i, o: seen.update(features=o.clone())),
    ]
    try:
        maps = collect_tcm_maps(predictor.model, predictor.load(media["video_a"]))
    finally:
        for handle in handles:
            handle.remove()
    frames = layer.num_segments
    expected = seen["x"][:frames] + seen["features"][:frames] * maps.attention[:, :, None, None]
    torch.testing.assert_close(seen["y"][:frames], expected, atol=1e-5, rtol=1e-5)


def test_flow_colours():
    right, down = flow_to_rgb(np.array([[[1.0, 0.0]], [[0.0, 1.0]]]), 1.0)[0]
    np.testing.assert_allclose(right, [1.0, 0.0, 0.0], atol=1e-6)  # right: red
    assert down[2] > 0.9 and down[1] < 0.1  # down: blue-violet
    still = flow_to_rgb(np.zeros((2, 1, 1)), 1.0)[0, 0]
    np.testing.assert_allclose(still, 0.0)  # no motion: black


def test_cli_visualize_png(checkpoint_path, media, tmp_path, capsys):
    out = tmp_path / "tcm.png"
    args = ["visualize", str(media["video_a"]), "--checkpoint", str(checkpoint_path)]
    status = main([*args, "--out", str(out)])
    assert status == 0
    assert "TCM after layer2" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 800 and height > 4 * 150  # five columns, four frame rows and the attention


@pytest.mark.parametrize("flow", ["arrows", "color"])
def test_visualize_gif(checkpoint_path, media, tmp_path, flow):
    out = tmp_path / f"tcm_{flow}.gif"
    result = visualize(checkpoint_path, media["frames"], out, flow=flow)
    assert result.path == out and result.maps.stage == "layer2"
    with Image.open(out) as image:
        assert image.format == "GIF" and image.n_frames == 4


def test_visualize_rejects_models_without_tcm_and_bad_suffixes(media, tmp_path):
    model = tcm.create_model("tsn_resnet10", 2, 4, widths=[8, 16, 32, 64], stem_width=8)
    checkpoint = make_checkpoint(
        model.state_dict(),
        model_name="tsn_resnet10",
        num_classes=2,
        num_segments=4,
        model_kwargs={"widths": [8, 16, 32, 64], "stem_width": 8},
        data={"num_segments": 4, "resize": [72, 96], "input_size": 64},
    )
    with pytest.raises(ValueError, match="no TCM layer"):
        visualize(checkpoint, media["video_a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.png or \.gif"):
        visualize(checkpoint, media["video_a"], tmp_path / "x.jpg")


def _reference_release_file(model: torch.nn.Module, path):
    """``model``'s weights under the reference release's names and head layout."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone.tcm_layers.layer2."):
            key = "base_model.tcm_layer." + key.removeprefix("backbone.tcm_layers.layer2.")
        elif key.startswith("backbone."):
            key = "base_model." + key.removeprefix("backbone.")
        else:
            key = "new_fc." + key.removeprefix("fc.")
            value = value[..., None] if key == "new_fc.weight" else value
        state["module." + key] = value
    torch.save({"state_dict": state, "epoch": 1, "best_prec1": 0.0}, path)
    return path


def test_visualize_a_converted_reference_checkpoint(media, tmp_path):
    model = tcm.create_model("tcm_tsm_resnet10", 5, 4)
    raw = _reference_release_file(model, tmp_path / "ref.pth.tar")
    converted = tmp_path / "converted.pt"
    args = ["convert", str(raw), str(converted), "--model", "tcm_tsm_resnet10"]
    assert main([*args, "--num-segments", "4"]) == 0
    result = visualize(converted, media["video_b"], tmp_path / "ref.png", flow="color")
    assert result.maps.fields.shape == (4, 6, 28, 28) and result.maps.stride == 8


def test_visualize_real_video(checkpoint_path, shared_data, tmp_path):
    out = tmp_path / "arm_wrestling.png"
    result = visualize(checkpoint_path, shared_data / "videos" / "kinetics_arm_wrestling.mp4", out)
    assert out.is_file() and result.maps.fields.shape == (4, 6, 8, 8)
