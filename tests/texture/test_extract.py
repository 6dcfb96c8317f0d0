import numpy as np
import pytest

from facefit.model.morphable_model import MorphableModel
from facefit.texture.extract import extract_texture


def _grid_model(n=33, extra_verts=None, extra_tris=None):
    """A flat n x n grid in the model frame (x right, y up), UVs spanning [0, 1]^2, mirror
    ids u -> 1 - u; optional extra vertices (with degenerate UVs) and triangles."""
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    mean = np.stack([(u - 0.5) * 100, (v - 0.5) * 100, 0 * u], -1).reshape(-1, 3)
    uv = np.stack([u.ravel(), v.ravel()], 1)
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    mirror = np.arange(n * n).reshape(n, n)[:, ::-1].ravel()
    if extra_verts is not None:
        k = len(extra_verts)
        mean = np.concatenate([mean, extra_verts])
        uv = np.concatenate([uv, np.zeros((k, 2))])
        mirror = np.concatenate([mirror, np.arange(n * n, n * n + k)])
        tris = np.concatenate([tris, np.asarray(extra_tris) + n * n])
    nv = len(mean)
    return MorphableModel("grid", mean.astype(np.float32), np.zeros((nv, 3, 0), np.float32),
                          np.zeros((nv, 3, 0), np.float32), tris.astype(np.int32),
                          uv.astype(np.float32), {}, mirror)


def _gradient_image(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x + 10, y + 10, 100 + 0 * x], -1).astype(np.uint8)


def _project(model, offset=20.0, scale=2.0, depth=0.0):
    """x = offset + scale * (X + 50), y = offset + scale * (50 - Y): u = 0..1 maps to
    x = offset..offset + 100 scale, v = 1..0 to y = offset..offset + 100 scale."""
    m = model.mean
    return np.stack([offset + scale * (m[:, 0] + 50), offset + scale * (50 - m[:, 1]),
                     depth - scale * m[:, 2]], 1).astype(np.float32)


def _texel_centres(size, offset=20.0, scale=2.0):
    j = (np.arange(size) + 0.5) / size
    x = offset + 100 * scale * j  # u of column j
    y = offset + 100 * scale * j  # 1 - v of row i
    return x, y


def test_visible_texels_reproduce_the_image():
    model = _grid_model()
    image = _gradient_image(240, 240)
    tex, vcol = extract_texture(model, _project(model), image, size=64)
    assert tex.shape == (64, 64, 3) and tex.dtype == np.uint8
    x, y = _texel_centres(64)
    np.testing.assert_allclose(tex[..., 0], np.broadcast_to(x[None, :] + 10, (64, 64)), atol=1)
    np.testing.assert_allclose(tex[..., 1], np.broadcast_to(y[:, None] + 10, (64, 64)), atol=1)
    assert (tex[..., 2] == 100).all()
    vp = _project(model)
    assert vcol.shape == (len(model.mean), 3) and vcol.dtype == np.uint8
    # vertex colours: the photo at the vertex (texels at the layout's edge blend with the fill)
    np.testing.assert_allclose(vcol[:, 0], vp[:, 0] + 10, atol=2.5)
    np.testing.assert_allclose(vcol[:, 1], vp[:, 1] + 10, atol=2.5)


def test_back_facing_mesh_is_not_sampled():
    model = _grid_model()
    vp = _project(model)
    vp[:, 0] = 240 - vp[:, 0]  # mirrored in x: every triangle faces away
    image = _gradient_image(240, 240)
    tex, _ = extract_texture(model, vp, image, size=32)
    assert (tex == 0).all()  # nothing visible, nothing to fill from


@pytest.mark.parametrize("how", ["outside_image", "occluded"])
def test_hidden_half_is_filled_from_its_mirror(how):
    n, size = 33, 64
    if how == "occluded":
        # An occluder quad (no UV area) in front of the right half (u > 0.5) of the grid.
        quad = np.array([[0.5, -60, 30], [60, -60, 30], [60, 60, 30], [0.5, 60, 30]])
        model = _grid_model(n, quad, [[0, 1, 2], [0, 2, 3]])
        image = _gradient_image(240, 240)
    else:
        model = _grid_model(n)
        image = _gradient_image(240, 121)  # the right half (x > 120) is outside the image
    vp = _project(model)
    tex, vcol = extract_texture(model, vp, image, size=size)
    x, y = _texel_centres(size)
    left = slice(0, size // 2 - 1)  # texels clearly left of u = 0.5
    np.testing.assert_allclose(tex[:, left, 0], np.broadcast_to(x[None, left] + 10,
                                                                (size, size // 2 - 1)), atol=1)
    right = slice(size // 2 + 1, size)
    np.testing.assert_array_equal(tex[:, right], tex[:, left][:, ::-1])
    # Hidden vertices take their mirror vertex's colour.
    grid = np.arange(n * n).reshape(n, n)
    hidden = grid[:, n // 2 + 2:].ravel()
    np.testing.assert_array_equal(vcol[hidden], vcol[model.mirror_ids[hidden]])


def test_no_holes_remain():
    # The top rows of the grid are outside the image on both sides: no mirror to fill from.
    model = _grid_model()
    image = _gradient_image(240, 240)
    vp = _project(model, offset=20.0)
    vp[:, 1] -= 60  # the top 40 of 200 px of the face are above the image
    tex, vcol = extract_texture(model, vp, image, size=64)
    assert tex.min() >= 10 and (tex[..., 2] == 100).all()  # smooth fill, no black texels
    g = tex[..., 1].astype(int)
    hole, seen = g[:12], g[14:]  # v near 1 (rows 0-12 are above the image) and visible rows
    assert 10 <= hole.min() and hole.max() < seen.mean()  # from the near side of the image
    assert np.abs(np.diff(g, axis=0)).max() <= 6 and np.abs(np.diff(g, axis=1)).max() <= 1
    assert vcol.min() >= 10


def test_large_face_coarse_zbuffer_keeps_visibility():
    # A face 600 px across: the visibility z-buffer is rasterised on a coarser grid
    # (ZBUFFER_SIDE); the occluded half must still be hidden and the seen half sampled.
    from facefit.render.raster import crop_window
    from facefit.texture.extract import ZBUFFER_SIDE, _zbuffer

    n, size, scale = 33, 64, 6.0
    quad = np.array([[0.5, -60, 30], [60, -60, 30], [60, 60, 30], [0.5, 60, 30]])
    model = _grid_model(n, quad, [[0, 1, 2], [0, 2, 3]])
    vp = _project(model, scale=scale)
    h = w = 680
    depth, _, _, step = _zbuffer(vp, model.triangles, crop_window(vp, h, w), ZBUFFER_SIDE)
    assert step > 2 and max(depth.shape) <= ZBUFFER_SIDE + 1
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x / 4 + 10, y / 4 + 10, 100 + 0 * x], -1).astype(np.uint8)
    tex, _ = extract_texture(model, vp, image, size=size)
    xc, yc = _texel_centres(size, scale=scale)
    left = slice(0, size // 2 - 1)
    np.testing.assert_allclose(tex[:, left, 0], np.broadcast_to(
        np.floor(xc[None, left] / 4 + 10), (size, size // 2 - 1)), atol=1)
    np.testing.assert_allclose(tex[:, left, 1], np.broadcast_to(
        np.floor(yc[:, None] / 4 + 10), (size, size // 2 - 1)), atol=1)
    right = slice(size // 2 + 1, size)
    np.testing.assert_array_equal(tex[:, right], tex[:, left][:, ::-1])


@pytest.mark.parametrize(("scale", "max_size", "min_size", "expected"), [
    (2.0, 512, 256, 256),  # 200 px a UV unit: 2^round(log2 200) = 256
    (1.0, 512, 64, 128),  # 100 px: 128
    (1.0, 512, 256, 256),  # ... clamped up to the smallest side
    (3.5, 1024, 256, 256),  # 350 px: log2 = 8.45, still 256
    (3.7, 1024, 256, 512),  # 370 px: log2 = 8.53, 512
    (8.0, 1024, 256, 1024),  # 800 px: 1024
    (8.0, 512, 256, 512),  # ... capped by the largest side
    (8.0, 64, 256, 64),  # a cap below the smallest side is the side
])
def test_face_texture_size_is_the_nearest_power_of_two_to_the_texel_density(
        scale, max_size, min_size, expected):
    from facefit.texture.extract import face_texture_size

    model = _grid_model()
    # the grid's unit UV square covers (100 scale)^2 pixels: density 100 scale texels a side
    vp = _project(model, scale=scale)
    assert face_texture_size(model, vp, max_size, min_size) == expected


def test_face_texture_size_counts_only_what_faces_the_camera():
    from facefit.texture.extract import face_texture_size

    model = _grid_model()
    vp = _project(model, scale=8.0)
    vp[:, 0] = 2000 - vp[:, 0]  # mirrored: every triangle faces away, nothing to sample
    assert face_texture_size(model, vp, 1024, 256) == 256
    # the right half folded back and squeezed to a tenth (it faces away): the density of the
    # visible left half alone (800 px a UV unit: 1024); with the hidden half's area, 593: 512
    vp = _project(model, scale=8.0)
    right = model.mean[:, 0] > 0
    vp[right, 0] = vp[right, 0].min() - 0.1 * (vp[right, 0] - vp[right, 0].min())
    assert face_texture_size(model, vp, 1024, 256) == 1024
