"""Build and load the C++ CPU kernels (``csrc/``: the correlation and soft-argmax in
``correlation.cpp``, batch norm + ReLU in ``batch_norm_relu.cpp``, the channel normalisation
and TAM's narrow 3x3 convolutions) at first use.

The source ships with the package and is compiled once per machine by
:func:`torch.utils.cpp_extension.load` into torch's extension cache
(``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``); later imports only load
the cached library. It is compiled with ``-O3 -march=native -fopenmp``, so the library's name
carries a fingerprint of the CPU's instruction sets and of the sources (headers included): a cache shared between
different machines never hands one of them code for the other's CPU.

When there is no C++ compiler, no ``ninja``, or the build fails, :func:`load_extension` logs
one warning saying why and returns ``None``; the operators then run on the pure-PyTorch path.
``TCM_DISABLE_EXTENSIONS=1`` skips the build altogether.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import threading
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = (
    SOURCE_DIR / "correlation.cpp",
    SOURCE_DIR / "batch_norm_relu.cpp",
    SOURCE_DIR / "normalize_channels.cpp",
    SOURCE_DIR / "narrow_conv3x3.cpp",
    SOURCE_DIR / "attention_add.cpp",
)
HEADERS = (
    SOURCE_DIR / "attention_add.h",
    SOURCE_DIR / "batch_norm_relu.h",
    SOURCE_DIR / "normalize_channels.h",
    SOURCE_DIR / "narrow_conv3x3.h",
    SOURCE_DIR / "simd.h",
)
DISABLE_ENV = "TCM_DISABLE_EXTENSIONS"

_lock = threading.Lock()
_state: dict[str, object] = {}  # "module" once loaded, "error" once it failed


def extensions_disabled() -> bool:
    """Whether ``TCM_DISABLE_EXTENSIONS`` asks for the pure-PyTorch path only."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _cpu_fingerprint() -> str:
    """Instruction-set flags of this CPU (``-march=native`` depends on them)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _module_name() -> str:
    digest = hashlib.sha1()
    for path in (*SOURCES, *HEADERS):
        digest.update(path.read_bytes())
    digest.update(_cpu_fingerprint().encode())
    return f"tcm_cpu_kernels_{digest.hexdigest()[:12]}"


def _missing_tools() -> str | None:
    """Why the extension cannot be built here, or ``None`` when it can be tried."""
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler found ({compiler!r} is not on PATH; set CXX or install g++)"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    missing = [path for path in (*SOURCES, *HEADERS) if not path.is_file()]
    if missing:
        return f"the kernel source {missing[0]} is missing from the installation"
    return None


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    name = _module_name()
    logger.info("tcm: loading the C++ CPU kernels %s (compiled on first use, about a minute)", name)
    return cpp_extension.load(
        name=name,
        sources=[str(path) for path in SOURCES],
        extra_cflags=["-O3", "-march=native", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        verbose=False,
    )


def load_extension() -> ModuleType | None:
    """The compiled kernels, building them on first use; ``None`` where they are unavailable.

    Thread-safe; tries at most once per process and warns once when it gives up.
    """
    if extensions_disabled():
        return None
    with _lock:
        if "module" in _state:
            return _state["module"]  # type: ignore[return-value]
        if "error" in _state:
            return None
        reason = _missing_tools()
        module = None
        if reason is None:
            try:
                module = _build()
            except Exception as error:  # any build or load failure means: fall back
                lines = [line for line in str(error).splitlines() if line.strip()]
                reason = f"the build failed: {' / '.join(lines[-3:]) if lines else error!r}"
        if module is None:
            _state["error"] = reason
            logger.warning(
                "tcm: the C++ CPU kernels are unavailable (%s); the local correlation and "
                "MTDM run on the pure-PyTorch path, several times slower. Set %s=1 to "
                "silence this.",
                reason,
                DISABLE_ENV,
            )
            return None
        _state["module"] = module
        return module


def extension_error() -> str | None:
    """Why the last :func:`load_extension` gave up, if it did."""
    return _state.get("error")  # type: ignore[return-value]
