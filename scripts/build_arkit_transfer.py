"""Transfer the ICT Face Model's ARKit blendshapes onto the default (3DDFA BFM 2009) model.

Steps (`facefit.model.arkit`): align the ICT neutral face region to the BFM mean by the 51
inner iBUG landmarks (similarity), deform it onto the BFM mean by non-rigid ICP, carry each
ARKit-named ICT blendshape (rotated and scaled by the alignment) to the BFM vertices, and
keep them on a fixed random subset of BFM vertices (plus the 68 landmarks), float16, so the
file stays under 2 MB. Writes ``src/facefit/model/data/arkit_bfm3ddfa.npz`` and prints the
registration residuals. Deterministic. Usage::

    python scripts/build_arkit_transfer.py [--ict ../shared/data/ict-facekit | FaceXModel]
        [--vertices 2500] [--out PATH]

``--ict`` is the shared-data folder (``modes.npz``) or an original ``FaceXModel`` folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from facefit.fit.core.rotation import umeyama
from facefit.model.arkit import (
    DEFAULT_TRANSFER,
    ArkitTransfer,
    arkit_name,
    fingerprint,
    nonrigid_icp,
    save_transfer,
    transfer_offsets,
)
from facefit.model.bfm_3ddfa import load_default_model
from facefit.model.ict import ICTFaceModel, load_ict_modes

ROOT = Path(__file__).resolve().parents[1]


def load_ict_any(path: Path) -> ICTFaceModel:
    if (path / "modes.npz").is_file():
        return ICTFaceModel(load_ict_modes(path, num_identity=1))
    from facefit.model.io_ict import load_ict

    return ICTFaceModel(load_ict(path, num_identity=1).to_morphable_model())


def build(ict_path: Path, num_vertices: int) -> tuple[ArkitTransfer, dict[str, float]]:
    ict = load_ict_any(ict_path)
    bfm = load_default_model()
    face = ict.fit_ids()
    tri = ict.base.triangles
    tri = tri[np.isin(tri, face).all(1)]
    local = np.full(ict.base.num_vertices, -1)
    local[face] = np.arange(len(face))
    src = ict.base.mean[face].astype(np.float64)
    inner = np.arange(17, 68)
    lm_ict = local[ict.base.landmark_ids["ibug68"][inner]]
    lm_bfm = bfm.mean[bfm.landmark_ids["ibug68"][inner]].astype(np.float64)
    sim = umeyama(src[lm_ict], lm_bfm)
    aligned = sim.scale * src @ sim.rotation.T + sim.translation
    rigid_lm = np.linalg.norm(aligned[lm_ict] - lm_bfm, axis=1).mean()
    target = bfm.mean.astype(np.float64)
    registered = nonrigid_icp(aligned, local[tri], target, lm_ict, lm_bfm)
    d_after = cKDTree(target).query(registered)[0]
    back = cKDTree(registered).query(target)[0]
    # ARKit-named shapes only (drop cheekRaiser, PupilDilate).
    keep = [k for k, n in enumerate(ict.expression_names) if arkit_name(n) is not None]
    names = [ict.expression_names[k] for k in keep]
    offs = ict.base.expression_basis[face][:, :, keep].astype(np.float64)
    offs = sim.scale * np.einsum("ij,vjk->vik", sim.rotation, offs)
    rng = np.random.default_rng(0)
    lm_all = np.asarray(bfm.landmark_ids["ibug68"], np.int64)
    pick = rng.choice(np.setdiff1d(np.arange(bfm.num_vertices), lm_all),
                      num_vertices - len(lm_all), replace=False)
    ids = np.sort(np.r_[lm_all, pick])
    moved = transfer_offsets(registered, offs, target[ids])
    stats = {
        "similarity_scale": float(sim.scale),
        "rigid_landmark_error_mm": float(rigid_lm),
        "nicp_landmark_error_mm": float(np.linalg.norm(registered[lm_ict] - lm_bfm,
                                                       axis=1).mean()),
        "ict_to_bfm_median_mm": float(np.median(d_after)),
        "bfm_to_ict_median_mm": float(np.median(back)),
        "bfm_to_ict_p95_mm": float(np.percentile(back, 95)),
    }
    source = ("ICT-FaceKit (MIT, copyright 2020 USC Institute for Creative Technologies) "
              "blendshapes transferred to the 3DDFA BFM 2009 mean by "
              "scripts/build_arkit_transfer.py")
    tr = ArkitTransfer(names, ids, moved.astype(np.float32), fingerprint(bfm, ids), source)
    return tr, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ict", type=Path, default=ROOT.parent / "shared" / "data" / "ict-facekit")
    ap.add_argument("--vertices", type=int, default=2500)
    ap.add_argument("--out", type=Path, default=DEFAULT_TRANSFER)
    args = ap.parse_args()
    tr, stats = build(args.ict, args.vertices)
    save_transfer(args.out, tr)
    stats["file_bytes"] = args.out.stat().st_size
    stats["shapes"] = len(tr.names)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
