"""ARKit ``eyeBlinkLeft/Right`` on a synthetic blink clip with known ground truth.

Makes a clip of a real face photo (default ``examples/astronaut.png``, cropped to the face)
whose eyelids close at known frames (`facefit.video.synthetic`: both eyes, the subject's
left eye alone, the right alone, both again; 3-6 frames at 25 fps; slight head motion),
runs the real ``facefit video`` pipeline on it (`facefit.video.pipeline.track_video`:
MediaPipe tracking, fit, ARKit solve) for each ``--model`` (``default``: the ARKit transfer
onto the default model; ``ict``: the packaged ICT model's own blendshape weights), prints one
JSON line per model with, per blink, each eye's peak frame and value, whether it falls on the
closed frames (± 1) and its ratio over the open-eye 95th percentile (and first a line with
MediaPipe's own closure of each eye, 1 - eye aspect ratio / its clip median, on the closed
frames, from the Face Mesh's lids and from the lids landmarked one eye at a time,
`facefit.detect.eyes`, which the lid shapes are solved from), and plots both curves, dotted
the per-eye lids' closure, with the closed frames shaded (``OUT/arkit_blink_synthetic.png``).
ARKit's "Left" is the subject's left eye (on the image's right). Usage::

    python scripts/arkit_blink_synthetic.py OUT [--image PHOTO] [--size 256] [--models default ict]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def run_model(clip: Path, out: Path, model_name: str) -> dict[str, np.ndarray]:
    """Per-frame eyeBlinkLeft/Right (NaN without a face) of ``facefit video`` on ``clip``."""
    from facefit.video.pipeline import track_video

    model = None
    if model_name != "default":
        from facefit.model.named import load_named_model

        model = load_named_model(model_name)
    _, files = track_video(clip, out / model_name, model, overlay=False, glb=False,
                           html=False)
    frames = [json.loads(x) for x in files.jsonl.read_text().splitlines()][1:]
    return {k: np.array([f["faces"][0].get("arkit_blendshapes", {}).get(k, np.nan)
                         if f["faces"] else np.nan for f in frames])
            for k in ("eyeBlinkLeft", "eyeBlinkRight")}


def per_eye_measures(clip: Path) -> np.ndarray:
    """(F, 4) `arkit_real_clips.measures` per frame from the tracker's points with the eyelids
    landmarked one eye at a time (`facefit.detect.eyes.EyeRefiner`)."""
    from arkit_real_clips import measures

    from facefit.detect.eyes import EyeRefiner
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.video.stream import iter_frames, open_video
    from facefit.video.track import FaceTracker

    eyes = EyeRefiner()
    tracker = FaceTracker(MediaPipeDetector())
    reader, info = open_video(clip)
    out = []
    for frame in iter_frames(reader, info):
        face, _ = tracker.update(frame)
        out.append(np.full(4, np.nan) if face is None else
                   measures(eyes.refine(frame, face).points_px, face.depth_px))
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--image", type=Path,
                    default=Path(__file__).resolve().parents[1] / "examples" / "astronaut.png")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--models", nargs="+", default=["default", "ict"])
    args = ap.parse_args()
    import imageio.v2 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facefit.video.synthetic import DEFAULT_BLINKS, blink_scores, face_crop, write_blink_clip

    args.out.mkdir(parents=True, exist_ok=True)
    image = face_crop(np.asarray(iio.imread(args.image))[..., :3], args.size)
    clip = write_blink_clip(args.out / "blink_synthetic.mp4", image, args.frames)
    fig, axes = plt.subplots(len(args.models), 1, figsize=(8, 2.4 * len(args.models) + 0.6),
                             sharex=True, squeeze=False)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from arkit_real_clips import landmark_measures

    tracked, _ = landmark_measures(clip)
    per_eye = per_eye_measures(clip)
    # MediaPipe's own eye closure per frame, 1 - EAR / clip median (columns: right, left)
    closures = {name: {s: 1.0 - m[:, j] / np.nanmedian(m[:, j])
                       for j, s in ((1, "right"), (2, "left"))}
                for name, m in (("mediapipe_closure", tracked), ("per_eye_closure", per_eye))}
    print(json.dumps({name: [
        {"frames": bl.closed_frames(), "eyes": bl.eyes,
         **{s: round(float(np.nanmax(c[bl.closed_frames()])), 3)
            for s, c in closure.items()}} for bl in DEFAULT_BLINKS]
        for name, closure in closures.items()}))
    closure = closures["per_eye_closure"]
    for ax, name in zip(axes[:, 0], args.models, strict=True):
        w = run_model(clip, args.out, name)
        rows = blink_scores(DEFAULT_BLINKS, w["eyeBlinkLeft"], w["eyeBlinkRight"])
        print(json.dumps({"model": name, "frames": len(w["eyeBlinkLeft"]),
                          "blinks": rows}))
        t = np.arange(len(w["eyeBlinkLeft"]))
        colours = {"left": "tab:blue", "right": "tab:orange"}
        for bl in DEFAULT_BLINKS:
            for s in bl.sides():
                ax.axvspan(bl.start - 0.5, bl.start + bl.length - 0.5, color=colours[s],
                           alpha=0.12 if bl.eyes == "both" else 0.22, lw=0)
        ax.plot(t, w["eyeBlinkLeft"], color=colours["left"], marker=".",
                label="eyeBlinkLeft (subject's left, image right)")
        ax.plot(t, w["eyeBlinkRight"], color=colours["right"], marker=".",
                label="eyeBlinkRight (subject's right, image left)")
        for side in ("left", "right"):
            ax.plot(t, closure[side][:len(t)], color=colours[side], ls=":", lw=1,
                    label=f"{side}-eye closure (per-eye lids), 1 - EAR / median")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("weight")
        ax.set_title(f"{name} model: shaded = eye(s) closing (blue left, orange right, "
                     "both = both)", fontsize=9)
        ax.legend(fontsize=6, loc="upper right", ncol=2)
    axes[-1, 0].set_xlabel("frame (25 fps)")
    fig.tight_layout()
    fig.savefig(args.out / "arkit_blink_synthetic.png", dpi=80)


if __name__ == "__main__":
    main()
