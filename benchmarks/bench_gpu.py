"""TSM-ResNet-50 against TCM-TSM-ResNet-50 on a CUDA GPU: speed, memory, the correlation's share.

At Something-Something V1's recipe (8 frames of 224x224, batch 32, 174 classes), for both models:

- inference (forward under ``torch.no_grad``) and one training step as ``tcm train`` runs it
  (forward, cross-entropy, backward, gradient-norm clipping at 200, the engine's SGD update),
  in fp32 and under bf16 autocast: seconds, clips/s, and for the training step the time of one
  Something-Something V1 epoch (86,017 training clips) at that rate, data loading aside;
- peak memory of each (``torch.cuda.max_memory_allocated``, model, gradients and optimizer
  state included), every model measured alone;
- the share of TCM's training step (and of its inference) spent in MTDM's correlation and
  kernel soft-argmax, which run on the pure-PyTorch path on CUDA: the TCM model as it is,
  against the same model with ``tcm.ops.mtdm_fields`` replaced by zeros that keep the graph
  (the reduction conv, normalisation and TAM still run, forward and backward). A fused kernel
  is worth writing where this share exceeds 5%;
- ``torch.compile`` of each model: whether it compiles and runs, the compile time (first
  calls), and the speed-up over eager, inference and training step, fp32.

Contenders alternate (``side_by_side.py``) and every timed call ends with a device
synchronisation; medians are reported.

Without a CUDA device the script prints ``no CUDA device; skipped`` and exits with status 0, so
that ``make bench`` passes on machines without one. ``--device cpu`` runs the same
measurements on the CPU (slow at these sizes; with ``--tiny``, a small model and batch for a
quick check of the script itself, as ``tests/benchmarks`` does).

Usage::

    python benchmarks/bench_gpu.py [--batch 32] [--frames 8] [--size 224] [--repeats 10]
                                   [--no-compile] [--device cuda:0] [--json gpu.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import tcm
import tcm.layers.mtdm as mtdm_module
from side_by_side import median_side_by_side
from tcm.engine.config import OptimConfig
from tcm.engine.evaluation import autocast_context
from tcm.engine.optim import build_optimizer

MODELS = ("tsm_resnet50", "tcm_tsm_resnet50")
#: Clips in Something-Something V1's training split.
SSV1_TRAIN_CLIPS = 86_017
NUM_CLASSES = 174
#: Above this share of TCM's training step, a fused correlation + soft-argmax kernel pays.
FUSED_KERNEL_THRESHOLD = 0.05


@dataclass
class Settings:
    """What to measure and where; the defaults are Something-Something V1's recipe on a GPU.

    Attributes:
        device: where the models run.
        models: the baseline and the TCM model (registered names), in that order.
        batch: clips per step.
        frames: frames per clip (``num_segments``).
        size: side of the square input, in pixels.
        repeats: timed runs per contender (after ``warmup`` runs each).
        warmup: untimed runs per contender first (allocations, kernel selection).
        amp: precisions: ``"none"`` (fp32) and ``"bf16"`` (autocast).
        compile: also measure ``torch.compile`` of each model.
        compile_backend: ``torch.compile``'s backend (``"inductor"``; ``"eager"`` only traces).
        model_kwargs: further options of both models (smaller trunks for a quick check).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cuda"))
    models: tuple[str, str] = MODELS
    batch: int = 32
    frames: int = 8
    size: int = 224
    repeats: int = 10
    warmup: int = 3
    amp: tuple[str, ...] = ("none", "bf16")
    compile: bool = True
    compile_backend: str = "inductor"
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Workload:
    """One model with its optimizer and a random batch: inference and training-step calls.

    Shapes: clips ``(batch, frames, 3, size, size)``, labels ``(batch,)``.
    """

    def __init__(self, name: str, settings: Settings) -> None:
        self.device = settings.device
        self.model = tcm.create_model(
            name, num_classes=NUM_CLASSES, num_segments=settings.frames, **settings.model_kwargs
        ).to(self.device)
        self.optimizer = build_optimizer(self.model, OptimConfig(), lr=0.01)
        generator = torch.Generator().manual_seed(0)
        shape = (settings.batch, settings.frames, 3, settings.size, settings.size)
        self.clips = torch.randn(shape, generator=generator).to(self.device)
        self.labels = torch.randint(0, NUM_CLASSES, (settings.batch,), generator=generator)
        self.labels = self.labels.to(self.device)

    def inference(self, amp: str, model: torch.nn.Module | None = None) -> Callable[[], None]:
        """A call running one forward without gradients (on ``model``, default this one's)."""
        model = model if model is not None else self.model

        def run() -> None:
            model.eval()
            with torch.no_grad(), autocast_context(self.device, amp):
                model(self.clips)
            synchronize(self.device)

        return run

    def train_step(self, amp: str, model: torch.nn.Module | None = None) -> Callable[[], None]:
        """A call running one training step as the engine does (see the module docstring)."""
        model = model if model is not None else self.model
        clip_norm = OptimConfig().clip_grad_norm

        def run() -> None:
            model.train()
            with autocast_context(self.device, amp):
                logits = model(self.clips)
            F.cross_entropy(logits.float(), self.labels).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            synchronize(self.device)

        return run


@contextlib.contextmanager
def zero_mtdm_fields() -> Iterator[None]:
    """Within the block, MTDM's fields are zeros (no correlation, no soft-argmax).

    The zeros are computed from both maps, so gradients still flow back through MTDM's
    reduction and normalisation as with the real fields; only the correlation and the
    soft-argmax, forward and backward, are left out.
    """
    if not hasattr(mtdm_module, "mtdm_fields"):
        raise RuntimeError("tcm.layers.mtdm no longer calls mtdm_fields: update this benchmark")
    original = mtdm_module.mtdm_fields

    def zeros(a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return ((a[:, :3] + b[:, :3]) * 0).float()  # (B, 3, H, W)

    mtdm_module.mtdm_fields = zeros
    try:
        yield
    finally:
        mtdm_module.mtdm_fields = original


def without_fields(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run with :func:`zero_mtdm_fields`."""

    def run() -> None:
        with zero_mtdm_fields():
            fn()

    return run


def peak_memory_bytes(fn: Callable[[], None], device: torch.device) -> int | None:
    """Most memory allocated on the device during one call of ``fn`` (None off CUDA)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device)


def measure_speed(settings: Settings) -> dict[str, Any]:
    """Inference and training step of both models, side by side, per precision."""
    workloads = {name: Workload(name, settings) for name in settings.models}
    figures: dict[str, Any] = {}
    for amp in settings.amp:
        for mode in ("inference", "train_step"):
            calls = {name: getattr(w, mode)(amp) for name, w in workloads.items()}
            seconds = median_side_by_side(calls, settings.repeats, settings.warmup)
            base, with_tcm = settings.models
            figures[f"{mode}/{amp}"] = {
                "seconds": seconds,
                "clips_per_s": {name: settings.batch / s for name, s in seconds.items()},
                "tcm_over_baseline": seconds[with_tcm] / seconds[base],
            }
            if mode == "train_step":
                figures[f"{mode}/{amp}"]["ssv1_epoch_s"] = {
                    name: SSV1_TRAIN_CLIPS / settings.batch * s for name, s in seconds.items()
                }
    return figures


def measure_memory(settings: Settings) -> dict[str, Any]:
    """Peak memory of inference and training step, each model alone on the device."""
    figures: dict[str, Any] = {}
    for name in settings.models:
        workload = Workload(name, settings)
        for amp in settings.amp:
            for mode in ("inference", "train_step"):
                call = getattr(workload, mode)(amp)
                call()  # optimizer state and allocator caches exist from here on
                figures.setdefault(f"{mode}/{amp}", {})[name] = peak_memory_bytes(
                    call, settings.device
                )
        del workload
        if settings.device.type == "cuda":
            torch.cuda.empty_cache()
    return figures


def measure_fields_share(settings: Settings) -> dict[str, Any]:
    """Share of the TCM model's time spent in the correlation and soft-argmax, per precision."""
    workload = Workload(settings.models[1], settings)
    figures: dict[str, Any] = {}
    for amp in settings.amp:
        for mode in ("inference", "train_step"):
            call = getattr(workload, mode)(amp)
            seconds = median_side_by_side(
                {"real": call, "zero fields": without_fields(call)},
                settings.repeats,
                settings.warmup,
            )
            share = 1 - seconds["zero fields"] / seconds["real"]
            figures[f"{mode}/{amp}"] = {"seconds": seconds, "share": share}
    return figures


def measure_compile(settings: Settings) -> dict[str, Any]:
    """``torch.compile`` of each model: compile time and speed-up over eager, or the error."""
    figures: dict[str, Any] = {}
    for name in settings.models:
        workload = Workload(name, settings)
        try:
            torch._dynamo.config.skip_nnmodule_hook_guards = False  # as compile_model does
            compiled = torch.compile(workload.model, backend=settings.compile_backend)
            result: dict[str, Any] = {"compiles": True}
            for mode in ("inference", "train_step"):
                eager_call = getattr(workload, mode)("none")
                compiled_call = getattr(workload, mode)("none", model=compiled)
                start = time.perf_counter()
                compiled_call()  # compiles
                result[f"{mode}/compile_s"] = time.perf_counter() - start
                seconds = median_side_by_side(
                    {"eager": eager_call, "compiled": compiled_call},
                    settings.repeats,
                    settings.warmup,
                )
                result[f"{mode}/seconds"] = seconds
                result[f"{mode}/speedup"] = seconds["eager"] / seconds["compiled"]
        except Exception as error:  # report any failure to compile or to run compiled
            lines = [line for line in str(error).splitlines() if line.strip()]
            first = lines[0] if lines else ""
            result = {"compiles": False, "error": f"{type(error).__name__}: {first}"}
        figures[name] = result
        del workload
        if settings.device.type == "cuda":
            torch.cuda.empty_cache()
    return figures


def run(settings: Settings) -> dict[str, Any]:
    """Every measurement of the module docstring; a JSON-ready dict."""
    torch.manual_seed(0)
    figures: dict[str, Any] = {
        "settings": {**asdict(settings), "device": str(settings.device)},
        "device_name": (
            torch.cuda.get_device_name(settings.device) if settings.device.type == "cuda" else "cpu"
        ),
        "torch": torch.__version__,
        "speed": measure_speed(settings),
        "peak_memory_bytes": measure_memory(settings),
        "fields_share": measure_fields_share(settings),
    }
    if settings.compile:
        figures["compile"] = measure_compile(settings)
    return figures


def report(figures: dict[str, Any]) -> None:
    """Print the figures of :func:`run` as tables."""
    settings = figures["settings"]
    base, with_tcm = settings["models"]
    batch = settings["batch"]
    print(
        f"{figures['device_name']}, torch {figures['torch']}; batch {batch} x "
        f"{settings['frames']} frames x {settings['size']}x{settings['size']}, "
        f"median of {settings['repeats']}"
    )
    for key, entry in figures["speed"].items():
        mode, amp = key.split("/")
        memory = figures["peak_memory_bytes"][key]
        print(f"{mode} ({'fp32' if amp == 'none' else amp + ' autocast'}):")
        for name in (base, with_tcm):
            peak = memory[name]
            peak_text = f"{peak / 2**30:6.2f} GiB peak" if peak is not None else ""
            epoch = entry.get("ssv1_epoch_s", {}).get(name)
            epoch_text = f"  SSv1 epoch {epoch / 60:6.1f} min" if epoch is not None else ""
            print(
                f"  {name:18s} {entry['seconds'][name] * 1e3:9.1f} ms  "
                f"{entry['clips_per_s'][name]:8.1f} clips/s  {peak_text}{epoch_text}"
            )
        print(f"  {with_tcm} / {base}: {entry['tcm_over_baseline']:.3f}")
    path = "pure PyTorch" if settings["device"].startswith("cuda") else "this device's"
    print(f"MTDM correlation + soft-argmax ({path} path) in the TCM model's time:")
    for key, entry in figures["fields_share"].items():
        verdict = (
            "a fused kernel would pay"
            if key.startswith("train_step") and entry["share"] > FUSED_KERNEL_THRESHOLD
            else ""
        )
        print(f"  {key:18s} {100 * entry['share']:5.1f}%  {verdict}")
    for name, entry in figures.get("compile", {}).items():
        if not entry["compiles"]:
            print(f"torch.compile {name}: failed ({entry['error']})")
            continue
        print(
            f"torch.compile {name}: inference x{entry['inference/speedup']:.2f} "
            f"(compiled in {entry['inference/compile_s']:.0f} s), training step "
            f"x{entry['train_step/speedup']:.2f} (compiled in {entry['train_step/compile_s']:.0f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="ResNet-10 with narrow stages, batch 2 x 4 frames of 32x32 (checks the script)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; skipped")
        return
    settings = Settings(
        device=device,
        batch=args.batch,
        frames=args.frames,
        size=args.size,
        repeats=args.repeats,
        warmup=args.warmup,
        compile=not args.no_compile,
    )
    if args.tiny:
        settings = tiny_settings(device, compile=not args.no_compile)
    figures = run(settings)
    report(figures)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)


def tiny_settings(device: torch.device, compile: bool = False) -> Settings:
    """Small models and batch: every code path of :func:`run` in seconds on a CPU."""
    return Settings(
        device=device,
        models=("tsm_resnet10", "tcm_tsm_resnet10"),
        batch=2,
        frames=4,
        size=32,
        repeats=1,
        warmup=0,
        compile=compile,
        compile_backend="eager",
        model_kwargs={"widths": (8, 16, 16, 16), "stem_width": 8},
    )


if __name__ == "__main__":
    main()
