"""The synthetic visual-tempo data set: determinism, lists, decoding, and no single-frame cue."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tcm.cli.main import main as tcm_main
from tcm.data import Preprocessing, VideoReader, build_dataset, read_classes, read_list
from tcm.data.synth import (
    CLASS_SPECS,
    DEFAULT_CLASSES,
    GROUPS,
    SynthConfig,
    clip_rng,
    read_groups,
    render_clip,
    resolve_class_names,
    write_synth_dataset,
)

# Three clips per class: one in each split. Small frames keep the test fast.
SMALL = SynthConfig(clips_per_class=3, size=32, frames=8, val_fraction=0.34, test_fraction=0.34)


def _digests(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> dict[str, Path]:
    """The SMALL set written three times: sequentially, with two workers, with another seed."""
    roots = {}
    for name, config, workers in (
        ("serial", SMALL, 1),
        ("parallel", SMALL, 2),
        ("other_seed", SynthConfig(**{**SMALL.__dict__, "seed": 1}), 1),
    ):
        roots[name] = tmp_path_factory.mktemp(name)
        write_synth_dataset(roots[name], config, workers=workers)
    return roots


def test_same_seed_gives_byte_identical_files(small_sets):
    serial, parallel = _digests(small_sets["serial"]), _digests(small_sets["parallel"])
    assert len(serial) == len(DEFAULT_CLASSES) * 3 + 6  # clips + 4 lists + groups + settings
    assert serial == parallel


def test_other_seed_gives_other_clips(small_sets):
    serial, other = _digests(small_sets["serial"]), _digests(small_sets["other_seed"])
    assert serial.keys() == other.keys()
    videos = [path for path in serial if path.endswith(".mp4")]
    assert all(serial[path] != other[path] for path in videos)


def test_render_is_a_function_of_seed_class_and_index():
    first = render_clip("receding", clip_rng(3, "receding", 5), size=32, frames=6)
    again = render_clip("receding", clip_rng(3, "receding", 5), size=32, frames=6)
    assert first.shape == (6, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    other = render_clip("receding", clip_rng(3, "receding", 6), size=32, frames=6)
    assert not np.array_equal(first, other)


def test_lists_hold_every_class_in_every_split(small_sets):
    root = small_sets["serial"]
    classes = read_classes(root / "classes.txt")
    assert classes == list(DEFAULT_CLASSES)
    groups = read_groups(root / "groups.json")
    assert groups == {name: CLASS_SPECS[name].group for name in classes}
    assert set(groups.values()) == set(GROUPS)
    assert all(list(groups.values()).count(group) >= 2 for group in GROUPS)
    seen = set()
    for split in ("train", "val", "test"):
        records = read_list(root / f"{split}.txt")
        assert sorted(record.label for record in records) == list(range(len(classes)))
        for record in records:
            assert (root / record.path).is_file()
            assert record.path.split("/")[1] == classes[record.label].replace(" ", "_")
        seen.update(record.path for record in records)
    assert len(seen) == len(classes) * 3  # no clip in two splits
    settings = json.loads((root / "synth.json").read_text())
    assert settings["seed"] == SMALL.seed and settings["classes"] == list(classes)


def test_files_decode_with_pyav(small_sets):
    root = small_sets["serial"]
    path = root / read_list(root / "val.txt")[0].path
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == SMALL.frames
    assert frames[0].shape == (SMALL.size, SMALL.size, 3)


def test_decoded_frames_match_the_rendered_frames(small_sets):
    root = small_sets["serial"]
    record = read_list(root / "train.txt")[0]
    name = read_classes(root / "classes.txt")[record.label]
    with VideoReader(root / record.path) as reader:
        assert reader.num_frames == SMALL.frames
        decoded = reader.get_frames(list(range(SMALL.frames))).astype(np.float64)
    rendered = render_clip(name, clip_rng(SMALL.seed, name, 0), size=SMALL.size, frames=8)
    # H.264 at crf 18 in yuv420p: close, not exact (chroma is subsampled).
    assert np.abs(decoded - rendered).mean() < 6.0


def test_project_dataset_reads_the_lists(small_sets):
    root = small_sets["serial"]
    for train in (True, False):
        dataset = build_dataset(
            root / ("train.txt" if train else "val.txt"),
            root,
            Preprocessing(num_segments=4, input_size=SMALL.size, resize=None, scales=(1.0,)),
            train=train,
            class_names=root / "classes.txt",
            uint8=True,
        )
        assert len(dataset) == len(DEFAULT_CLASSES)
        clip, label = dataset[0]
        assert clip.shape == (4, 3, SMALL.size, SMALL.size) and clip.dtype == torch.uint8
        # Training flips "moving left" into "moving right" (mirror classes), never otherwise.
        assert label in ((0, 1) if train else (0,))


def test_cli_writes_the_chosen_classes(tmp_path, capsys):
    status = tcm_main(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--classes",
            "moving_slowly",
            "moving quickly",
            "--clips-per-class",
            "4",
            "--size",
            "32",
            "--frames",
            "6",
            "--test-fraction",
            "0",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert status == 0
    assert read_classes(tmp_path / "classes.txt") == ["moving slowly", "moving quickly"]
    assert not (tmp_path / "test.txt").exists()
    assert len(read_list(tmp_path / "train.txt")) == 6
    assert "4 clips" not in capsys.readouterr().err


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="even"):
        SynthConfig(size=33)
    with pytest.raises(ValueError, match="unknown synthetic class"):
        resolve_class_names(["moving sideways"])
    with pytest.raises(ValueError, match="clips per class"):
        SynthConfig(clips_per_class=2)
    assert tcm_main(["synth", "--out", "x", "--classes", "nope", "--no-progress"]) == 2


# --------------------------------------------------------------------------------------------
# No single frame gives the class away
# --------------------------------------------------------------------------------------------

# Frames of the control classifier: CONTROL_FRAMES frames CONTROL_GAP apart.
CONTROL_FRAMES = 5
CONTROL_GAP = 2
EPOCHS = 8


class FrameClassifier(nn.Module):
    """A small CNN over ``(N, 3 * K, 16, 16)``: a frame and the differences to K - 1 later ones.

    Global average and max pooling make it translation invariant, which it needs to learn
    from a few hundred clips without memorising backgrounds.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            nn.MaxPool2d(2),
            *block(32, 48),
        )
        self.head = nn.Linear(96, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)  # (N, 48, 4, 4)
        return self.head(torch.cat([z.mean((2, 3)), z.amax((2, 3))], dim=1))


def _inputs(clips, labels, frames: int, gap: int, per_clip: int, generator):
    """Inputs ``(N * per_clip, 3 * frames, 16, 16)`` from clips ``(N, F, 3, 16, 16)``.

    Channels: frame t, then the differences between frames t + k gap and t + (k - 1) gap.
    With ``frames = 1`` the classifier sees a single frame.
    """
    count, length = clips.shape[:2]
    start = torch.randint(0, length - gap * (frames - 1), (count, per_clip), generator=generator)
    clip_index = torch.arange(count)[:, None].expand_as(start)
    picked = [clips[clip_index, start + k * gap] for k in range(frames)]
    channels = [picked[0]] + [picked[k] - picked[k - 1] for k in range(1, frames)]
    inputs = torch.cat(channels, dim=-3)  # (N, per_clip, 3 * frames, 16, 16)
    return inputs.flatten(0, 1), labels[clip_index].flatten()


def _train_and_score(train, val, frames: int, gap: int, groups: list[str]) -> dict[str, float]:
    """Within-group top-1 on val frames of a classifier trained on train frames."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = FrameClassifier(3 * frames, len(groups))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(EPOCHS):
        inputs, labels = _inputs(*train, frames, gap, 4, generator)
        order = torch.randperm(len(inputs), generator=generator)
        for batch in order.split(128):
            loss = F.cross_entropy(model(inputs[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        inputs, labels = _inputs(*val, frames, gap, 8, generator)
        logits = model(inputs)
    scores = {}
    for group in GROUPS:
        members = torch.tensor([of == group for of in groups])
        chosen = members[labels]
        classes = members.nonzero().squeeze(1)
        predicted = classes[logits[chosen][:, members].argmax(1)]
        scores[group] = (predicted == labels[chosen]).float().mean().item()
    return scores


@pytest.mark.slow
def test_single_frames_do_not_identify_the_class(tmp_path):
    config = SynthConfig(
        clips_per_class=60, size=32, frames=16, val_fraction=0.3, test_fraction=0, seed=7
    )
    write_synth_dataset(tmp_path, config, workers=2)

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        clips, labels = [], []
        for record in read_list(tmp_path / f"{split}.txt"):
            with VideoReader(tmp_path / record.path) as reader:
                clips.append(reader.get_frames(list(range(config.frames))))
            labels.append(record.label)
        video = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).float() / 255
        video = F.avg_pool2d(video.flatten(0, 1), 2).unflatten(0, video.shape[:2])
        return video, torch.tensor(labels)  # (N, F, 3, 16, 16), (N,)

    train, val = load("train"), load("val")
    groups = [CLASS_SPECS[name].group for name in config.classes]
    chance = {group: 1 / groups.count(group) for group in GROUPS}
    single = _train_and_score(train, val, 1, 0, groups)
    control = _train_and_score(train, val, CONTROL_FRAMES, CONTROL_GAP, groups)
    report = f"single frame {single}, {CONTROL_FRAMES} frames {control}, chance {chance}"
    for group in GROUPS:
        assert single[group] <= chance[group] + 0.15, report
        assert control[group] >= max(single[group], chance[group]) + 0.15, report
