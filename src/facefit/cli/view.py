"""``facefit view OUT_DIR``: (re)build the HTML pages of an output folder from the files in
it (`facefit.io.html.build_pages`): one page per image and per clip, and ``index.html``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_HELP = """\
exit codes:
  0  pages written
  1  the folder holds no facefit outputs, or a page could not be written
  2  usage error (OUT_DIR missing or not a folder)"""


def register(subparsers: Any) -> None:
    """Add the ``view`` command to the ``facefit`` parser."""
    p = subparsers.add_parser(
        "view", help="build self-contained HTML pages for an output folder",
        description="Build one self-contained HTML page per image (STEM.json) and per video "
                    "clip (STEM.jsonl) in OUT_DIR, plus index.html: photo with the overlay, the "
                    "textured mesh to turn and zoom (WebGL, no network), pose, landmarks and "
                    "coefficients; for clips the overlay video, the animated mesh and plots.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="a folder written by facefit reconstruct "
                   "or facefit video")
    p.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    """Run ``facefit view``; returns the exit code."""
    from pathlib import Path

    from facefit.io.html import build_pages

    folder = Path(args.out_dir)
    if not folder.is_dir():
        print(f"facefit: error: {folder}: not a folder", file=sys.stderr)
        return 2
    try:
        pages = build_pages(folder)
    except OSError as exc:
        print(f"facefit: error: {folder}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not pages:
        print(f"facefit: error: {folder}: no facefit outputs (STEM.json or STEM.jsonl) found",
              file=sys.stderr)
        return 1
    for page in pages:
        print(page)
    return 0
