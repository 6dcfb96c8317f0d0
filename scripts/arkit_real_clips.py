"""Check ARKit weights on real clips: ``jawOpen`` against the detected inner-lip gap and
``eyeBlinkLeft/Right`` against the detected eyelid gaps, per frame, with a PNG plot.

Runs ``facefit video`` (its JSON lines carry ``arkit_blendshapes``) on each clip, detects
the MediaPipe landmarks of every frame independently (inner lips 13/14, eyelids 159/145
and 386/374, normalised by the eye-corner distance 33-263), prints the Pearson correlations
and writes ``OUT/STEM_arkit.png``. Usage::

    python scripts/arkit_real_clips.py OUT CLIP.mp4 [CLIP.mp4 ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def gaps(clip: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: inner-lip gap and the two eyelid gaps (NaN without a face)."""
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.video.stream import iter_frames, open_video

    det = MediaPipeDetector()
    reader, info = open_video(clip)
    rows = []
    for frame in iter_frames(reader, info):
        faces = det.detect(frame, max_faces=1)
        if not faces:
            rows.append([np.nan] * 3)
            continue
        p = np.asarray(faces[0].points_px, np.float64)
        eye = np.linalg.norm(p[33] - p[263])
        rows.append([np.linalg.norm(p[13] - p[14]) / eye, np.linalg.norm(p[159] - p[145]) / eye,
                     np.linalg.norm(p[386] - p[374]) / eye])
    a = np.array(rows)
    return a[:, 0], a[:, 1], a[:, 2]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(sys.argv[1])
    for clip in map(Path, sys.argv[2:]):
        subprocess.run([sys.executable, "-m", "facefit.cli", "video", str(clip), "-o", str(out),
                        "--no-overlay", "--no-html", "--no-glb", "-q"], check=True)
        lines = [json.loads(x) for x in (out / f"{clip.stem}.jsonl").read_text().splitlines()]
        frames = lines[1:]
        w = {k: np.array([f.get("arkit_blendshapes", {}).get(k, np.nan) for f in frames])
             for k in ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight")}
        lip, eye_a, eye_b = gaps(clip)
        n = min(len(lip), len(frames))
        ok = ~np.isnan(lip[:n]) & ~np.isnan(w["jawOpen"][:n])
        r_jaw = float(np.corrcoef(w["jawOpen"][:n][ok], lip[:n][ok])[0, 1])
        # Blinks close the lids: the weight should rise as the (mean) eyelid gap falls.
        lids = (eye_a[:n] + eye_b[:n]) / 2
        blink = (w["eyeBlinkLeft"][:n] + w["eyeBlinkRight"][:n]) / 2
        r_blink = (float(np.corrcoef(blink[ok], -lids[ok])[0, 1])
                   if np.std(blink[ok]) > 0 else float("nan"))
        print(json.dumps({"clip": clip.name, "frames": int(n), "faces": int(ok.sum()),
                          "corr_jawOpen_inner_lip_gap": round(r_jaw, 3),
                          "jawOpen_range": [round(float(np.nanmin(w["jawOpen"])), 3),
                                            round(float(np.nanmax(w["jawOpen"])), 3)],
                          "corr_blink_minus_eyelid_gap": round(r_blink, 3),
                          "blink_max": round(float(np.nanmax(blink)), 3),
                          "eyelid_gap_range": [round(float(np.nanmin(lids)), 3),
                                               round(float(np.nanmax(lids)), 3)]}))
        t = np.arange(n) / float(lines[0]["fps"])
        fig, ax = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        ax[0].plot(t, w["jawOpen"][:n], label="jawOpen")
        ax[0].plot(t, lip[:n] / np.nanmax(lip[:n]), label="inner-lip gap (scaled)")
        ax[0].set_title(f"{clip.name}: r = {r_jaw:.2f}")
        ax[0].legend()
        ax[1].plot(t, w["eyeBlinkLeft"][:n], label="eyeBlinkLeft")
        ax[1].plot(t, w["eyeBlinkRight"][:n], label="eyeBlinkRight")
        ax[1].plot(t, 1 - lids / np.nanmax(lids), label="1 - eyelid gap (scaled)")
        ax[1].set_xlabel("time (s)")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(out / f"{clip.stem}_arkit.png", dpi=80)
        plt.close(fig)


if __name__ == "__main__":
    main()
