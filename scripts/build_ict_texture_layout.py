"""Build the per-corner UVs of facefit's packaged ICT head (``--model ict``) for texturing.

The compact model (`scripts/build_ict_compact.py`) keeps one UV per vertex, which folds the
ICT layout's seams: ICT's UVs are tiles side by side (face in u in [0, 1], back of the head
and neck in [1, 2], ...), and a vertex on the face/back seam has one UV in each tile. This
script stores, for the compact model's triangles (same order), the original per-corner UVs
and each triangle's material, in ``src/facefit/texture/data/ict_head_uv.npz`` (keys ``uv``
(U, 2) float32 in ICT's tile coordinates, ``triangle_uv`` (F, 3) int32, ``material``
(F,) int8 into ``materials``, ``triangles`` (F, 3) int32 vertex ids, to recognise the
model). Read by `facefit.texture.atlas.texture_layout`. Deterministic. Usage::

    python scripts/build_ict_texture_layout.py [--ict ../shared/data/ict-facekit]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facefit.model.ict import load_compact_ict
from facefit.model.io_ict import NEUTRAL_FILE, REGION_MATERIALS, read_obj
from facefit.texture.atlas import ICT_HEAD_UV

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ict", type=Path, default=ROOT.parent / "shared" / "data" / "ict-facekit")
    args = ap.parse_args()
    mesh = read_obj(args.ict / "FaceXModel" / NEUTRAL_FILE)
    head_mats = [i for i, m in enumerate(mesh.materials) if m in REGION_MATERIALS["head"]]
    head = np.unique(mesh.triangles[np.isin(mesh.triangle_material, head_mats)])
    keep = np.isin(mesh.triangles, head).all(1)  # as build_ict_compact.py
    local = np.full(len(mesh.vertices), -1, np.int64)
    local[head] = np.arange(len(head))
    tri = local[mesh.triangles[keep]]
    compact = load_compact_ict()
    if not np.array_equal(tri, compact.triangles):
        raise SystemExit("the packaged ICT model's triangles differ from the OBJ's head region")
    used, tuv = np.unique(mesh.triangle_uv[keep], return_inverse=True)
    mats = mesh.triangle_material[keep]
    names, mat = np.unique(np.asarray(mesh.materials)[mats], return_inverse=True)
    ICT_HEAD_UV.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(ICT_HEAD_UV, uv=mesh.uv[used].astype(np.float32),
                        triangle_uv=tuv.reshape(-1, 3).astype(np.int32),
                        material=mat.astype(np.int8), materials=names.astype(str),
                        triangles=tri.astype(np.int32))
    print(f"{ICT_HEAD_UV}: {len(used)} UVs, {len(tri)} triangles, materials {list(names)}, "
          f"{ICT_HEAD_UV.stat().st_size} bytes")


if __name__ == "__main__":
    main()
