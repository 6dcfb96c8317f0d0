import os

import numpy as np
import pytest

from facefit.render import raster
from facefit.render.raster import crop_window, depth_buffer, interpolate, rasterize

NATIVE = raster._NATIVE


@pytest.fixture(autouse=True, params=["native", "numpy"])
def backend(request, monkeypatch):
    """Every test runs on the compiled rasteriser and on the numpy one."""
    if request.param == "native":
        if NATIVE is None:
            pytest.skip("compiled rasteriser not built")
    else:
        monkeypatch.setattr(raster, "_NATIVE", None)
    return request.param


def _inside_reference(tri_xy, h, w):
    """Pixel centres (x = column, y = row) inside a 2D triangle: same-sign edge functions,
    and the distance of each centre to the nearest edge line (to skip ambiguous pixels)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    signs, dists = [], []
    for k in range(3):
        (ax, ay), (bx, by) = tri_xy[k], tri_xy[(k + 1) % 3]
        e = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
        signs.append(e)
        dists.append(np.abs(e) / np.hypot(bx - ax, by - ay))
    s = np.stack(signs)
    inside = (s >= 0).all(0) | (s <= 0).all(0)
    return inside, np.min(dists, axis=0)


@pytest.mark.parametrize("tri_xy", [
    [(3.3, 2.7), (25.8, 8.1), (9.6, 21.4)],
    [(3.3, 2.7), (9.6, 21.4), (25.8, 8.1)],  # other winding
    [(-10.5, -4.2), (45.1, 6.3), (12.2, 40.7)],  # clipped by the image borders
    [(5.2, 5.1), (5.9, 5.4), (5.5, 6.3)],  # smaller than a pixel
])
def test_single_triangle_coverage_matches_point_in_triangle(tri_xy):
    h, w = 30, 36
    verts = np.array([[x, y, 5.0] for x, y in tri_xy], np.float32)
    r = rasterize(verts, np.array([[0, 1, 2]]), h, w)
    ref, dist = _inside_reference(np.array(tri_xy, np.float64), h, w)
    clear = dist > 1e-4
    np.testing.assert_array_equal(r.mask[clear], ref[clear])
    assert np.all(r.depth[r.mask] == pytest.approx(5.0))
    assert np.all(np.isinf(r.depth[~r.mask]))
    assert np.all(r.triangle_id[~r.mask] == -1)


def test_barycentrics_sum_to_one_and_reproduce_pixel_centres():
    verts = np.array([[2.2, 1.5, 1.0], [30.7, 4.1, 3.0], [12.4, 26.9, 8.0]], np.float32)
    r = rasterize(verts, np.array([[0, 1, 2]]), 32, 32)
    b = r.bary[r.mask]
    assert len(b) > 100
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-5)
    assert (b >= -1e-5).all()
    rows, cols = np.nonzero(r.mask)
    np.testing.assert_allclose(b @ verts[:, 0], cols, atol=1e-3)
    np.testing.assert_allclose(b @ verts[:, 1], rows, atol=1e-3)
    np.testing.assert_allclose(r.depth[r.mask], b @ verts[:, 2], atol=1e-4)
    np.testing.assert_allclose(interpolate(r, verts[:, 2])[r.mask], r.depth[r.mask], atol=1e-4)
    xy = interpolate(r, verts[:, :2])
    assert xy.shape == (32, 32, 2) and (xy[~r.mask] == 0).all()


@pytest.mark.parametrize("near_first", [True, False])
def test_overlapping_triangles_nearest_wins(near_first):
    near = [[0, 0, 1.0], [20, 0, 1.0], [0, 20, 1.0]]
    far = [[2, 2, 5.0], [24, 2, 5.0], [2, 24, 5.0]]
    verts = np.array(near + far if near_first else far + near, np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    r = rasterize(verts, tris, 26, 26)
    near_id = 0 if near_first else 1
    assert r.triangle_id[5, 5] == near_id and r.depth[5, 5] == pytest.approx(1.0)
    assert r.triangle_id[12, 10] == 1 - near_id and r.depth[12, 10] == pytest.approx(5.0)
    assert r.triangle_id[25, 25] == -1


def test_shared_edges_leave_no_gaps_and_culling():
    # A 12 x 12 quad split along its diagonal, pixel centres exactly on the diagonal.
    verts = np.array([[2, 2, 0], [14, 2, 0], [14, 14, 0], [2, 14, 0]], np.float32)
    # Counter-clockwise as the viewer sees the screen (negative signed area in x-right,
    # y-down coordinates): front-facing.
    tris = np.array([[0, 2, 1], [0, 3, 2]])
    r = rasterize(verts, tris, 16, 16)
    expect = np.zeros((16, 16), bool)
    expect[2:15, 2:15] = True
    np.testing.assert_array_equal(r.mask, expect)
    assert rasterize(verts, tris, 16, 16, cull="back").mask.sum() == expect.sum()
    assert not rasterize(verts, tris, 16, 16, cull="front").mask.any()


def test_many_small_triangles_cover_a_grid_without_holes():
    n = 60  # 2 * 59**2 triangles of about 0.4 px on a 24 x 24 px square
    u, v = np.meshgrid(np.linspace(3, 27, n), np.linspace(3, 27, n))
    verts = np.stack([u, v, u * 0.1], -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    r = rasterize(verts, tris, 32, 32)
    expect = np.zeros((32, 32), bool)
    expect[3:28, 3:28] = True
    np.testing.assert_array_equal(r.mask, expect)
    np.testing.assert_allclose(r.depth[r.mask], np.nonzero(r.mask)[1] * 0.1, atol=1e-4)


def test_empty_and_degenerate_inputs():
    r = rasterize(np.zeros((0, 3)), np.zeros((0, 3), int), 4, 5)
    assert r.triangle_id.shape == (4, 5) and not r.mask.any()
    flat = np.array([[1, 1, 0], [3, 3, 0], [5, 5, 0]], np.float32)  # zero area
    assert not rasterize(flat, np.array([[0, 1, 2]]), 8, 8).mask.any()
    assert crop_window(flat, 8, 8) == (0, 0, 7, 7)


def _random_mesh(seed: int, n: int = 300, faces: int = 700, flat: bool = False):
    rng = np.random.default_rng(seed)
    verts = rng.uniform(-15, 75, (n, 3)).astype(np.float32)
    if flat:
        verts[:, 2] = 0.0  # every overlap is a depth tie
    return verts, rng.integers(0, n, (faces, 3))


@pytest.mark.parametrize("cull", [None, "back", "front"])
@pytest.mark.parametrize("flat", [False, True])
def test_compiled_and_numpy_rasterisers_agree_exactly(backend, monkeypatch, cull, flat):
    if NATIVE is None:
        pytest.skip("compiled rasteriser not built")
    verts, tris = _random_mesh(3, flat=flat)
    verts[7] = np.nan  # a vertex that is not a number drops its triangles in both
    verts[11, 0] = np.inf
    monkeypatch.setattr(raster, "_NATIVE", NATIVE)
    a = rasterize(verts, tris, 50, 61, cull=cull)
    da = depth_buffer(verts, tris, 50, 61, cull=cull)
    monkeypatch.setattr(raster, "_NATIVE", None)
    with np.errstate(invalid="ignore"):  # the numpy path computes with the NaN vertex
        b = rasterize(verts, tris, 50, 61, cull=cull)
    assert a.mask.sum() > 1000
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(da, b.depth)
    np.testing.assert_array_equal(a.triangle_id, b.triangle_id)
    np.testing.assert_array_equal(a.bary, b.bary)


def test_depth_ties_go_to_the_larger_triangle_id():
    # two identical triangles at the same depth: the later one is drawn
    verts = np.array([[1, 1, 2], [9, 1, 2], [1, 9, 2]], np.float32)
    r = rasterize(verts, np.array([[0, 1, 2], [0, 2, 1]]), 10, 10)
    assert r.mask.sum() > 20 and (r.triangle_id[r.mask] == 1).all()


def test_bad_triangle_ids_raise():
    verts = np.zeros((3, 3), np.float32)
    with pytest.raises(IndexError):
        rasterize(verts, np.array([[0, 1, 3]]), 4, 4)


def test_compiled_rasteriser_is_built():
    """`make install` builds the extension (gcc is a stated requirement); without it every
    render runs 4-10x slower on the numpy path."""
    if os.environ.get("FACEFIT_NATIVE") == "0":
        pytest.skip("FACEFIT_NATIVE=0")
    assert NATIVE is not None


@pytest.mark.parametrize("shape", [(60, 70), (1, 5), (5, 1), (2, 2)])
def test_compiled_bilinear_samples_are_cv2_remaps(backend, shape):
    """`sample_rgb8` reproduces OpenCV's 8-bit bilinear remap bit for bit (points inside,
    on 1/64-pixel ties and outside the image, where the border is replicated)."""
    import cv2

    if backend == "numpy":
        assert raster.sample_rgb8(np.zeros((2, 2, 3), np.uint8), np.zeros((1, 2))) is None
        return
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xy = np.stack([rng.uniform(-5, w + 5, 20000), rng.uniform(-5, h + 5, 20000)], 1)
    xy[:500] = np.round(xy[:500] * 64) / 64  # halfway between 1/32 steps: rounding ties
    xy = xy.astype(np.float32)
    ref = cv2.remap(img, xy.reshape(-1, 100, 2), None, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)
    np.testing.assert_array_equal(raster.sample_rgb8(img, xy), ref.astype(np.float32))


def test_compiled_interpolation_matches_numpy(monkeypatch):
    if NATIVE is None:
        pytest.skip("compiled rasteriser not built")
    verts, tris = _random_mesh(4)
    attrs = np.random.default_rng(2).standard_normal((len(verts), 3)).astype(np.float32)
    r = rasterize(verts, tris, 50, 61)
    monkeypatch.setattr(raster, "_NATIVE", NATIVE)
    a, a1 = interpolate(r, attrs), interpolate(r, attrs[:, 0])
    monkeypatch.setattr(raster, "_NATIVE", None)
    b, b1 = interpolate(r, attrs), interpolate(r, attrs[:, 0])
    assert r.mask.sum() > 1000 and (a[~r.mask] == 0).all()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a1, b1)
