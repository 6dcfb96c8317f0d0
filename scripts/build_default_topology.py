"""Build facefit's triangles, UVs and mirror map for the default (3DDFA BFM 2009) mean face.

Writes ``src/facefit/model/data/bfm3ddfa_topology.npz`` (keys ``triangles`` (F, 3) int32,
``uv`` (V, 2) float32, ``mirror_ids`` (V,) int32) and prints the mesh and UV quality report.
The UVs are the spherical unfolding of `facefit.model.topology` warped to fill the texture
square, densest about the nose (`facefit.texture.layout.face_centred_layout`). The mesh is
kept fold-free on the mean and on ``FOLD_INSTANCES`` random instances of the basis, its open
border is cut along a smooth curve (``OUTLINE_RADIUS_MM``), and the 68 landmark vertices stay
referenced; the report adds the border's turning statistics.
Deterministic: the same input data gives identical arrays. Usage::

    python scripts/build_default_topology.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facefit.model.bfm_3ddfa import TOPOLOGY_FILE, read_raw_arrays
from facefit.model.topology import (
    boundary_turning,
    build_face_topology,
    mesh_quality,
    mirror_vertex_ids,
)
from facefit.texture.layout import face_centred_layout, layout_stats

OUTLINE_RADIUS_MM = 4.0
"""The open border is cut along a curve without teeth or notches narrower than ~8 mm."""


FOLD_INSTANCES = 8
"""Random model instances (seed 0) the mesh is kept fold-free on, besides the mean."""


def model_instances(raw: dict[str, np.ndarray], count: int, seed: int = 0) -> np.ndarray:
    """(count, V, 3) instances of the raw basis: the mean plus shape and expression
    coefficients drawn from N(0, 1) times their standard deviations."""
    rng = np.random.default_rng(seed)
    ks, ke = raw["shape"].shape[2], raw["expression"].shape[2]
    cs = rng.standard_normal((count, ks)) * raw["shape_sigma"]
    ce = rng.standard_normal((count, ke)) * raw["expression_sigma"]
    return (raw["mean"][None].astype(np.float64)
            + np.einsum("vdk,nk->nvd", raw["shape"].astype(np.float64), cs)
            + np.einsum("vdk,nk->nvd", raw["expression"].astype(np.float64), ce))


def build_arrays() -> dict[str, np.ndarray]:
    """The topology arrays for the installed default model's mean face."""
    raw = read_raw_arrays()
    points = raw["mean"]
    triangles, uv = build_face_topology(points, keep_ids=raw["ibug68"],
                                        outline_radius=OUTLINE_RADIUS_MM,
                                        variants=model_instances(raw, FOLD_INSTANCES))
    uv = face_centred_layout(uv, int(raw["ibug68"][30]))
    return {
        "triangles": triangles.astype(np.int32),
        "uv": uv.astype(np.float32),
        "mirror_ids": mirror_vertex_ids(points).astype(np.int32),
    }


def face_vertices(points: np.ndarray, ibug68: np.ndarray) -> np.ndarray:
    """Ids of the vertices inside the frontal hull of the 68 landmarks (the face region)."""
    from scipy.spatial import Delaunay

    hull = Delaunay(points[ibug68, :2])
    return np.flatnonzero(hull.find_simplex(points[:, :2]) >= 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TOPOLOGY_FILE, help="output .npz path")
    args = parser.parse_args(argv)

    arrays = build_arrays()
    raw = read_raw_arrays()
    points = raw["mean"]
    for key, value in mesh_quality(points, arrays["triangles"]).items():
        print(f"{key:>28s}: {value:g}")
    turn = np.degrees(np.abs(boundary_turning(points, arrays["triangles"])[1]))
    print(f"{'border_mean_abs_turn_deg':>28s}: {turn.mean():g}")
    print(f"{'border_turns_over_120deg':>28s}: {(turn > 120).mean():g}")
    for key, value in layout_stats(points, arrays["triangles"], arrays["uv"],
                                   face_vertices(points, raw["ibug68"])).items():
        print(f"{'uv_' + key:>28s}: {value:g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
