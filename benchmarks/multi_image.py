"""Several photos of one person: dense neutral-shape error of single-photo fits, confidence
pooling (3DMM-CNN style) and the joint shared-identity fit, on synthetic landmarks.

Run: ``taskset -c 0 python benchmarks/multi_image.py [--seeds 10] [--views 3 6 10]``

Each trial draws one identity from the default model's prior, and per view a random pose
(yaw ±60°, pitch ±20°, roll ±15°), a random expression (N(0, 1) per component) and a random
scale; landmarks are the projections of the dense MediaPipe correspondence vertices plus
2 px noise (depth: 6 px noise). Error: RMS over all vertices of the neutral mesh (mm,
centroids aligned) against the truth.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facefit.fit.multi_image import fit_same_person, fit_single
from facefit.fit.synthetic import make_photo_set, neutral_error_mm
from facefit.model import load_default_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--views", type=int, nargs="+", default=[3, 6, 10])
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


if __name__ == "__main__":
    main()
