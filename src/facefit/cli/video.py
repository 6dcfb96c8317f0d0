"""``facefit video IN -o OUT``: per-frame JSON lines, an overlay video and an animated GLB.

``IN`` is a video file (any format ffmpeg decodes) or a camera index (``0``). For a file,
the identity is first fitted jointly to faces detected on frames spread over the whole clip
(a first decoding pass); for a camera it is estimated from keyframes while streaming.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from facefit.cli.common import add_camera, add_landmarks, add_max_pixels, camera_of


def register(subparsers: Any) -> None:
    """Add the ``video`` command to the ``facefit`` parser."""
    p = subparsers.add_parser(
        "video", help="track and fit a face through a video or webcam stream",
        description="Track the face in a video (or camera), fit one identity for the clip and "
                    "pose + expression per frame, smooth them over time (Kalman filter), and "
                    "write OUT/STEM.jsonl, OUT/STEM_overlay.mp4, OUT/STEM.glb (animated), "
                    "OUT/STEM.csv (ARKit blendshape weights per frame, Live Link Face layout), "
                    "OUT/STEM_arkit.glb (the 52 ARKit blendshapes as morph targets, animated) "
                    "and OUT/STEM.html (a self-contained page: video, animated mesh, plots).",
        epilog="exit codes:\n  0    done\n  1    the clip could not be read (missing, not a "
               "video,\n       truncated or corrupt: nothing is written for it), or no face "
               "in any frame\n  2    usage error\n  4    the model or the detector could not "
               "be loaded\n  5    OUT cannot be created\n  130  interrupted (Ctrl-C; a camera "
               "runs until then)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="video file, or a camera index such as 0")
    p.add_argument("-o", "--output", "--out", dest="output", required=True, metavar="OUT",
                   help="output folder (created if needed)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="morphable model file to use instead of the default BFM 2009 (3DDFA) "
                        "model, or a name 'facefit model list' prints; fitted as its kind "
                        "(FLAME: jaw and neck per frame, skinned in the GLB)")
    p.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    p.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    p.add_argument("--no-glb", action="store_true", help="do not write the animated GLB")
    p.add_argument("--no-html", action="store_true",
                   help="do not write the HTML page (OUT/STEM.html)")
    p.add_argument("--identity-frames", type=_positive_int, default=24, metavar="N",
                   help="frames spread over the clip used to fit the identity (default 24)")
    p.add_argument("--refine", choices=("none", "photometric"), default="none",
                   help="the clip's identity: none (a joint landmark fit of the identity frames) "
                        "or photometric (then a joint photometric refinement of 6 of them, "
                        "10-60 s more; on rendered clips of ICT heads the shape's NoW error "
                        "is 21 %% below the mean face's, 2 %% with landmarks alone; default "
                        "none)")
    p.add_argument("--max-frames", type=_positive_int, default=None, metavar="N",
                   help="stop after N frames (a camera runs until Ctrl-C otherwise)")
    add_landmarks(p, "frame")
    add_camera(p, "the frame diagonal, a 53° diagonal field of view; a webcam's 65-78° "
                  "field of view is 0.78-0.62 times the diagonal",
               "perspective with --focal-px, else with --refine photometric whichever of the "
               "scaled orthographic camera and a pinhole one at the frame diagonal explains "
               "the identity's keyframes better (twice the refinement's time), else scaled "
               "orthographic")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    add_max_pixels(p, "video frames larger than N pixels are refused before decoding")
    p.set_defaults(func=cmd_video, parser=p)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _err(text: str) -> int:
    print(f"facefit: error: {' '.join(text.split())}", file=sys.stderr)
    return 1


def cmd_video(args: argparse.Namespace) -> int:
    """Run ``facefit video`` (`facefit.video.pipeline.track_video`); returns the exit code."""
    from facefit.video.pipeline import track_video
    from facefit.video.stream import VideoError

    camera = camera_of(args, args.parser)
    model = None
    if args.model is not None:
        from facefit.model.bfm_3ddfa import ModelDataMissing
        from facefit.model.io_common import ModelFileError
        from facefit.model.named import load_named_model
        from facefit.reconstruct import check_model

        try:
            model = load_named_model(args.model)
            check_model(model)
        except (ModelFileError, ModelDataMissing) as exc:
            _err(str(exc))
            return 4  # the model could not be loaded
        except ValueError as exc:  # no 68 landmark ids
            _err(f"{args.model}: {exc}")
            return 4
    bar = None

    def progress(i: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True)
        bar.update(1)

    try:
        stats, files = track_video(
            args.input, args.output, model, smooth=not args.no_smooth, overlay=not args.no_overlay,
            glb=not args.no_glb, html=not args.no_html, identity_frames=args.identity_frames,
            max_frames=args.max_frames, progress=None if args.quiet else progress,
            landmarks=args.landmarks, refine=args.refine, parallel=None, camera=camera,
            focal_px=args.focal_px)
    except KeyboardInterrupt:
        return 130
    except VideoError as exc:  # unreadable, truncated or corrupt clip: nothing kept of it
        return _err(str(exc))
    except OSError as exc:
        _err(f"{args.output}: cannot create the output folder ({exc.strerror or exc})")
        return 5  # the CLI's EXIT_OUTPUT
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        stem = files.jsonl.with_suffix("")
        print(f"facefit: {stats.frames} frames, face in {stats.faces}, "
              f"{stats.detections} detections, identity from "
              f"{stats.identity_views or 'running'} frames, "
              f"{stats.fps():.1f} fps -> {stem}.*", file=sys.stderr)
    if stats.faces == 0:
        return _err(f"{args.input}: no face found in any frame")
    return 0
