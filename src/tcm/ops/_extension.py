"""Build and load the C++ CPU kernels (``csrc/correlation.cpp``: the local correlation and
MTDM's fused fields, forward and backward) at first use.

The source ships with the package and is compiled by :func:`torch.utils.cpp_extension.load`
into a folder of torch's extension cache (``$TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``) named after everything the library depends on: the sources,
the CPU's instruction sets (it is built with ``-march=native``), the torch installation
(its version and location) and the sources' location. Later processes only load the cached library; a second virtual
environment on the machine gets a folder of its own, so it neither rebuilds the first's
library nor waits for its build. Processes of one installation take turns with a lock that
dies with its holder. A build that fails or was interrupted is deleted and tried once more
from scratch, with one log line saying why.

When there is no C++ compiler, no ``ninja``, or the build fails twice, :func:`load_extension`
logs one warning saying why and returns ``None``; the operators then run plain PyTorch.
``TCM_DISABLE_EXTENSIONS=1`` skips the build altogether.
"""

from __future__ import annotations

import fcntl
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
SOURCES = (SOURCE_DIR / "correlation.cpp",)
HEADERS = (SOURCE_DIR / "simd.h",)
DISABLE_ENV = "TCM_DISABLE_EXTENSIONS"
# Written last into a build folder, once the library has loaded from it.
COMPLETE_MARK = "tcm-build-complete"

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
    """``tcm_cpu_kernels_<digest>`` of the sources (content and place), the CPU and the torch
    installation."""
    import torch

    digest = hashlib.sha1()
    for path in (*SOURCES, *HEADERS):
        digest.update(path.read_bytes())
    digest.update(_cpu_fingerprint().encode())
    digest.update(f"{torch.__version__} {Path(torch.__file__).resolve().parent}".encode())
    # The build files name the sources by path: two checkouts must not rebuild each other's.
    digest.update(str(SOURCE_DIR).encode())
    return f"tcm_cpu_kernels_{digest.hexdigest()[:12]}"


def build_directory() -> Path:
    """The folder this installation's kernels are built in and loaded from."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    return Path(root) / "tcm" / _module_name()


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


def _build(folder: Path) -> ModuleType:
    from torch.utils import cpp_extension

    return cpp_extension.load(
        name=folder.name,
        sources=[str(path) for path in SOURCES],
        extra_cflags=["-O3", "-march=native", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        build_directory=str(folder),
        verbose=False,
    )


def _error_summary(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return " / ".join(lines[-3:]) if lines else repr(error)


def _build_or_load(folder: Path) -> ModuleType:
    """The kernels from ``folder``, built there first where needed; one retry from an empty
    folder when a build fails or a kept one does not load."""
    folder.mkdir(parents=True, exist_ok=True)
    # Processes of this installation take turns; the record lock is released when its holder
    # dies, so an interrupted build never blocks the next one.
    with open(folder.parent / f"{folder.name}.lock", "a+b") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        # torch's own lock file, left behind by a build that was killed: we hold the lock now.
        (folder / "lock").unlink(missing_ok=True)
        complete = (folder / COMPLETE_MARK).exists()
        if not complete:
            logger.info("tcm: compiling the C++ CPU kernels into %s (about a minute)", folder)
        try:
            module = _build(folder)
        except Exception as error:  # a failed or interrupted build: once more, from scratch
            logger.warning(
                "tcm: the kernels in %s did not %s (%s); building them again from scratch",
                folder,
                "load" if complete else "build",
                _error_summary(error),
            )
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            module = _build(folder)
        (folder / COMPLETE_MARK).touch()
        return module


def load_extension() -> ModuleType | None:
    """The compiled kernels, building them on first use; ``None`` where they are unavailable.

    Thread-safe; tries once per process and warns once when it gives up.
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
                module = _build_or_load(build_directory())
            except Exception as error:  # any build or load failure means: fall back
                reason = f"the build failed: {_error_summary(error)}"
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
