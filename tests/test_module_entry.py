"""``python -m facefit`` and ``python -m facefit.cli`` run the command (benchmarks and scripts
call it that way)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["facefit", "facefit.cli"])
def test_module_runs_the_command(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                         text=True, check=True)
    assert "reconstruct" in out.stdout
