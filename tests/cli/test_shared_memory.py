"""A /dev/shm too small for the loaders' prefetched batches stops a run before it starts, with
one line saying what to do (never a bus error in a worker)."""

from __future__ import annotations

import pytest
from test_bad_inputs import _write_checkpoint, refused, train_args, write_config

from tcm.engine import shared_memory
from tcm.engine.config import RunConfig
from tcm.errors import ConfigError

DOCKER_DEFAULT = 64 * 2**20  # bytes of /dev/shm in a container started without --shm-size


def _kinetics_like(**overrides) -> RunConfig:
    base = {
        "model": {"num_segments": 8},
        "data": {"batch_size": 8, "input_size": 224, "num_workers": 4, "val_list": "val.txt"},
        "eval": {"batch_size": 4, "num_clips": 1, "num_crops": 1},
    }
    return RunConfig.from_dict(base).replace(overrides)


def test_the_requirement_of_a_224_pixel_run():
    cfg = _kinetics_like()
    batch = 8 * 8 * 3 * 224 * 224 * 4  # (N, T, 3, S, S) float32
    assert shared_memory.batch_bytes(cfg, training=True) == batch == 38_535_168
    # 4 training workers x 2 batches ahead + the one in use, and the validation loader's
    need = (4 * 2 + 1) * batch + (4 * 2 + 1) * batch // 2
    assert shared_memory.loader_shared_memory(cfg) == need
    assert shared_memory.loader_shared_memory(cfg, processes=8) == 8 * need
    assert shared_memory.loader_shared_memory(cfg.replace({"data.num_workers": 0})) == 0


def test_a_docker_default_shm_is_refused_with_what_to_do():
    cfg = _kinetics_like()
    with pytest.raises(ConfigError) as error:
        shared_memory.check_shared_memory(cfg, available=DOCKER_DEFAULT)
    message = str(error.value)
    assert "\n" not in message and message.startswith("/dev/shm has 67 MB free")
    assert "need about 520 MB" in message and "--shm-size=1g" in message
    assert "data.num_workers=0" in message  # not even one worker's two batches fit
    roomy = 2 * shared_memory.loader_shared_memory(cfg)
    shared_memory.check_shared_memory(cfg, available=roomy)  # no error
    with pytest.raises(ConfigError, match=r"data.num_workers=1\b"):
        shared_memory.check_shared_memory(cfg, available=250 * 10**6)


def test_the_measured_size_is_free_space():
    measured = shared_memory.shared_memory_size()
    assert measured is None or measured >= 0
    assert shared_memory.shared_memory_size("/no/such/folder") is None


def test_tcm_train_and_test_stop_before_a_bus_error(tiny_set, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shared_memory, "shared_memory_size", lambda: 100_000)
    config = write_config(tmp_path / "c.yaml", tiny_set, **{"data.num_workers": 2})
    # 4 clips x 4 frames x 3 x 32 x 32 float32 = 196,608 bytes a batch, 5 of them per loader
    refused(capsys, train_args(config, tmp_path / "run"), "/dev/shm has 0 MB free", "--shm-size")
    assert not (tmp_path / "run").exists()
    checkpoint = tmp_path / "model.pt"
    _write_checkpoint(tiny_set, checkpoint)
    refused(capsys, ["test", config, "--checkpoint", checkpoint], "data.num_workers=0")
    settings = ["--set", "data.num_workers=0"]  # no worker: no shared memory needed
    assert not refused_or_ran(capsys, ["test", config, "--checkpoint", checkpoint, *settings])


def refused_or_ran(capsys, argv) -> bool:
    """Run ``tcm ARGV``; whether it failed."""
    from tcm.cli.main import main

    code = main([str(a) for a in argv])
    capsys.readouterr()
    return code != 0
