"""Build the MediaPipe-468 ↔ default-model correspondence from annotated photos.

Data: the 300-W training faces with 68-point annotations (``../shared/data/train-300w``:
LFPW train, AFW, half of HELEN train; 2,012 crops). Not the HELEN test set, which the 300-W
benchmark scores (until 2026-12-02 the map was built on it, flattering that benchmark: HELEN
NME 5.583 % with it, 5.738 % with this one; AFLW2000-3D dev auto 5.93 → 5.94 %).
For each photo: MediaPipe's 468 points are detected, and the default model is fitted to the
*annotated* 68 points, each on its landmark vertex (only near-frontal fits are used below,
where the annotated jaw line and the model's jaw vertices coincide). On those fits, every
MediaPipe point is matched to the front-most model vertex under it; over all photos the matched
positions (in the mean face's frame) are combined by their median, snapped to the nearest
vertex, and their spread gives the point's weight. Face-oval points below the eyes become
contour (silhouette) landmarks. Also learned: each iBUG point as a weighted mean of its
three best MediaPipe points (least squares over all photos), used for models without a
dense correspondence and as the "raw MediaPipe" baseline; and where 300-W's annotators put
the 51 inner iBUG points on the surface: the near-frontal photos are fitted again, now to
their MediaPipe points through the new correspondence (as facefit fits them), and each
annotated point is matched to the front-most vertex under it, median over photos, snapped
(``ibug300w_vertex_ids``; the 3DDFA landmark vertices of the AFLW2000-3D convention differ
from it by 1-4 mm at the brows and the nose).

Run: ``python scripts/build_mediapipe_correspondence.py [--data DIR]`` (about 70 s); writes
``src/facefit/fit/data/mediapipe468_bfm3ddfa.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from facefit.detect.mediapipe import MediaPipeDetector
from facefit.eval.datasets import read_pts
from facefit.fit.correspondence import DATA, LandmarkCorrespondence
from facefit.fit.landmark_fit import fit_landmarks, fit_points
from facefit.io.image import load_image
from facefit.model import load_default_model

# MediaPipe's face oval (the outline of its 468-point mesh), from its topology tables.
FACE_OVAL = [10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172,
             176, 234, 251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389,
             397, 400, 454]


def surface_points(model, frontal: list, corr: LandmarkCorrespondence) -> np.ndarray:
    """(68,) vertex ids where the annotated points of the photos ``frontal`` (a list of
    (MediaPipe face, (68, 2) annotation, image size)) lie on the fitted surfaces: each photo is
    fitted to its MediaPipe points through ``corr``; each annotated point takes the front-most
    vertex within 0.75 mm of the nearest under it; positions in the mean face, median, snapped."""
    picks = []
    for face, gt, size in frontal:
        fit = fit_landmarks(model, face, size, correspondence=corr)
        xy, depth = fit.verts_px[:, :2], fit.verts_px[:, 2]
        dist, idx = cKDTree(xy).query(gt, k=40)
        near = dist <= dist[:, :1] + 0.75 * fit.scale
        front = np.where(near, depth[idx], np.inf).argmin(1)
        picks.append(idx[np.arange(len(idx)), front])
    med = np.median(model.mean[np.stack(picks)], axis=0)
    return cKDTree(model.mean).query(med)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared/data/train-300w")
    ap.add_argument("--max-yaw", type=float, default=30.0)
    ap.add_argument("--max-spread", type=float, default=4.0,
                    help="drop MediaPipe points whose matched vertex varies more (mm, median)")
    ap.add_argument("--no-contour", dest="contour", action="store_false",
                    help="leave the oval points below the eyes out instead of making them "
                         "silhouette landmarks (matched on the occluding side of turned heads, "
                         "`facefit.fit.contour.match_contour`); they measured better on "
                         "AFLW2000-3D dev and HELEN")
    args = ap.parse_args()
    model = load_default_model()
    det = MediaPipeDetector()
    picks, mp_all, gt_all, frontal = [], [], [], []
    for pts_file in sorted(args.data.glob("*.pts")):
        gt = read_pts(pts_file)
        image = load_image(pts_file.with_suffix(".jpg"))
        faces = det.detect(image)
        if not faces:
            continue
        centre = gt.mean(0)
        face = min(faces, key=lambda f: np.linalg.norm(f.points_px.mean(0) - centre))
        iod = np.linalg.norm(gt[45] - gt[36])
        if np.linalg.norm(face.points_px.mean(0) - centre) > iod:
            continue
        size = float(np.sqrt(np.prod(gt.max(0) - gt.min(0))))
        shape, expr, pose, rms, _ = fit_points(
            model, gt, model.landmark_ids["ibug68"], None, None,
            landmark_sigma_px=0.03 * size, iterations=6)
        mp_all.append(face.points_px / iod)
        gt_all.append(gt / iod)
        yaw = np.degrees(np.arcsin(np.clip(-pose.rotation[2, 0], -1, 1)))
        if abs(yaw) > args.max_yaw:
            continue
        verts = model.vertices(shape, expr)
        xy, depth = pose.project(verts)
        dist, idx = cKDTree(xy).query(face.points_px, k=40)
        near = dist <= dist[:, :1] + 0.75 * pose.scale  # within 0.75 mm of the nearest
        front = np.where(near, depth[idx], np.inf).argmin(1)
        picks.append(idx[np.arange(len(idx)), front])
        frontal.append((face, gt, image.shape[1::-1]))
    picks_a = np.stack(picks)  # (n_images, 468)
    print(f"{len(mp_all)} photos with a face, {len(picks_a)} near-frontal used")
    pos = model.mean[picks_a]  # (n, 468, 3) in the mean face frame
    med = np.median(pos, axis=0)
    spread = np.median(np.linalg.norm(pos - med, axis=2), axis=0)
    vertex = cKDTree(model.mean).query(med)[1]
    # contour: oval points below the eyes in the frontal photos
    mp_mean = np.mean(np.stack(mp_all), axis=0)
    eye_y = mp_mean[[33, 263], 1].mean()
    contour = np.array([i for i in FACE_OVAL if mp_mean[i, 1] > eye_y], np.int64)
    if not args.contour:
        contour = contour[:0]
    fixed = np.array([i for i in range(468) if i not in contour])
    fixed = fixed[spread[fixed] < args.max_spread]
    weights = 1.0 / (1.0 + (spread[fixed] / 2.0) ** 2)
    # iBUG-68 from MediaPipe: three best points, weights by constrained least squares
    mp_s, gt_s = np.stack(mp_all), np.stack(gt_all)
    err = np.linalg.norm(mp_s[:, :, None, :] - gt_s[:, None, :, :], axis=3).mean(0)  # (468, 68)
    ibug_idx = np.argsort(err, axis=0)[:3].T  # (68, 3)
    ibug_w = np.zeros((68, 3))
    for j in range(68):
        p = mp_s[:, ibug_idx[j]]  # (n, 3, 2)
        # w = [1 - a - b, a, b]: gt - p0 = a (p1 - p0) + b (p2 - p0)
        a = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], -1).reshape(-1, 2)
        rhs = (gt_s[:, j] - p[:, 0]).reshape(-1)
        ab = np.linalg.lstsq(a, rhs, rcond=None)[0]
        ibug_w[j] = [1 - ab.sum(), ab[0], ab[1]]
    corr = LandmarkCorrespondence("mediapipe468", fixed.astype(np.int64),
                                  vertex[fixed].astype(np.int64), weights.astype(np.float32),
                                  contour.astype(np.int64), 1.0)
    ibug300w = surface_points(model, frontal, corr)
    moved = np.linalg.norm(model.mean[ibug300w] - model.mean[model.landmark_ids["ibug68"]], axis=1)
    print(f"300-W points from the 3DDFA landmark vertices: jaw {moved[:17].mean():.2f} mm, "
          f"inner {moved[17:].mean():.2f} mm (mean)")
    DATA.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        DATA, model=np.array(model.name), mp_index=fixed.astype(np.int16),
        vertex_ids=vertex[fixed].astype(np.int32), weights=weights.astype(np.float32),
        spread_mm=spread.astype(np.float32), contour_mp_index=contour.astype(np.int16),
        contour_weight=np.float32(1.0), ibug_from_mp_index=ibug_idx.astype(np.int16),
        ibug_from_mp_weight=ibug_w.astype(np.float32),
        ibug300w_vertex_ids=ibug300w.astype(np.int32))
    print(f"fixed landmarks: {len(fixed)} (median spread {np.median(spread[fixed]):.2f} mm), "
          f"contour landmarks: {len(contour)}; wrote {DATA}")


if __name__ == "__main__":
    main()
