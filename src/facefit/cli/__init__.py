"""The ``facefit`` command line: a thin layer over `facefit.Reconstructor` and the exporters.

``facefit reconstruct IMAGE_OR_DIR... -o OUT`` reconstructs every face of every image and
writes the chosen formats into OUT. One bad file never stops a batch: its problem is printed
as one line, ``facefit: error: PATH: problem``, and the next file is processed.

Exit codes:
    0    every input image was read and had at least one face, and its results were written
    1    some inputs failed: unreadable or corrupt image, no face found, reconstruction or
         export error (the other images are still processed)
    2    usage error (unknown or missing option, bad value, an option that would do nothing
         such as --pooling without --same-person; printed by argparse)
    3    no input images found (e.g. only empty directories were given)
    4    the model or the detector could not be loaded (missing data package: the message
         says what to install), or ``--model PATH`` could not be read or has no 68
         landmark ids
    5    OUT cannot be used: it cannot be created, or another run is using it
    130  interrupted (Ctrl-C)

Each subcommand is one module of this package with ``register(subparsers)``: `reconstruct`,
`model`, `eval`, `video` and `view` (`COMMANDS`); `common` holds the exit codes, the error
printer and the argument types they share. The commands only parse arguments and call the
library (`facefit.Reconstructor`, `facefit.export`, `facefit.track_video`, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from threadpoolctl import threadpool_limits

from facefit.batch.work import is_unavailable, one_line
from facefit.cli import eval as eval_command
from facefit.cli import model, reconstruct, video, view
from facefit.cli.common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_INPUT,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Unavailable,
    err,
    pixel_limit,
)

__all__ = [
    "COMMANDS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NO_INPUT", "EXIT_OK", "EXIT_OUTPUT",
    "EXIT_UNAVAILABLE", "EXIT_USAGE", "build_parser", "main",
]

COMMANDS = (reconstruct, model, eval_command, video, view)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        # one BLAS thread: a face's matrices are small (extra threads only spin), and
        # parallelism comes from worker processes (--jobs, facefit video's workers)
        with pixel_limit(getattr(args, "max_pixels", None)), threadpool_limits(
                1, user_api="blas"):
            return int(args.func(args))
    except SystemExit as exc:  # --help, --version, usage errors (also from a command)
        return _exit_code(exc)
    except KeyboardInterrupt:
        err("interrupted", prefix="facefit: ")
        return EXIT_INTERRUPTED
    except Unavailable as exc:
        err(str(exc))
        return EXIT_UNAVAILABLE
    except Exception as exc:
        if is_unavailable(exc) and not getattr(args, "debug", False):
            err(one_line(exc))
            return EXIT_UNAVAILABLE
        raise


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return EXIT_OK
    return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The ``facefit`` parser with every subcommand of `COMMANDS`."""
    from facefit import __version__

    parser = argparse.ArgumentParser(
        prog="facefit",
        description="Photos of faces to textured 3D faces with a 3D morphable model.",
        epilog=EXIT_CODES_HELP + "\n\nRun `facefit COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"facefit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser
