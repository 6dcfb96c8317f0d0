"""Several photos of one person: dense neutral-shape error of single-photo fits, confidence
pooling (3DMM-CNN style) and the joint shared-identity fit, on synthetic landmarks.

Run: ``taskset -c 0 python benchmarks/multi_image.py [--seeds 10] [--views 3 6 10]
[--photometric-seeds 5] [--photometric-views 3]``

Each trial draws one identity from the default model's prior, and per view a random pose
(yaw ±60°, pitch ±20°, roll ±15°), a random expression (N(0, 1) per component) and a random
scale; landmarks are the projections of the dense MediaPipe correspondence vertices plus
2 px noise (depth: 6 px noise). Error: RMS over all vertices of the neutral mesh (mm,
centroids aligned) against the truth.

Photometric (``--photometric-seeds`` > 0): one identity (shape, smooth albedo) rendered
under random pose (yaw ±45°), expression and SH light (`facefit.synthetic.photos`), 68
landmarks with 1 px noise; joint landmark fit, then the joint photometric refinement
(`facefit.fit.photometric.refine_photometric_multi`, 100 Adam steps at 224 px) and, for
reference, each photo refined alone (`refine_photometric`, shape not shared).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facefit.fit.multi_image import fit_same_person, fit_single
from facefit.model import load_default_model
from facefit.synthetic.views import make_photo_set, neutral_error_mm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--views", type=int, nargs="+", default=[3, 6, 10])
    ap.add_argument("--photometric-seeds", type=int, default=5)
    ap.add_argument("--photometric-views", type=int, default=3)
    args = ap.parse_args()
    model = load_default_model()
    zero = np.zeros(model.num_shape)
    print("| views | mean shape (mm) | single photo, mean (mm) | confidence pooling (mm) "
          "| joint fit (mm) | joint < pooled < single | joint time (s) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.views:
        rows, order, times = [], 0, []
        for seed in range(args.seeds):
            shape, views = make_photo_set(model, n, seed=seed)
            vs = [v.view for v in views]
            single = np.mean([neutral_error_mm(model, fit_single(model, v).shape_coeffs, shape)
                              for v in vs])
            pooled = neutral_error_mm(model, fit_same_person(model, vs, "confidence")
                                      .shape_coeffs, shape)
            t0 = time.perf_counter()
            joint = neutral_error_mm(model, fit_same_person(model, vs, "joint").shape_coeffs,
                                     shape)
            times.append(time.perf_counter() - t0)
            rows.append((neutral_error_mm(model, zero, shape), single, pooled, joint))
            order += joint < pooled < single
        m = np.mean(rows, axis=0)
        print(f"| {n} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.3f} | "
              f"{order}/{args.seeds} | {np.mean(times):.3f} |")
    if args.photometric_seeds > 0:
        photometric(args.photometric_seeds, args.photometric_views)


def photometric(seeds: int, n: int, iterations: int = 100) -> None:
    from facefit.fit.multi_image import ViewPoints
    from facefit.fit.photometric import (
        PhotometricConfig,
        refine_photometric,
        refine_photometric_multi,
    )
    from facefit.synthetic.photos import make_synthetic_photo_set

    model = load_default_model()
    ids = np.asarray(model.landmark_ids["ibug68"])
    print(f"\n## Photometric, {n} rendered photos per identity ({iterations} steps, seeds "
          f"1000-{999 + seeds})\n")
    print("| seed | joint landmark fit (mm) | joint photometric (mm) | single-photo "
          "photometric, mean (mm) | photometric RMS before → after | joint time (s) |")
    print("|---|---|---|---|---|---|")
    rows = []
    for seed in range(1000, 1000 + seeds):
        shape, faces = make_synthetic_photo_set(model, n, seed=seed)
        rng = np.random.default_rng(seed)
        pts = [f.landmarks + rng.normal(0, 1.0, f.landmarks.shape) for f in faces]
        views = [ViewPoints(p, ids, np.ones(68), 0.02 * float(np.sqrt(np.prod(np.ptp(p, 0)))))
                 for p in pts]
        multi = fit_same_person(model, views, "joint")
        t0 = time.perf_counter()
        res = refine_photometric_multi(model, multi.fits, [f.image for f in faces],
                                       landmarks_px=pts, landmark_vertex_ids=[ids] * n,
                                       config=PhotometricConfig(iterations=iterations))
        dt = time.perf_counter() - t0
        single = np.mean([neutral_error_mm(model, refine_photometric(
            model, fit_single(model, v), f.image, landmarks_px=p, landmark_vertex_ids=ids,
            config=PhotometricConfig(iterations=iterations)).fit.shape_coeffs, shape)
            for v, f, p in zip(views, faces, pts, strict=True)])
        e = (neutral_error_mm(model, multi.shape_coeffs, shape),
             neutral_error_mm(model, res.shape_coeffs, shape), single,
             np.mean([r.initial_photometric_error for r in res.results]),
             np.mean([r.photometric_error for r in res.results]), dt)
        rows.append(e)
        print(f"| {seed} | {e[0]:.3f} | {e[1]:.3f} | {e[2]:.3f} | {e[3]:.4f} → {e[4]:.4f} "
              f"| {e[5]:.1f} |")
    m = np.mean(rows, axis=0)
    better = sum(r[1] <= r[0] for r in rows)
    print(f"| mean | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.4f} → {m[4]:.4f} | "
          f"{m[5]:.1f} |\n\njoint photometric ≤ joint landmark on {better}/{len(rows)} seeds")


if __name__ == "__main__":
    main()
