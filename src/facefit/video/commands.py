"""``facefit video IN -o OUT``: per-frame JSON lines, an overlay video and an animated GLB.

``IN`` is a video file (any format ffmpeg decodes) or a camera index (``0``). For a file,
the identity is first fitted jointly to faces detected on frames spread over the whole clip
(a first decoding pass); for a camera it is estimated from keyframes while streaming.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


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
               "be loaded\n  130  interrupted (Ctrl-C; a camera runs until then)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="video file, or a camera index such as 0")
    p.add_argument("-o", "--output", "--out", dest="output", required=True, metavar="OUT",
                   help="output folder (created if needed)")
    p.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    p.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    p.add_argument("--no-glb", action="store_true", help="do not write the animated GLB")
    p.add_argument("--no-html", action="store_true",
                   help="do not write the HTML page (OUT/STEM.html)")
    p.add_argument("--identity-frames", type=_positive_int, default=24, metavar="N",
                   help="frames spread over the clip used to fit the identity (default 24)")
    p.add_argument("--max-frames", type=_positive_int, default=None, metavar="N",
                   help="stop after N frames (a camera runs until Ctrl-C otherwise)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=cmd_video)


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
    """Run ``facefit video``; returns the exit code."""
    from facefit.video.stream import VideoError, VideoWriter, is_camera, iter_frames, open_video

    try:
        reader, info = open_video(args.input)
    except VideoError as exc:
        return _err(str(exc))
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reader.close()
        return _err(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})")
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.model import load_default_model
    from facefit.video.pipeline import identity_from_frames, process_frames
    from facefit.video.track import FaceTracker

    model = load_default_model()
    detector = MediaPipeDetector()
    camera = is_camera(args.input)
    stem = f"camera{args.input}" if camera else Path(args.input).stem
    outputs = [out_dir / f"{stem}.jsonl", out_dir / f"{stem}.glb",
               out_dir / f"{stem}_overlay.mp4"]
    overlay_tmp = out_dir / f".{stem}_overlay.part.mp4"  # renamed when the clip is complete
    writer = bar = None
    n_id = 0
    interrupted = False
    stats = None
    failure = None
    try:
        shape = None
        if not camera:  # first pass: identity from frames spread over the clip
            total = info.frames or 1
            if args.max_frames:
                total = min(total, args.max_frames)
            step = max(1, total // max(args.identity_frames, 1))
            r1, _ = open_video(args.input)
            sample = (f for i, f in enumerate(iter_frames(r1)) if i < total and i % step == 0)
            shape, n_id = identity_from_frames(model, detector, sample, args.identity_frames)
        if not args.no_overlay:
            writer = VideoWriter(overlay_tmp, info.fps)
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=info.frames, unit="frame", file=sys.stderr, dynamic_ncols=True)
        stats = process_frames(
            iter_frames(reader), info.fps, model, shape, FaceTracker(detector),
            jsonl_path=outputs[0],
            overlay=writer.write if writer is not None else None,
            glb_path=None if args.no_glb else outputs[1],
            smooth=not args.no_smooth, max_frames=args.max_frames,
            progress=(lambda i: bar.update(1)) if bar is not None else None)
    except KeyboardInterrupt:
        interrupted = True
    except VideoError as exc:  # truncated or corrupt clip: fail, keep nothing of it
        failure = str(exc)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    if failure is not None or interrupted or stats is None:
        overlay_tmp.unlink(missing_ok=True)  # the .jsonl and .glb are only written on success
        if failure is not None:
            return _err(f"{failure} (stopped: no results written for this clip)")
        return 130
    if writer is not None:
        os.replace(overlay_tmp, outputs[2])
    from facefit.io.arkit_export import write_live_link_csv, write_video_arkit_glb

    write_live_link_csv(outputs[0])  # STEM.csv: ARKit weights per frame (Live Link Face)
    if not args.no_glb:
        write_video_arkit_glb(outputs[0], model)  # STEM_arkit.glb: ARKit morph targets
    if not args.no_html:
        from facefit.io.html import write_video_page

        write_video_page(outputs[0])  # STEM.html: video, animated mesh, plots over time
    if not args.quiet:
        print(f"facefit: {stats.frames} frames, face in {stats.faces}, "
              f"{stats.detections} detections, identity from {n_id or 'running'} frames, "
              f"{stats.fps():.1f} fps -> {out_dir}/{stem}.*", file=sys.stderr)
    if stats.faces == 0:
        return _err(f"{args.input}: no face found in any frame")
    return 0
