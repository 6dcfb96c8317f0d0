"""Face detection on AFLW2000-3D and on background images: misses, wrong faces, invented faces.

    python benchmarks/detection.py ../shared/data/aflw2000-3d-dev [--no-profile] [--limit N]

Runs `facefit.detect.mediapipe.MediaPipeDetector` (the whole detection stage of the pipeline:
BlazeFace, then the MTCNN profile fallback unless ``--no-profile``, then the crop search) on
every image and counts, per |yaw| bucket (0-30, 30-60, 60+ degrees, ``Pose_Para``):

* missed: no face returned;
* wrong: the best face's landmark box overlaps the annotated 68 points' box with IoU under
  `facefit.eval.predictions.ANOTHER_FACE_IOU` (0.1; a face found somewhere else: there is one
  annotated face per image);

then runs the detector on background images (``--backgrounds N``): random crops of the same
photos that stay clear of the annotated face (its 68-point box grown 1.5x), resized to
256 px, plus uniform, noise and smooth-texture images; every face returned there is invented;
and on pairs (``--pairs N``): a whole photo scaled to 150 px (its face about 50 px) beside
another photo's face enlarged to 300 px, counting per |yaw| bucket of the large face how often
each face is found (a close face must not hide a distant one); and on turned photos
(``--turned K``: every K-th photo turned by ``--turn-deg``, 180° by default, or 90° / 270°
anticlockwise), per |yaw| bucket, how many faces are missed, found elsewhere, and found
in a turned photo (`FaceLandmarks.found_turned`), with the
68-point NME of the default pipeline's landmarks (``auto`` and the landmark fit; NME as in
`benchmarks/aflw2000.py`, over the faces found on the annotated one). Prints ms per image.
AFLW2000-3D is for validation only: nothing here trains on it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.io as sio

from facefit.detect.base import box_iou
from facefit.detect.mediapipe import MediaPipeDetector
from facefit.eval.predictions import ANOTHER_FACE_IOU

BUCKETS = ((0, 30), (30, 60), (60, 1e9))


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """RGB image, (68, 2) annotated points, |yaw| degrees."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"{path}: cannot read image")
    mat = sio.loadmat(str(path.with_suffix(".mat")))
    yaw = abs(float(np.degrees(mat["Pose_Para"].ravel()[1])))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), mat["pt3d_68"][:2].T.astype(np.float32), yaw


def backgrounds(images: list[tuple[np.ndarray, np.ndarray]], n: int,
                seed: int = 0) -> list[np.ndarray]:
    """``n`` face-free 256 px images: crops of ``images`` (image, 68 points) away from the face,
    and synthetic uniform / noise / smooth-texture images (one in four)."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        if len(out) % 4 == 3:
            kind = len(out) // 4 % 3
            if kind == 0:
                im = np.full((256, 256, 3), rng.integers(0, 256, 3), np.uint8)
            elif kind == 1:
                im = rng.integers(0, 256, (256, 256, 3)).astype(np.uint8)
            else:
                small = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
                im = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
            out.append(im)
            continue
        image, pts = images[rng.integers(len(images))]
        h, w = image.shape[:2]
        c, half = (pts.min(0) + pts.max(0)) / 2, (pts.max(0) - pts.min(0)) * 0.75
        face = np.concatenate([c - half, c + half])
        side = int(rng.integers(96, min(h, w) // 2 + 1))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if box_iou(np.array([x0, y0, x0 + side, y0 + side], float), face[None])[0] > 0:
            continue
        out.append(cv2.resize(image[y0:y0 + side, x0:x0 + side], (256, 256)))
    return out


def pairs(images: list[tuple[np.ndarray, np.ndarray, float]], n: int, seed: int = 0
          ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """``n`` (600 x 300 image, small face box, large face box, |yaw| of the large face): a
    photo of ``images`` (image, 68 points, |yaw|) scaled to 150 x 150 in the middle of the
    grey left half, another's face (its 68-point box grown 1.4x, square) enlarged to 300 x 300
    on the right."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(images), 2, replace=False)
        (small, ps, _), (large, pl, yaw) = images[i], images[j]
        canvas = np.full((300, 600, 3), 128, np.uint8)
        k = 150 / np.array(small.shape[1::-1], float)
        canvas[75:225, 75:225] = cv2.resize(small, (150, 150), interpolation=cv2.INTER_AREA)
        c, half = (pl.min(0) + pl.max(0)) / 2, (pl.max(0) - pl.min(0)).max() * 0.7
        m = np.array([[150 / half, 0, 150 - 150 / half * c[0]],
                      [0, 150 / half, 150 - 150 / half * c[1]]])
        canvas[:, 300:] = cv2.warpAffine(large, m, (300, 300), flags=cv2.INTER_CUBIC,
                                         borderMode=cv2.BORDER_REPLICATE)
        box_s = np.concatenate([ps.min(0) * k, ps.max(0) * k]) + 75
        box_l = np.concatenate([m[:, :2] @ pl.min(0) + m[:, 2], m[:, :2] @ pl.max(0) + m[:, 2]])
        out.append((canvas, box_s, box_l + [300, 0, 300, 0], yaw))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the detection table as JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--no-profile", action="store_true", help="BlazeFace + crop search only")
    ap.add_argument("--profile-score", type=float, default=0.75)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--backgrounds", type=int, default=200)
    ap.add_argument("--pairs", type=int, default=0,
                    help="also N small-face-beside-a-large-face images (see the docstring)")
    ap.add_argument("--turned", type=int, default=0,
                    help="also every K-th photo turned by --turn-deg (see the docstring)")
    ap.add_argument("--turn-deg", type=int, default=180, choices=(90, 180, 270))
    args = ap.parse_args(argv)
    files = sorted(args.data.glob("*.jpg"))[: args.limit or None]
    if not files:
        raise SystemExit(f"{args.data}: no .jpg images")
    det = MediaPipeDetector(profile=not args.no_profile, profile_score=args.profile_score)
    stats = {b: {"n": 0, "missed": 0, "wrong": 0} for b in BUCKETS}
    missed_names, seconds, kept = [], 0.0, []
    for f in files:
        image, pts, yaw = _load(f)
        kept.append((image, pts, yaw))
        t0 = time.perf_counter()
        faces = det.detect(image)
        seconds += time.perf_counter() - t0
        s = stats[next(b for b in BUCKETS if b[0] <= yaw < b[1])]
        s["n"] += 1
        if not faces:
            s["missed"] += 1
            missed_names.append(f.stem)
            continue
        gt = np.concatenate([pts.min(0), pts.max(0)])
        if box_iou(faces[0].box.astype(float), gt[None].astype(float))[0] < ANOTHER_FACE_IOU:
            s["wrong"] += 1
    n = len(files)
    for (lo, hi), s in stats.items():
        print(json.dumps({"bucket": f"{lo}-{hi if hi < 1e9 else 90}", **s}))
    total = {k: sum(s[k] for s in stats.values()) for k in ("n", "missed", "wrong")}
    print(json.dumps({"bucket": "all", **total, "missed_pct": round(100 * total["missed"] / n, 2),
                      "ms_per_image": round(1000 * seconds / n, 1), "missed_images": missed_names}))
    bg = backgrounds([(im, p) for im, p, _ in kept], args.backgrounds)
    t0 = time.perf_counter()
    invented = sum(len(det.detect(im)) > 0 for im in bg)
    ms = 1000 * (time.perf_counter() - t0) / max(len(bg), 1)
    print(json.dumps({"backgrounds": len(bg), "images_with_invented_faces": invented,
                      "ms_per_image": round(ms, 1)}))
    if args.pairs:
        found = {b: [0, 0, 0] for b in BUCKETS}  # pairs, small face found, large face found
        for canvas, box_s, box_l, yaw in pairs(kept, args.pairs):
            boxes = [f.box.astype(float) for f in det.detect(canvas)]
            c = found[next(b for b in BUCKETS if b[0] <= yaw < b[1])]
            c[0] += 1
            for k, box in ((1, box_s), (2, box_l)):
                c[k] += bool(boxes) and max(box_iou(box, np.stack(boxes))) >= 0.3
        for (lo, hi), (n_p, s_f, l_f) in found.items():
            print(json.dumps({"pairs_bucket": f"{lo}-{hi if hi < 1e9 else 90}", "pairs": n_p,
                              "small_found": int(s_f), "large_found": int(l_f)}))
    if args.turned:
        turned(det, kept[::args.turned], args.turn_deg // 90)
    return 0


def turned(det: MediaPipeDetector, photos: list[tuple[np.ndarray, np.ndarray, float]],
           quarters: int = 2) -> None:
    """Print, per |yaw| bucket, what the pipeline makes of ``photos`` (image, 68 points,
    |yaw|) turned anticlockwise by ``quarters`` x 90 degrees (`np.rot90`)."""
    from facefit.detect.network import NetworkLandmarkDetector
    from facefit.fit.landmark_fit import fit_landmarks
    from facefit.fit.points_aflw import with_aflw_convention
    from facefit.model.bfm_3ddfa import load_default_model

    model = load_default_model()
    auto = NetworkLandmarkDetector(det, "auto", model=model)
    stats = {b: {"n": 0, "missed": 0, "wrong": 0, "found_turned": 0, "nme": []} for b in BUCKETS}
    for image, pts, yaw in photos:
        img, gt = np.ascontiguousarray(np.rot90(image, quarters)), pts.astype(np.float64)
        for q in range(quarters):  # one anticlockwise turn: (x, y) -> (y, width - 1 - x)
            width = image.shape[1 - q % 2]
            gt = np.column_stack([gt[:, 1], width - 1 - gt[:, 0]])
        s = stats[next(b for b in BUCKETS if b[0] <= yaw < b[1])]
        s["n"] += 1
        faces = det.detect(img)
        if not faces:
            s["missed"] += 1
            continue
        box = np.concatenate([gt.min(0), gt.max(0)])
        ious = [box_iou(f.box.astype(float), box[None])[0] for f in faces]
        face = faces[int(np.argmax(ious))]
        if max(ious) < ANOTHER_FACE_IOU:
            s["wrong"] += 1
            continue
        s["found_turned"] += face.found_turned
        aface = auto.landmark_faces(img, [face])[0]
        fit = with_aflw_convention(model, fit_landmarks(model, aface, img.shape[1::-1]), aface)
        d = np.sqrt(np.prod(gt.max(0) - gt.min(0)))
        s["nme"].append(100 * np.linalg.norm(fit.landmarks_68_2d - gt, axis=1).mean() / d)
    for (lo, hi), s in stats.items():
        nme = np.asarray(s.pop("nme"))
        print(json.dumps({"turned_deg": 90 * quarters,
                          "turned_bucket": f"{lo}-{hi if hi < 1e9 else 90}", **s,
                          "auto_fit_nme_pct": round(float(nme.mean()), 2) if len(nme) else None,
                          "nme_over_8pct": int((nme > 8).sum())}))


if __name__ == "__main__":
    raise SystemExit(main())
