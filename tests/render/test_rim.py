"""Soft edges of open meshes: rim weights and the continuous back-face normal."""

import numpy as np

from facefit.render.rim import boundary_vertices, rim_weight
from facefit.render.shading import visible_side


def _grid(n: int = 21, hole: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid of 1 mm cells (z = 0); optionally without its two central triangles."""
    y, x = np.mgrid[0:n, 0:n].astype(float)
    pts = np.c_[x.ravel(), y.ravel(), np.zeros(n * n)]
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tri = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    if hole:
        c = (n // 2) * n + n // 2
        tri = tri[~np.isin(tri, [c]).all(1) & ~((tri == c).any(1) & (tri == c + n + 1).any(1))]
    return pts, tri


def test_rim_weight_is_the_surface_distance_to_the_outer_edge() -> None:
    pts, tri = _grid(hole=True)
    outer = boundary_vertices(len(pts), tri)
    edge = (pts[:, 0] == 0) | (pts[:, 0] == 20) | (pts[:, 1] == 0) | (pts[:, 1] == 20)
    assert set(outer) == set(np.flatnonzero(edge))  # the inner hole is not the cut
    assert len(boundary_vertices(len(pts), tri, outer_only=False)) > len(outer)
    w = rim_weight(pts, tri, band_mm=4.0)
    dist = np.minimum.reduce([pts[:, 0], 20 - pts[:, 0], pts[:, 1], 20 - pts[:, 1]])
    t = np.clip(dist / 4.0, 0, 1)
    np.testing.assert_allclose(w, t * t * (3 - 2 * t), atol=1e-6)  # grid paths: exact


def test_rim_weight_without_band_or_edges() -> None:
    pts, tri = _grid()
    assert (rim_weight(pts, tri, band_mm=0.0) == 1).all()


def test_visible_side_is_continuous_across_the_silhouette() -> None:
    # normals sweeping from facing the camera (z = -1) to facing away (z = +1)
    ang = np.radians(np.arange(0, 180))  # up to 179 degrees: exactly away is degenerate
    n = np.c_[np.sin(ang), np.zeros_like(ang), -np.cos(ang)]
    v = visible_side(n)
    assert (v[:, 2] <= 0).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    assert np.abs(np.diff(v, axis=0)).max() < 0.02  # no jump where n_z changes sign
    np.testing.assert_allclose(v[:91], n[:91], atol=1e-6)  # front faces unchanged
