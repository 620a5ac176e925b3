"""Shared test fixtures: paths to ../shared, skipped cleanly where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder beside the repository (golden files, real clips)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (golden files and real clips live there)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir) -> Path:
    """``shared/data``: the real clips and frame folders."""
    data = shared_dir / "data"
    if not data.is_dir():
        pytest.skip(f"shared test data not found at {data}")
    return data


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """An empty folder this process cannot write in: ``chmod 555`` for a normal user; for root,
    whom permissions do not stop, a read-only tmpfs mounted there (skipped where root may not
    mount)."""
    import os
    import subprocess

    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"running as root, and a read-only tmpfs cannot be mounted: {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
