"""Build facefit's triangles, UVs and mirror map for the default (3DDFA BFM 2009) mean face.

Writes ``src/facefit/model/data/bfm3ddfa_topology.npz`` (keys ``triangles`` (F, 3) int32,
``uv`` (V, 2) float32, ``mirror_ids`` (V,) int32) and prints the mesh quality report.
Deterministic: the same input data gives identical arrays. Usage::

    python scripts/build_default_topology.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facefit.model.bfm_3ddfa import TOPOLOGY_FILE, read_raw_arrays
from facefit.model.topology import build_face_topology, mesh_quality, mirror_vertex_ids


def build_arrays() -> dict[str, np.ndarray]:
    """The topology arrays for the installed default model's mean face."""
    points = read_raw_arrays()["mean"]
    triangles, uv = build_face_topology(points)
    return {
        "triangles": triangles.astype(np.int32),
        "uv": uv.astype(np.float32),
        "mirror_ids": mirror_vertex_ids(points).astype(np.int32),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TOPOLOGY_FILE, help="output .npz path")
    args = parser.parse_args(argv)

    arrays = build_arrays()
    points = read_raw_arrays()["mean"]
    for key, value in mesh_quality(points, arrays["triangles"]).items():
        print(f"{key:>28s}: {value:g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
