"""Build facefit's compact ICT Face Model (MIT) shipped in the package (``--model ict``).

From the ICT-FaceKit data (the shared-data folder with ``modes.npz``, or an original
``FaceXModel`` folder) keep the head region (face, back of the head and neck: no eyeballs,
teeth or eye shells), the leading identity modes and the 53 ARKit-named blendshapes, with
offsets quantised to int16 (identity 0.01 mm, blendshapes 0.02 mm steps), in two files
under 2 MB each: ``src/facefit/model/data/ict_head_identity.npz`` (neutral, identity modes,
triangles, UVs, landmarks, face region) and ``ict_head_expression.npz`` (names, blendshapes).
Read by `facefit.model.ict.load_compact_ict`. Deterministic. Usage::

    python scripts/build_ict_compact.py [--ict ../shared/data/ict-facekit] [--identity 20]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facefit.model.arkit import arkit_name
from facefit.model.ict import (
    COMPACT_EXPRESSION,
    COMPACT_IDENTITY,
    EXPRESSION_STEP_MM,
    IDENTITY_STEP_MM,
    ICTFaceModel,
    load_compact_ict,
    load_ict_modes,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ict", type=Path, default=ROOT.parent / "shared" / "data" / "ict-facekit")
    ap.add_argument("--identity", type=int, default=20)
    args = ap.parse_args()
    if (args.ict / "modes.npz").is_file():
        model = load_ict_modes(args.ict, num_identity=args.identity)
    else:
        from facefit.model.io_ict import load_ict

        model = load_ict(args.ict, num_identity=args.identity).to_morphable_model()
    ict = ICTFaceModel(model)
    head = ict.regions["head"]
    local = np.full(model.num_vertices, -1, np.int64)
    local[head] = np.arange(len(head))
    tri = model.triangles[np.isin(model.triangles, head).all(1)]
    lm = local[model.landmark_ids["ibug68"]]
    assert (lm >= 0).all(), "landmarks outside the head region"
    keep = [k for k, n in enumerate(ict.expression_names) if arkit_name(n) is not None]
    ident = np.round(model.shape_basis[head] / IDENTITY_STEP_MM)
    expr = np.round(model.expression_basis[head][:, :, keep] / EXPRESSION_STEP_MM)
    assert np.abs(ident).max() < 32767 and np.abs(expr).max() < 32767
    notice = (ROOT / ".." / "shared" / "data" / "ict-facekit" / "LICENSE")
    licence = notice.read_text() if notice.is_file() else "MIT, (c) 2020 USC ICT"
    np.savez_compressed(
        COMPACT_IDENTITY, neutral=model.mean[head].astype(np.float32),
        identity=ident.astype(np.int16), triangles=local[tri].astype(np.int32),
        uv=model.uv[head].astype(np.float32), ibug68=lm.astype(np.int32),
        face=local[ict.regions["face"]].astype(np.int32), licence=np.array(licence))
    np.savez_compressed(
        COMPACT_EXPRESSION, names=np.array([ict.expression_names[k] for k in keep]),
        deltas=expr.astype(np.int16))
    small = load_compact_ict()
    err_id = np.abs(small.shape_basis - model.shape_basis[head]).max()
    err_ex = np.abs(small.expression_basis - model.expression_basis[head][:, :, keep]).max()
    print(json.dumps({"vertices": len(head), "triangles": len(tri), "identity": args.identity,
                      "blendshapes": len(keep),
                      "identity_bytes": COMPACT_IDENTITY.stat().st_size,
                      "expression_bytes": COMPACT_EXPRESSION.stat().st_size,
                      "max_identity_error_mm": float(err_id),
                      "max_blendshape_error_mm": float(err_ex)}, indent=1))


if __name__ == "__main__":
    main()
