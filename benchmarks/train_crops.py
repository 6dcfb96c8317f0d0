"""Where the network's first crop should come from, measured on training data (not on the
AFLW2000-3D dev half): real AFLW faces of every pose from ``../shared/data/train-aflw21``, each
120 px crop scaled 2x into a 450 px canvas (edge pixels replicated), so the detectors see a photo.

    python benchmarks/train_crops.py [--per-bucket 250] [--seed 2]

For a random ``--per-bucket`` crops of each |yaw| bucket (0-30, 30-60, 60+ degrees, AFLW's
yaw), runs the whole detection stage (`facefit.detect.mediapipe.MediaPipeDetector`), takes the
face that overlaps the visible points' box most, and runs the network twice (the second crop
from the first pass's landmarks, mirrored crops averaged, as `facefit.detect.network` does) from
two first crops: the box of MediaPipe's mesh (68 of its points) and the detector's own box
mapped to the 68-landmark box (`FaceLandmarks.detector_box`). Prints the mean NME per bucket on
the visible AFLW points (ear lobes excluded) in % of sqrt(w*h) of their box, the count over 15 %,
and MediaPipe's raw points for reference. The network was trained on these crops (at 120 px):
the numbers compare crops, they are not an accuracy figure.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facefit.detect.base import box_iou  # noqa: E402
from facefit.detect.mediapipe import MediaPipeDetector  # noqa: E402
from facefit.fit.correspondence import mediapipe_to_ibug68  # noqa: E402
from facefit.io.image import load_image  # noqa: E402
from facefit.regress.aflw21 import AFLW21_USABLE, load_aflw21, points21_from_68  # noqa: E402
from facefit.regress.predictor import RegressionPredictor  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train-aflw21"
BUCKETS = ((0, 30), (30, 60), (60, 1e9))
CANVAS = 450


def canvas(image: np.ndarray, points: np.ndarray, scale: float = 2.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """``image`` scaled by ``scale`` into the centre of a CANVAS px square (edges replicated),
    and its (N, 2) ``points`` moved with it."""
    h, w = image.shape[:2]
    m = np.array([[scale, 0, (CANVAS - 1) / 2 - scale * (w - 1) / 2],
                  [0, scale, (CANVAS - 1) / 2 - scale * (h - 1) / 2]])
    out = cv2.warpAffine(image, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out, points * scale + m[:, 2]


def nme21(points68: np.ndarray, gt21: np.ndarray) -> float:
    """Mean distance of the usable visible AFLW points / sqrt(w*h) of their box."""
    p = points21_from_68(np.asarray(points68, np.float64))
    v = ~np.isnan(gt21).any(1) & AFLW21_USABLE
    lo, hi = gt21[v].min(0), gt21[v].max(0)
    return float(np.linalg.norm(p[v] - gt21[v], axis=1).mean() / np.sqrt(np.prod(hi - lo)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--per-bucket", type=int, default=250)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()

    paths, pts, yaw = load_aflw21(args.data)
    rng = np.random.default_rng(args.seed)
    det, net = MediaPipeDetector(), RegressionPredictor()
    rows: dict[str, list[list[float]]] = {k: [[], [], []] for k in ("mp", "mesh", "det")}
    missed = [0, 0, 0]
    for b, (lo, hi) in enumerate(BUCKETS):
        pool = np.flatnonzero((np.abs(yaw) >= lo) & (np.abs(yaw) < hi))
        for i in rng.choice(pool, min(args.per_bucket, len(pool)), replace=False):
            image, gt = canvas(load_image(paths[i]), pts[i])
            v = ~np.isnan(gt).any(1)
            gt_box = np.r_[gt[v].min(0), gt[v].max(0)]
            faces = [f for f in det.detect(image) if f.detector_box is not None]
            if not faces:
                missed[b] += 1
                continue
            face = faces[int(np.argmax([box_iou(f.detector_box, gt_box) for f in faces]))]
            mesh68 = mediapipe_to_ibug68(face.points_px)
            rows["mp"][b].append(nme21(mesh68, gt))
            starts = {"mesh": np.r_[mesh68.min(0), mesh68.max(0)], "det": face.detector_box}
            for name, box in starts.items():
                first = net.predict_batch(image, boxes=np.asarray(box)[None], flip=False)[0]
                second = net.predict_batch(image, boxes=first.box[None])[0]
                rows[name][b].append(nme21(second.landmarks_68_px, gt))
    print(f"train-aflw21, {args.per_bucket} crops a bucket (seed {args.seed}) in {CANVAS} px "
          f"canvases; no face with a detector box: {missed}; NME % on the visible points "
          f"(mean / count over 15 %) per bucket 0-30 | 30-60 | 60+, balanced")
    names = {"mp": "MediaPipe raw -> 68", "mesh": "network from the mesh's box",
             "det": "network from the detector's box"}
    for key, name in names.items():
        cells = " | ".join(f"{100 * np.mean(r):6.2f} / {int((np.array(r) > 0.15).sum()):3d}"
                           for r in rows[key])
        bal = 100 * np.mean([np.mean(r) for r in rows[key]])
        print(f"{name:<34}{cells} | {bal:5.2f}")


if __name__ == "__main__":
    main()
