"""`depth_buffer` (the texture's visibility z-buffer) and `finite_bounds` (crop windows)."""

import numpy as np
import pytest

from facefit.render.raster import crop_window, depth_buffer, finite_bounds, rasterize


def _mesh(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Random overlapping triangles of every size, some partly outside the grid."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-5, 45, (n, 2))
    size = rng.uniform(0.3, 12.0, (n, 1, 1))
    xy = centres[:, None, :] + size * rng.normal(size=(n, 3, 2))
    z = rng.uniform(0, 100, (n, 3))
    verts = np.concatenate([xy, z[..., None]], axis=2).reshape(-1, 3).astype(np.float32)
    return verts, np.arange(3 * n).reshape(n, 3)


@pytest.mark.parametrize("cull", [None, "back", "front"])
@pytest.mark.parametrize("seed", [0, 1])
def test_depth_buffer_is_the_rasters_depth(cull, seed):
    verts, tri = _mesh(seed)
    depth = depth_buffer(verts, tri, 37, 41, cull=cull)
    raster = rasterize(verts, tri, 37, 41, cull=cull)
    assert depth.dtype == np.float32 and depth.shape == (37, 41)
    np.testing.assert_array_equal(depth, raster.depth)
    # and the depth is the nearest of the covering triangles' planes at a covered pixel
    i, j = np.argwhere(np.isfinite(depth))[len(np.argwhere(np.isfinite(depth))) // 2]
    t = tri[raster.triangle_id[i, j]]
    b = raster.bary[i, j]
    assert depth[i, j] == pytest.approx(float(b @ verts[t, 2]), abs=1e-3)


def test_depth_buffer_empty_inputs():
    verts, tri = _mesh(0, 3)
    assert np.isinf(depth_buffer(verts, tri[:0], 5, 6)).all()
    assert depth_buffer(verts, tri, 0, 6).shape == (0, 6)
    far = verts + np.array([1000, 1000, 0], np.float32)
    assert np.isinf(depth_buffer(far, tri, 5, 6)).all()


def test_finite_bounds_ignore_non_finite_vertices():
    rng = np.random.default_rng(3)
    v = rng.uniform(-50, 300, (500, 3))
    lo, hi = finite_bounds(v)
    np.testing.assert_array_equal(lo, v[:, :2].min(0))
    np.testing.assert_array_equal(hi, v[:, :2].max(0))
    bad = v.copy()
    bad[[3, 70], 0] = np.nan
    bad[100, 1] = np.inf
    bad[200, 1] = -np.inf
    ok = np.isfinite(bad[:, :2]).all(1)
    lo, hi = finite_bounds(bad)
    np.testing.assert_array_equal(lo, v[ok, :2].min(0))
    np.testing.assert_array_equal(hi, v[ok, :2].max(0))
    assert finite_bounds(np.full((4, 3), np.nan)) == (None, None)
    assert finite_bounds(np.zeros((0, 3))) == (None, None)
    # a non-finite depth does not matter
    bad[5, 2] = np.nan
    assert crop_window(bad, 200, 250) == crop_window(bad[ok], 200, 250)
