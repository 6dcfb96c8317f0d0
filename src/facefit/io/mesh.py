"""Mesh files in: OBJ, PLY, GLB/glTF, STL, OFF (point clouds too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, triangles (F, 3) int64) of a mesh file, vertex order kept.

    OBJ is parsed directly (``v`` and ``f`` lines; polygons fanned into triangles; negative
    indices relative to the end), so its vertex order is the file's even where UVs or
    normals would make a general loader split vertices. Other formats go through trimesh
    (a scene is concatenated); a point cloud gives an empty (0, 3) triangle array.
    """
    p = Path(path)
    if p.suffix.lower() == ".obj":
        verts: list[list[float]] = []
        faces: list[list[int]] = []
        with open(p, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("v "):
                    verts.append([float(x) for x in line.split()[1:4]])
                elif line.startswith("f "):
                    ids = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                    faces.extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
        v = np.asarray(verts, np.float64).reshape(-1, 3)
        f = np.asarray(faces, np.int64).reshape(-1, 3)
        return v, np.where(f < 0, f + v.shape[0], f - 1)
    import trimesh

    geom = trimesh.load(str(p), process=False)
    if isinstance(geom, trimesh.Scene):
        geom = geom.to_geometry() if hasattr(geom, "to_geometry") else geom.dump(concatenate=True)
    faces_arr = getattr(geom, "faces", None)
    faces_arr = np.zeros((0, 3)) if faces_arr is None else faces_arr
    return (np.asarray(geom.vertices, np.float64),
            np.asarray(faces_arr, np.int64).reshape(-1, 3))
