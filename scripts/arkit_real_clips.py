"""Check ARKit weights on real clips: ``jawOpen`` against the inner-lip gap and
``eyeBlinkLeft/Right`` against the eye aspect ratio, per frame, with a PNG plot.

Runs ``facefit video`` (its JSON lines carry ``faces[0].arkit_blendshapes``; ``--model`` is
passed on) on each clip and measures the mouth and the eyelids from MediaPipe's raw dense
points, never from the fit:

* ``tracked``: the points facefit's tracker gives each frame (`facefit.video.track
  .FaceTracker`, the fit's own input before any fitting), and
* ``detected``: a fresh MediaPipe detection of every frame (no tracking: a second,
  independent landmark estimate).

Both in 3D (x, y and MediaPipe's relative depth, so a turned head does not shorten the
gaps): the inner-lip gap is the mean of three upper/lower inner-lip pairs (13/14, 82/87,
312/317) over the outer eye-corner distance (33/263); the eye aspect ratio (EAR; after
Soukupova & Cech, "Real-Time Eye Blink Detection using Facial Landmarks", CVWW 2016) is
the mean of three upper/lower lid pairs over the eye width, per eye. Blinks: frames where
an eye's EAR falls below 85 % of the clip's median for that eye (the median is the open eye
of a clip without long closures). Prints one JSON line per clip (Pearson r of jawOpen with
both gaps; per eye: the dip frames, eyeBlink at the dips and elsewhere, r of eyeBlink with
the closure 1 - EAR / median) and writes ``OUT/STEM_arkit.png``. Usage::

    python scripts/arkit_real_clips.py OUT CLIP.mp4 [CLIP.mp4 ...] [--model NAME]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
# MediaPipe eyes: the subject's right eye (corners 33/133; ARKit "Right") and left eye
# (corners 362/263; ARKit "Left")
EYES = {"Right": ((33, 133), ((159, 145), (158, 153), (160, 144))),
        "Left": ((362, 263), ((386, 374), (385, 380), (387, 373)))}
DIP = 0.85  # an EAR under this fraction of the clip's median is a (partial) blink


def measures(points: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(4,) inner-lip gap / eye-corner distance, EAR right, EAR left, eye-corner distance
    (px), all in 3D, from (468, 2) MediaPipe points and their (468,) depth."""
    x = np.column_stack([points, depth]).astype(np.float64)

    def d(pairs: tuple[tuple[int, int], ...]) -> float:
        a, b = np.array(pairs).T
        return float(np.linalg.norm(x[a] - x[b], axis=1).mean())

    eye = d(((33, 263),))
    ears = [d(lids) / d((corners,)) for corners, lids in EYES.values()]
    return np.array([d(LIP_PAIRS) / eye, *ears, eye])


def landmark_measures(clip: Path) -> tuple[np.ndarray, np.ndarray]:
    """(F, 4) `measures` per frame from the tracker's points and from a fresh detection
    (NaN rows without a face)."""
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.video.stream import iter_frames, open_video
    from facefit.video.track import FaceTracker

    det = MediaPipeDetector()
    tracker = FaceTracker(MediaPipeDetector())
    reader, info = open_video(clip)
    tracked, detected = [], []
    for frame in iter_frames(reader, info):
        face, _ = tracker.update(frame)
        tracked.append(np.full(4, np.nan) if face is None
                       else measures(face.points_px, face.depth_px))
        faces = det.detect(frame, max_faces=1)
        detected.append(np.full(4, np.nan) if not faces
                        else measures(faces[0].points_px, faces[0].depth_px))
    return np.array(tracked), np.array(detected)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the frames where both are finite (NaN if either is constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3)


def blink_report(ear: np.ndarray, blink: np.ndarray) -> dict:
    """Dip frames of one eye's EAR and its eyeBlink weight there and elsewhere."""
    med = float(np.nanmedian(ear))
    dips = np.flatnonzero(ear < DIP * med)
    rest = np.setdiff1d(np.flatnonzero(np.isfinite(ear) & np.isfinite(blink)), dips)
    return {"ear_median": round(med, 3), "ear_min": round(float(np.nanmin(ear)), 3),
            "dip_frames": dips.tolist(),
            "blink_at_dips": [round(float(blink[i]), 2) for i in dips],
            "blink_elsewhere_median": round(float(np.nanmedian(blink[rest])), 3),
            "blink_elsewhere_p95": round(float(np.nanpercentile(blink[rest], 95)), 3),
            "blink_max_frame": int(np.nanargmax(blink)),
            "corr_blink_closure": corr(blink, 1.0 - ear / med)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("clips", type=Path, nargs="+")
    ap.add_argument("--model", default=None, help="passed on to facefit video")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = args.out
    for clip in args.clips:
        cmd = [sys.executable, "-m", "facefit.cli", "video", str(clip), "-o", str(out),
               "--no-overlay", "--no-html", "--no-glb", "-q"]
        subprocess.run(cmd + ([] if args.model is None else ["--model", args.model]),
                       check=True)
        lines = [json.loads(x) for x in (out / f"{clip.stem}.jsonl").read_text().splitlines()]
        frames = lines[1:]
        w = {k: np.array([f["faces"][0].get("arkit_blendshapes", {}).get(k, np.nan)
                          if f["faces"] else np.nan for f in frames])
             for k in ("jawOpen", "mouthClose", "eyeBlinkLeft", "eyeBlinkRight")}
        trk, det = landmark_measures(clip)
        n = min(len(trk), len(frames))
        trk, det = trk[:n], det[:n]
        w = {k: v[:n] for k, v in w.items()}
        yaw = np.array([f["faces"][0]["pose"]["yaw_deg"] if f["faces"] else np.nan
                        for f in frames[:n]])
        res = {"clip": clip.name, "model": args.model or "default", "frames": n,
               "arkit_frames": int(np.isfinite(w["jawOpen"]).sum()),
               "yaw_deg": [round(float(np.nanmin(yaw)), 1), round(float(np.nanmax(yaw)), 1)],
               "eye_corner_px": round(float(np.nanmedian(trk[:, 3])), 1),
               "corr_jawOpen_lip_tracked": corr(w["jawOpen"], trk[:, 0]),
               "corr_jawOpen_lip_detected": corr(w["jawOpen"], det[:, 0]),
               "corr_lip_tracked_detected": corr(trk[:, 0], det[:, 0]),
               "jawOpen_range": [round(float(np.nanmin(w["jawOpen"])), 3),
                                 round(float(np.nanmax(w["jawOpen"])), 3)],
               "lip_gap_range": [round(float(np.nanmin(trk[:, 0])), 3),
                                 round(float(np.nanmax(trk[:, 0])), 3)]}
        for j, side in enumerate(EYES):
            res[f"eye{side}_tracked"] = blink_report(trk[:, 1 + j], w[f"eyeBlink{side}"])
        print(json.dumps(res))
        t = np.arange(n) / float(lines[0]["fps"])
        fig, ax = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        ax[0].plot(t, w["jawOpen"], "k", label="jawOpen")
        for m, name in ((trk, "tracked"), (det, "detected")):
            gap = m[:, 0]
            ax[0].plot(t, gap / np.nanmax(gap) * np.nanmax(w["jawOpen"]), alpha=0.7,
                       label=f"inner-lip gap, {name} (scaled), r = {corr(w['jawOpen'], gap)}")
        ax[0].set_title(f"{clip.name} ({res['model']} model)")
        ax[0].legend(fontsize=7)
        for j, (side, c) in enumerate(zip(EYES, ("C0", "C1"), strict=True)):
            ear = trk[:, 1 + j]
            ax[1].plot(t, w[f"eyeBlink{side}"], c, label=f"eyeBlink{side}")
            ax[1].plot(t, 1.0 - ear / np.nanmedian(ear), c + "--", alpha=0.7,
                       label=f"{side} eye closure 1 - EAR/median (tracked)")
        ax[1].axhline(1.0 - DIP, color="0.6", lw=0.8)
        ax[1].set_xlabel("time (s)")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"{clip.stem}_arkit.png", dpi=72)
        plt.close(fig)


if __name__ == "__main__":
    main()
