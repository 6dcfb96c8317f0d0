"""Learn the AFLW-convention offset of MediaPipe fits (`facefit.fit.points_aflw`).

Data: train-aflw21 (``../shared/data/train-aflw21``: AFLW face crops with their visible
manual points among AFLW's 21; README there), the crops within 30 degrees of yaw (where
``--landmarks auto`` keeps MediaPipe's points). Never AFLW2000-3D. Each crop is enlarged 3x
(120 px is small for MediaPipe's detector), then MediaPipe's detection and facefit's landmark
fit of the model (as ``facefit reconstruct --landmarks mediapipe`` runs it); the face nearest
the crop's centre is kept. `facefit.regress.aflw21.convention_offset` (ridge
`CONVENTION_RIDGE`, the network's) then gives the constant coefficient offset that moves the
fits' 68 landmark points onto the visible manual points. Prints the mean distance of the 21
points before and after, on all crops and held out (offset learned on the even-numbered crops,
scored on the odd ones).

Run: ``python scripts/build_aflw_convention.py [--data DIR] [--out NPZ]`` (about 1.5 min on
one core); writes ``src/facefit/fit/data/aflw_convention_<model name>.npz`` (1 KB).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from facefit.fit.points_aflw import SCHEME, data_path
from facefit.io.atomic import atomic_path
from facefit.reconstruct import Reconstructor
from facefit.regress.aflw21 import (
    AFLW21_USABLE,
    CONVENTION_RIDGE,
    convention_offset,
    load_aflw21,
    params_to_points21,
)
from facefit.regress.predictor import landmark_basis

ROOT = Path(__file__).resolve().parents[1]
MAX_YAW = 30.0
UPSCALE = 3
CROP = 120  # train-aflw21's crop side, pixels


def collect(folder: Path, max_yaw: float = MAX_YAW, limit: int | None = None
            ) -> tuple[np.ndarray, np.ndarray, str]:
    """((N, 8 + K) fits as the scaled orthographic map A (2x3), t (2,) in crop pixels and
    the K coefficients; (N, 21, 2) their crops' points, NaN where hidden; the model name) of
    the crops within ``max_yaw`` degrees (the first ``limit`` of them)."""
    from facefit.fit.face_fit import fit_face
    from facefit.fit.multi_image import fit_pose

    paths, points, yaw = load_aflw21(folder)
    rec = Reconstructor(texture_size=0, landmarks="mediapipe")
    model = rec.model
    k = model.shape_basis.shape[2] + model.expression_basis.shape[2]
    side = CROP * UPSCALE
    params, kept = [], []
    for i in np.flatnonzero(np.abs(yaw) < max_yaw)[:limit]:
        with Image.open(paths[i]) as im:
            image = np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC))
        faces = [f for f in rec.detector.detect(image) if f.scheme == SCHEME]
        if not faces:
            continue
        face = min(faces, key=lambda f: float(np.hypot(*((f.box[:2] + f.box[2:]) / 2 - side / 2))))
        fit = fit_face(model, face, (side, side))
        a = fit_pose(fit).linear_map()[:2]
        # pixel centres: x_big = UPSCALE x + (UPSCALE - 1) / 2
        t = (np.asarray(fit.translation[:2], np.float64) - (UPSCALE - 1) / 2) / UPSCALE
        c = np.concatenate([fit.shape_coeffs, fit.expression_coeffs]).astype(np.float64)
        params.append(np.concatenate([(a / UPSCALE).ravel(), t, c[:k]]))
        kept.append(i)
    return np.asarray(params), points[kept].astype(np.float64), model.name


def mean_distance(model_basis: tuple[np.ndarray, np.ndarray], params: np.ndarray,
                  points21: np.ndarray, offset: np.ndarray | None = None) -> float:
    """Mean distance (pixels of the 120 px crop) of the fits' 21 points to the visible,
    usable manual points."""
    p = np.array(params, np.float64)
    if offset is not None:
        p[:, 8:] += offset
    d = np.linalg.norm(points21 - params_to_points21(*model_basis, p), axis=-1)
    vis = ~np.isnan(d) & AFLW21_USABLE[None]
    return float(d[vis].mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=ROOT.parent / "shared" / "data" / "train-aflw21")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .npz (default: the packaged file for the default model)")
    ap.add_argument("--limit", type=int, default=None, help="the first N crops only (tests)")
    args = ap.parse_args(argv)
    try:
        params, points, name = collect(args.data, limit=args.limit)
    except ValueError as e:  # not a train-aflw21 folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(params) < 2:
        print(f"error: {args.data}: fewer than 2 crops with a face", file=sys.stderr)
        return 2
    from facefit.model import load_default_model

    basis = landmark_basis(load_default_model())
    even, odd = slice(0, None, 2), slice(1, None, 2)
    held = convention_offset(*basis, params[even], points[even], CROP)
    print(f"held out (learned on {len(params[even])} even crops, scored on {len(params[odd])} "
          f"odd): {mean_distance(basis, params[odd], points[odd]):.3f} -> "
          f"{mean_distance(basis, params[odd], points[odd], held):.3f} px of {CROP}")
    offset = convention_offset(*basis, params, points, CROP)
    print(f"all {len(params)} crops (training): {mean_distance(basis, params, points):.3f} -> "
          f"{mean_distance(basis, params, points, offset):.3f} px of {CROP}; |offset| "
          f"{np.linalg.norm(offset):.3f}")
    out = args.out or data_path(name)
    if out is None:
        print(f"error: model name {name!r} cannot name a file: give --out", file=sys.stderr)
        return 2
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, coefficients=offset.astype(np.float32), model=np.asarray(name),
                     scheme=np.asarray(SCHEME), crops=np.asarray(len(params)),
                     max_yaw_deg=np.asarray(MAX_YAW), ridge=np.asarray(CONVENTION_RIDGE),
                     data=np.asarray("../shared/data/train-aflw21 (AFLW crops, 21 points)"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
