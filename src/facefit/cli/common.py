"""What every ``facefit`` subcommand shares: exit codes, the one-line error printer,
argument types and the ``--max-pixels`` limit."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    all inputs reconstructed and written
  1    some inputs failed (unreadable image, no face found, export error); the rest
       were processed
  2    usage error
  3    no input images found
  4    model or detector could not be loaded (missing data package: see the message),
       or the model has no 68 landmark ids
  5    OUT cannot be used (cannot be created, or another run is using it)
  130  interrupted"""


class Unavailable(Exception):
    """The model or the detector cannot be loaded; the message says what to install."""


MAX_PIXELS_HELP = ("images larger than N pixels are refused from their header, before "
                   "decoding (decompression bombs); accepts 3e8 (default: 1e8)")


def add_max_pixels(p: argparse.ArgumentParser, help_text: str = MAX_PIXELS_HELP) -> None:
    """The ``--max-pixels N`` option (decompression-bomb limit) on ``p``."""
    p.add_argument("--max-pixels", type=pixel_count, default=None, metavar="N",
                   help=help_text)


def pixel_count(text: str) -> int:
    """argparse type: a pixel count >= 1 (``3e8`` accepted)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of pixels: {text!r}") from None
    if not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(value)


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """``--max-pixels`` for the command's duration, through ``FACEFIT_MAX_PIXELS`` (read by
    `facefit.io.image.pixel_limit`, so worker processes see it too)."""
    from facefit.io.image import MAX_PIXELS_ENV

    if max_pixels is None:
        yield
        return
    saved = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(max_pixels)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = saved


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int_arg(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def texture_int(text: str) -> int:
    """argparse type: a texture size, 0 (none) or >= 2."""
    value = int_arg(text)
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (no texture) or at least 2, got {text}")
    return value


def int_arg(text: str) -> int:
    """argparse type: an integer, with a one-line message otherwise."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def err(text: str, prefix: str = "facefit: error: ") -> None:
    """Print one line to stderr (``facefit: error: TEXT``)."""
    print(prefix + text, file=sys.stderr)


def can_encode(text: str) -> bool:
    """Whether stderr's encoding can print ``text``."""
    try:
        text.encode(getattr(sys.stderr, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def plural(n: int, word: str) -> str:
    """``"1 image"``, ``"2 images"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def add_landmarks(p: argparse.ArgumentParser, what: str) -> None:
    """``--landmarks {auto,mediapipe,network}`` (`facefit.detect.network.landmark_detector`)."""
    from facefit.detect.network import SOURCES

    p.add_argument("--landmarks", choices=SOURCES, default="auto",
                   help=f"landmark source per {what}: MediaPipe's dense mesh, facefit's own "
                        "network (68 points, trained on turned heads) or auto (MediaPipe near "
                        "frontal, the network for turned heads; MediaPipe for FLAME, bilinear "
                        "and ICT models); the JSON records each face's landmark_source "
                        "(default: auto)")


def add_camera(p: argparse.ArgumentParser, default_focal: str, auto: str) -> None:
    """``--camera`` (default ``auto``, whose rule ``auto`` states) and ``--focal-px``, the
    fit's camera model (``facefit reconstruct``, ``facefit video``; ``default_focal`` says
    where the focal length comes from without ``--focal-px``); `camera_of` reads them."""
    from facefit.fit.camera import CAMERA_ALIASES, CAMERA_CHOICES

    p.add_argument("--camera", type=lambda text: CAMERA_ALIASES.get(text, text),
                   choices=CAMERA_CHOICES, default="auto",
                   help="camera model of the fit: scaled_orthographic ('orthographic' is "
                        "accepted for it), perspective (a pinhole camera, for close-ups such "
                        f"as selfies and webcams) or auto: {auto} (default: auto)")
    p.add_argument("--focal-px", type=positive_float, default=None, metavar="F",
                   help="focal length in pixels for the perspective camera (default: "
                        f"{default_focal})")


def camera_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The camera `add_camera`'s options ask for: perspective when ``--focal-px`` is given
    with ``auto``; ``--focal-px`` with ``--camera scaled_orthographic`` is a usage error
    (exit 2: an option that would do nothing)."""
    if args.camera == "scaled_orthographic" and args.focal_px is not None:
        parser.error("--focal-px needs --camera perspective")
    if args.camera == "auto" and args.focal_px is not None:
        return "perspective"
    return args.camera


def add_close_ups(p: argparse.ArgumentParser) -> None:
    """``--focal-px F`` (the shape benchmark's photos taken by a pinhole camera of that focal
    length, `facefit.synthetic.photos.close_up`) and ``--camera`` (the fits' camera), as
    ``facefit eval shape`` and ``benchmarks/shape.py`` take them."""
    from facefit.fit.camera import CAMERA_CHOICES

    p.add_argument("--focal-px", type=positive_float, default=None, metavar="F",
                   help="take the photos (or --clip frames) with a pinhole camera of this "
                        "focal length in pixels (the photo side: a face 0.6 of it wide has its "
                        "nose tip about 18 cm from the lens; twice that, 49 cm); default "
                        "scaled orthographic")
    p.add_argument("--camera", choices=CAMERA_CHOICES, default="scaled_orthographic",
                   help="camera of the fits, as `facefit reconstruct --camera` and `facefit "
                        "video --camera` (perspective: with the photos' focal length, as a "
                        "photo's EXIF gives it, else the image diagonal; auto: one photo's "
                        "refinement tries the scaled orthographic camera and a pinhole one at "
                        "the image diagonal, as for a photo without EXIF, and keeps the one "
                        "that explains the pixels better)")


def load_model_arg(path: Path) -> Any:
    """Read ``--model PATH_OR_NAME`` (`facefit.model.named.load_named_model`: a file, or a
    name ``facefit model list`` prints) and check that it has 68 landmark ids
    (`facefit.reconstruct.check_model`), before any image is processed."""
    from facefit.batch.work import one_line
    from facefit.model.named import load_named_model
    from facefit.reconstruct import check_model

    try:
        model = load_named_model(path)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        text = one_line(exc)
        if text.startswith(f"{path}: "):  # already "PATH: problem" (ModelFileError)
            raise Unavailable(text) from exc
        raise Unavailable(f"{path}: cannot load the model ({text})") from exc
    try:
        check_model(model)
    except ValueError as exc:
        raise Unavailable(f"{path}: {one_line(exc)}") from exc
    return model
