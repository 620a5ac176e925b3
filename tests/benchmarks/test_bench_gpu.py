"""benchmarks/bench_gpu.py on the CPU: every measurement runs on a tiny model, and without a
CUDA device the script skips with status 0 (``make bench`` runs it everywhere)."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench_gpu():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("bench_gpu")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_every_measurement_runs_on_the_cpu(bench_gpu, capsys):
    settings = bench_gpu.tiny_settings(torch.device("cpu"))
    figures = bench_gpu.run(settings)
    base, with_tcm = settings.models
    for key in ("inference/none", "train_step/none", "inference/bf16", "train_step/bf16"):
        speed = figures["speed"][key]
        assert set(speed["seconds"]) == {base, with_tcm}
        assert all(s > 0 for s in speed["seconds"].values())
        assert speed["clips_per_s"][base] == pytest.approx(2 / speed["seconds"][base])
        assert figures["peak_memory_bytes"][key] == {base: None, with_tcm: None}  # CUDA only
        assert math.isfinite(figures["fields_share"][key]["share"])
    epoch = figures["speed"]["train_step/none"]["ssv1_epoch_s"][base]
    assert epoch == pytest.approx(86_017 / 2 * figures["speed"]["train_step/none"]["seconds"][base])
    assert "compile" not in figures
    bench_gpu.report(figures)
    out = capsys.readouterr().out
    assert "SSv1 epoch" in out and "soft-argmax" in out


def test_zero_fields_leave_out_only_the_correlation(bench_gpu):
    mtdm = bench_gpu.mtdm_module.MTDM(16, num_segments=4, patch_size=3)
    x = torch.randn(8, 16, 6, 6, requires_grad=True)
    with bench_gpu.zero_mtdm_fields():
        fields = mtdm(x)
    assert fields.shape == (8, 6, 6, 6) and not fields.any()
    fields.sum().backward()
    assert mtdm.chnl_reduction[0].weight.grad is not None  # the graph still reaches MTDM
    assert bench_gpu.mtdm_module.mtdm_fields is not None
    assert mtdm(x).any()  # restored


def test_compile_speed_up_and_failure_are_reported(bench_gpu, monkeypatch):
    settings = bench_gpu.tiny_settings(torch.device("cpu"), compile=True)
    # The measurement logic without the minutes of a real compilation.
    monkeypatch.setattr(torch, "compile", lambda model, backend: model)
    figures = bench_gpu.measure_compile(settings)
    for name in settings.models:
        assert figures[name]["compiles"]
        assert figures[name]["inference/speedup"] > 0
        assert figures[name]["train_step/compile_s"] >= 0

    def broken(model, backend):
        raise RuntimeError("backend exploded\nstack")

    monkeypatch.setattr(torch, "compile", broken)
    figures = bench_gpu.measure_compile(settings)
    assert figures[settings.models[0]] == {
        "compiles": False,
        "error": "RuntimeError: backend exploded",
    }


def test_skips_with_status_0_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would measure it")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_gpu.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "no CUDA device; skipped"
