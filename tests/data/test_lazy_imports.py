"""What importing the data package costs: frame names load no decoder, and the package's
names import their modules on first use."""

from __future__ import annotations

import subprocess
import sys

import tcm.data


def test_frame_names_load_no_decoder():
    """Configurations read frame templates without loading PyAV, PIL or torch."""
    code = (
        "import sys, tcm.data.frame_names, tcm.data\n"
        "print(' '.join(m for m in ('av', 'PIL', 'torch') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == ""


def test_package_names_import_on_first_use():
    code = (
        "import sys, tcm.data\n"
        "assert 'av' not in sys.modules\n"
        "from tcm.data import VideoReader, BadVideoError\n"
        "print(VideoReader.__module__, 'av' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["tcm.data.video_reader", "True"]
    assert sorted(dir(tcm.data)) == sorted(tcm.data.__all__)
    for name in tcm.data.__all__:
        assert getattr(tcm.data, name) is not None
