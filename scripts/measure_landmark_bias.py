"""How much of MediaPipe's landmark error every photo of a face shares.

Renders ``--n`` random faces of the default model (`facefit.synthetic.photos.make_synthetic_face`,
identity N(0, 1)), runs MediaPipe on each, and compares its points with the true projections of
their correspondence vertices (`facefit.fit.correspondence`), in fractions of the face size.
The per-point mean over the faces is the shared part (the detector's landmark convention
against the model's vertices), the spread around it the part that differs from photo to
photo; prints both as root mean squares and their variance ratio b / e (the shared part's
mean square corrected for the noise left in a mean of n faces), the value behind
`facefit.fit.multi_image.LANDMARK_BIAS_RATIO`.

Run: ``python scripts/measure_landmark_bias.py [--n 40]`` (about a minute).
"""

from __future__ import annotations

import argparse

import numpy as np

from facefit.detect.mediapipe import MediaPipeDetector
from facefit.fit.correspondence import correspondence_for
from facefit.model import load_default_model
from facefit.synthetic.photos import make_synthetic_face


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    model = load_default_model()
    det = MediaPipeDetector()
    corr = correspondence_for(model, "mediapipe468")
    res = []
    for i in range(args.n):
        rng = np.random.default_rng([args.seed, i])
        shape = rng.normal(0, 1, model.num_shape).clip(-3, 3).astype(np.float32)
        photo = make_synthetic_face(model, rng, shape=shape)
        faces = det.detect(photo.image, max_faces=1)
        if not faces:
            continue
        p = faces[0].points_px.astype(np.float64)
        size = np.sqrt(np.prod(p.max(0) - p.min(0)))
        res.append((p[corr.landmark_index] - photo.verts_px[corr.vertex_ids, :2]) / size)
    r = np.stack(res)  # (faces, K, 2)
    n = len(r)
    e = float(((r - r.mean(0)) ** 2).sum(2).mean() * n / (n - 1))  # photo-to-photo
    b = float((r.mean(0) ** 2).sum(1).mean() - e / n)  # shared, less the mean's own noise
    print(f"{n} faces, {r.shape[1]} points: shared RMS {100 * np.sqrt(b):.2f} %, "
          f"photo-to-photo RMS {100 * np.sqrt(e):.2f} % of the face size; b / e = {b / e:.2f}")


if __name__ == "__main__":
    main()
