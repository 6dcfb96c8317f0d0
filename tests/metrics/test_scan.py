"""NoW-style scan error on a synthetic face-like surface with a known similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facefit.metrics.scan import (
    SurfaceQuery,
    closest_points_on_triangles,
    crop_scan,
    plot_error_map,
    scan_error,
    umeyama,
)

LANDMARKS_XY = np.array([[-45, 35], [-15, 35], [15, 35], [45, 35], [0, 0], [-25, -40],
                         [25, -40]], np.float64)


def _height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (60 * np.exp(-(x**2 + y**2) / (2 * 55.0**2))
            + 22 * np.exp(-(x**2 + (y + 5) ** 2) / (2 * 11.0**2))
            - 6 * np.exp(-((np.abs(x) - 30) ** 2 + (y - 35) ** 2) / (2 * 10.0**2)))


def _face_mesh(n: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """Grid surface over [-80, 80]^2 mm with a nose and eye sockets; (V, 3), (F, 3)."""
    g = np.linspace(-80, 80, n)
    x, y = np.meshgrid(g, g)
    verts = np.stack([x.ravel(), y.ravel(), _height(x, y).ravel()], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return verts, tris


def _sample_surface(verts: np.ndarray, tris: np.ndarray, n: int, rng: np.random.Generator
                    ) -> np.ndarray:
    t = verts[tris[rng.integers(0, len(tris), n)]]
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return t[:, 0] + (t[:, 1] - t[:, 0]) * u[:, None] + (t[:, 2] - t[:, 0]) * v[:, None]


def test_umeyama_recovers_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    rot = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    dst = 2.5 * src @ rot.T + [1.0, -2.0, 3.0]
    sim = umeyama(src, dst)
    assert sim.scale == pytest.approx(2.5)
    np.testing.assert_allclose(sim.rotation, rot, atol=1e-10)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-10)
    # a reflection in the data is not returned as a rotation
    assert np.linalg.det(umeyama(src, src * [-1, 1, 1]).rotation) == pytest.approx(1.0)


def test_surface_query_matches_brute_force() -> None:
    verts, tris = _face_mesh(15)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-70, 70, size=(200, 3))
    pts[:, 2] = rng.uniform(-20, 100, 200)
    _, d, _ = SurfaceQuery(verts, tris).closest(pts)
    rep = np.repeat(pts, len(tris), axis=0)
    tt = np.tile(tris, (len(pts), 1))
    brute = np.linalg.norm(closest_points_on_triangles(rep, verts[tt[:, 0]], verts[tt[:, 1]],
                                                       verts[tt[:, 2]]) - rep, axis=1)
    np.testing.assert_allclose(d, brute.reshape(len(pts), -1).min(axis=1), atol=1e-9)


def test_crop() -> None:
    pts = np.array([[0.0, 0, 0], [94.0, 0, 0], [96.0, 0, 0]])
    assert crop_scan(pts, np.zeros(3), 95.0).tolist() == [True, True, False]


def _setup(seed: int = 2):
    rng = np.random.default_rng(seed)
    verts, tris = _face_mesh()
    lm_ids = [int(np.argmin(np.linalg.norm(verts[:, :2] - xy, axis=1))) for xy in LANDMARKS_XY]
    # The scan (mm): points on the true surface + 0.1 mm noise; landmarks with 1.5 mm noise.
    scan = _sample_surface(verts, tris, 4000, rng) + rng.normal(0, 0.1, (4000, 3))
    scan_lm = verts[lm_ids] + rng.normal(0, 1.5, (7, 3))
    # The reconstruction: the same surface in another frame and unit (x 1/2.5, rotated).
    rot = Rotation.from_euler("xyz", [10, 40, -25], degrees=True).as_matrix()
    recon = (verts @ rot.T) / 2.5 + [5.0, -3.0, 100.0]
    return recon, tris, recon[lm_ids], scan, scan_lm, rot


def test_scan_error_recovers_known_similarity(tmp_path: Path) -> None:
    recon, tris, recon_lm, scan, scan_lm, rot = _setup()
    r = scan_error(recon, tris, recon_lm, scan, scan_lm)
    assert r.median < 0.08 and r.mean < 0.09  # the noise level (|N(0, 0.1)| ~ 0.08 mean)
    assert r.transform.scale == pytest.approx(2.5, rel=2e-3)
    np.testing.assert_allclose(r.transform.rotation, rot.T, atol=5e-3)
    assert r.landmark_rmse > 1.0  # Procrustes alone was off; the refinement fixed it
    assert len(r.distances) == len(r.scan_points) < len(scan)  # corners cropped
    plot_error_map(r, tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 2000
    assert "median" in r.table() and r.to_dict()["num_points"] == len(r.distances)


def test_scan_error_detects_shape_difference() -> None:
    recon, tris, recon_lm, scan, scan_lm, _ = _setup(3)
    centre = recon_lm[4]
    bumped = recon.copy()
    near = np.linalg.norm(recon - centre, axis=1) < 12  # a 2 mm (x 2.5) shift near the nose
    bumped[near] += (recon_lm[4] - recon.mean(axis=0)) / np.linalg.norm(
        recon_lm[4] - recon.mean(axis=0)) * 0.8
    good = scan_error(recon, tris, recon_lm, scan, scan_lm, max_iterations=5)
    bad = scan_error(bumped, tris, recon_lm, scan, scan_lm, max_iterations=5)
    assert bad.distances.max() > 1.0 > good.distances.max()


def test_scan_error_bad_inputs() -> None:
    recon, tris, recon_lm, scan, scan_lm, _ = _setup()
    with pytest.raises(ValueError):
        scan_error(recon, tris, recon_lm[:5], scan, scan_lm)
    with pytest.raises(ValueError, match="crop"):
        scan_error(recon, tris, recon_lm, scan + 1000.0, scan_lm)


def _sphere_cap(radius: float, n: int = 121) -> tuple[np.ndarray, np.ndarray]:
    """A fine triangulated cap (|x|, |y| <= 60 mm) of a sphere of ``radius`` centred at the
    origin, facing +z; (V, 3), (F, 3)."""
    verts, tris = _face_mesh(n)
    xy = verts[:, :2] * 0.75
    z = np.sqrt(radius**2 - (xy**2).sum(1))
    return np.column_stack([xy, z]), tris


def test_mesh_offset_along_normals_scores_offset() -> None:
    """A mesh moved 1 mm along its normals (a sphere of radius 90 -> 91 mm) is 1 mm from
    every scan point on the original surface: hand-computed, with the alignment fixed to
    the identity (landmarks equal, no refinement); with the refinement it can only drop."""
    rng = np.random.default_rng(0)
    verts, tris = _sphere_cap(90.0)
    offset = verts * (91.0 / 90.0)  # each vertex 1 mm along its (radial) normal
    pts = _sample_surface(verts, tris, 4000, rng)
    scan = pts * (90.0 / np.linalg.norm(pts, axis=1, keepdims=True))  # exactly on the sphere
    lm = np.column_stack([LANDMARKS_XY * 0.5, np.zeros(7)])
    lm[:, 2] = np.sqrt(90.0**2 - (lm[:, :2] ** 2).sum(1))
    fixed = scan_error(offset, tris, lm, scan, lm, max_iterations=0)
    assert fixed.transform.scale == pytest.approx(1.0, abs=1e-12)
    # flat triangles lie inside the 91 mm sphere by at most edge^2 / (8 R) ~ 0.003 mm
    assert fixed.median == pytest.approx(1.0, abs=0.005)
    assert fixed.mean == pytest.approx(1.0, abs=0.005) and fixed.std < 0.005
    refined = scan_error(offset, tris, lm, scan, lm, fit_points=1000)
    assert refined.mean <= fixed.mean + 1e-9 and len(refined.distances) == len(fixed.distances)


def test_fit_points_subset_matches_full_alignment() -> None:
    recon, tris, recon_lm, scan, scan_lm, _ = _setup()
    full = scan_error(recon, tris, recon_lm, scan, scan_lm)
    sub = scan_error(recon, tris, recon_lm, scan, scan_lm, fit_points=500)
    assert len(sub.distances) == len(full.distances)
    assert sub.median == pytest.approx(full.median, abs=0.01)
