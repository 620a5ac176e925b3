"""Reading a config loads neither the video decoders nor the image library."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_config_loads_no_decoder():
    code = (
        "import sys, tcm.engine.config\n"
        "print(sorted(m for m in ('av', 'PIL') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
