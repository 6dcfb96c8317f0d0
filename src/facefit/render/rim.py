"""Soft edges for renders of open meshes.

Face models are open surfaces cut out of a head (forehead, neck, behind the ears). Drawn
opaque, the cut is a hard edge, and a ragged one where a model's border is (the default
model's border is cut along a smooth curve, `facefit.model.topology`; other models' need not
be). `rim_weight` gives each vertex a weight that rises from 0 on the open boundary to
1 at ``band_mm`` along the surface, so renderers can fade the mesh out towards its cut.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra

__all__ = ["RIM_BAND_MM", "boundary_vertices", "rim_weight"]

RIM_BAND_MM = 8.0
"""Default width of the fade, in mm along the surface of the mean face."""


def boundary_vertices(n_vertices: int, triangles: np.ndarray, outer_only: bool = True
                      ) -> np.ndarray:
    """Ids of the vertices on an open edge (an edge used by exactly one triangle); with
    ``outer_only``, only those of the largest connected chain of open edges (the cut around
    the face, not the eye and mouth openings)."""
    tri = np.asarray(triangles, np.int64)
    edges = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    key = edges[:, 0] * n_vertices + edges[:, 1]
    uniq, counts = np.unique(key, return_counts=True)
    open_edges = np.stack([uniq[counts == 1] // n_vertices, uniq[counts == 1] % n_vertices], 1)
    ids = np.unique(open_edges)
    if not outer_only or len(ids) == 0:
        return ids
    graph = sparse.coo_matrix((np.ones(len(open_edges)), (open_edges[:, 0], open_edges[:, 1])),
                              shape=(n_vertices, n_vertices))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels[open_edges[:, 0]])
    return ids[labels[ids] == np.argmax(sizes)]


def rim_weight(points: np.ndarray, triangles: np.ndarray, band_mm: float = RIM_BAND_MM
               ) -> np.ndarray:
    """(V,) float32 in [0, 1]: the surface distance of each vertex to the nearest open edge
    (Dijkstra over the mesh edges, lengths in the units of ``points``) over ``band_mm``,
    smoothstepped; 1 for a closed mesh and for vertices used by no triangle."""
    pts = np.asarray(points, np.float64)
    n = len(pts)
    tri = np.asarray(triangles, np.int64)
    start = boundary_vertices(n, tri)
    if len(start) == 0 or band_mm <= 0:
        return np.ones(n, np.float32)
    pairs = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    key = np.unique(pairs[:, 0] * n + pairs[:, 1])  # 1-D keys: far faster than axis=0
    e = np.stack([key // n, key % n], 1)
    length = np.linalg.norm(pts[e[:, 0]] - pts[e[:, 1]], axis=1)
    graph = sparse.coo_matrix((np.maximum(length, 1e-9), (e[:, 0], e[:, 1])), shape=(n, n))
    dist = dijkstra(graph.tocsr(), directed=False, indices=start, min_only=True,
                    limit=band_mm)
    t = np.clip(np.nan_to_num(dist / band_mm, posinf=1.0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)
