"""Device names as users write them (``auto``, ``cpu``, ``cuda``, ``cuda:1``) -> devices."""

from __future__ import annotations

import torch

#: Device types the models run on: the correlation and its kernels exist for these.
SUPPORTED_TYPES = ("cpu", "cuda")


def pick_device(name: str | torch.device, *, local_rank: int = 0, setting: str = "device"):
    """The device ``name`` means for this process.

    ``"auto"`` is CUDA when available, else the CPU; a bare ``"cuda"`` is the GPU of the
    process's ``local_rank`` (one GPU per process under ``torchrun``); ``"cuda:N"`` is GPU ``N``.

    Args:
        name: the name, or a device.
        local_rank: the process's rank on its machine.
        setting: what the user set, named in errors (``"train.device"``, ``"--device"``).

    Raises:
        ValueError: not a device name, a device type tcm does not run on (``mps``, ``xpu``,
            ``meta``, ...), or CUDA asked where it is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists every device type it knows
        raise ValueError(f"{setting} {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type not in SUPPORTED_TYPES:
        raise ValueError(
            f"{setting} {str(name)!r}: tcm runs on cpu or cuda (cuda:N), not on {device.type}"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{setting} is {str(name)!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return device
