"""Learn the fusion of the fit's and MediaPipe's 300-W points (`facefit.fit.points300w`).

Data: the 300-W training faces (``../shared/data/train-300w``: LFPW train, AFW, half of HELEN
train; 2,012 crops with 68 annotated points). Never the HELEN test set or AFLW2000-3D. For
each face: MediaPipe's detection, facefit's landmark fit of the default model (as
``facefit reconstruct --landmarks mediapipe`` runs it), the mesh's 300-W points
(``landmarks_68_2d_contour`` before fusion) and MediaPipe's points mapped to 68. Then for
each landmark, least squares (ridge 1e-4) of the annotated point's offset from the mesh
point on the detector-minus-mesh residual and a constant, in the face frame
(`points300w.residual_features`). Prints the training NMEs and, held out by source (two
sources train, the third scores), the NME of mesh, detector and fused points.

Run: ``python scripts/build_300w_fusion.py [--model ict] [--data DIR] [--out NPZ]`` (about
3 min on one core); writes ``src/facefit/fit/data/ibug300w_fusion_<model name>.npz`` (4 KB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facefit.eval.datasets import load_300w
from facefit.eval.predictions import load_rgb, select_face
from facefit.fit.correspondence import mediapipe_to_ibug68
from facefit.fit.points300w import SCHEME, PointFusion, data_path, fuse_points, residual_features
from facefit.io.atomic import atomic_path
from facefit.reconstruct import Reconstructor

ROOT = Path(__file__).resolve().parents[1]
RIDGE = 1e-4


def collect(root: Path, model_arg: str | None) -> dict[str, np.ndarray]:
    """Mesh, detector and annotated 68 points (N, 68, 2) and each face's source name."""
    from facefit.cli.common import load_model_arg
    from facefit.fit.face_fit import fit_face

    model = load_model_arg(model_arg) if model_arg else None
    rec = Reconstructor(model=model, texture_size=0, landmarks="mediapipe")
    mesh, det, gt, source = [], [], [], []
    for s in load_300w(root):
        image = load_rgb(s.image_path)
        faces = rec.detector.detect(image, max_faces=8)
        if not faces:
            continue
        face = faces[select_face([np.asarray(f.box) for f in faces], s.landmarks)]
        if face.scheme != SCHEME:
            continue
        # the fit as the Reconstructor makes it, before the fusion
        fit = fit_face(rec.model, face, image.shape[1::-1])
        mesh.append(np.asarray(fit.landmarks_68_2d_contour, np.float64)[:, :2])
        det.append(mediapipe_to_ibug68(np.asarray(face.points_px, np.float64)))
        gt.append(s.landmarks[:, :2])
        source.append(s.stem.split("_")[0])
    return {"mesh": np.asarray(mesh, np.float64), "det": np.asarray(det, np.float64),
            "gt": np.asarray(gt, np.float64), "source": np.asarray(source),
            "model": np.asarray(rec.model.name)}


def solve(mesh: np.ndarray, det: np.ndarray, gt: np.ndarray, model: str) -> PointFusion:
    """Per-landmark ridge least squares of the face-frame target offset on [residual, 1]."""
    d, roll, size = residual_features(mesh, det)
    e, _, _ = residual_features(mesh, gt)
    x = np.concatenate([d, np.ones(d.shape[:2] + (1,))], -1).transpose(1, 0, 2)  # (68, N, 3)
    y = e.transpose(1, 0, 2)  # (68, N, 2)
    w = np.linalg.solve(x.transpose(0, 2, 1) @ x + RIDGE * np.eye(3), x.transpose(0, 2, 1) @ y)
    return PointFusion(w[:, :2], w[:, 2], model)


def nme(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean inter-ocular (outer eye corners) NME in %."""
    io = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=1)
    return float(100 * (np.linalg.norm(pred - gt, axis=2).mean(1) / io).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train-300w")
    ap.add_argument("--model", default=None,
                    help="model name or file (`facefit model list`; default: the default model)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .npz (default: the packaged file for the model)")
    args = ap.parse_args()
    c = collect(args.data, args.model)
    model = str(c["model"])
    for src in np.unique(c["source"]):
        tr, te = c["source"] != src, c["source"] == src
        f = solve(c["mesh"][tr], c["det"][tr], c["gt"][tr], model)
        mesh, det, gt = c["mesh"][te], c["det"][te], c["gt"][te]
        fused = fuse_points(mesh, det, f)
        print(f"held out {src} ({te.sum()} faces): mesh {nme(mesh, gt):.3f} %, "
              f"detector {nme(det, gt):.3f} %, fused {nme(fused, gt):.3f} %")
    f = solve(c["mesh"], c["det"], c["gt"], model)
    fused = fuse_points(c["mesh"], c["det"], f)
    print(f"all {len(c['gt'])} faces (training): mesh {nme(c['mesh'], c['gt']):.3f} %, detector "
          f"{nme(c['det'], c['gt']):.3f} %, fused {nme(fused, c['gt']):.3f} %")
    out = args.out or data_path(model)
    if out is None:
        raise SystemExit(f"model name {model!r} cannot name a file: give --out")
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, gain=f.gain.astype(np.float32), offset=f.offset.astype(np.float32),
                     model=np.asarray(model), scheme=np.asarray(SCHEME),
                     faces=np.asarray(len(c["gt"])), ridge=np.asarray(RIDGE),
                     data=np.asarray("../shared/data/train-300w (300-W training faces)"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
