import numpy as np
import pytest

from facefit.fit.camera import rotation_from_euler
from facefit.render.raster import rasterize
from facefit.render.shading import face_normals, render_shaded, vertex_normals


def _cap(n=25):
    """A dome in the model frame (y up, z towards the viewer), counter-clockwise from outside."""
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    z = np.sqrt(np.clip(1.5 - u**2 - v**2, 0, None))
    verts = np.stack([u * 40, v * 50, z * 30], -1).reshape(-1, 3)
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    return verts, tris


def _to_image(verts_model, rotation, s=2.0, c=(80.0, 90.0)):
    """Scaled orthographic projection: x = s X + cx, y = -s Y + cy, depth = -s Z."""
    v = verts_model @ rotation.T
    return np.stack([s * v[:, 0] + c[0], -s * v[:, 1] + c[1], -s * v[:, 2]], 1).astype(np.float32)


def test_model_frame_normals_point_out_of_the_face():
    verts, tris = _cap()
    fn = face_normals(verts, tris)
    assert (fn[:, 2] > 0).all()
    vn = vertex_normals(verts, tris)
    centre = len(verts) // 2
    np.testing.assert_allclose(vn[centre], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vn, axis=1), 1, atol=1e-5)


def test_visible_front_faces_point_towards_the_camera_in_image_space():
    verts, tris = _cap()
    for yaw in (0.0, 35.0, -35.0):
        vp = _to_image(verts, rotation_from_euler(yaw, 10.0, 5.0))
        fn = face_normals(vp, tris)
        r = rasterize(vp, tris, 180, 180)
        seen = np.unique(r.triangle_id[r.mask])
        assert len(seen) > 100
        assert (fn[seen, 2] < 0).mean() > 0.98  # a few grazing faces at the silhouette
        # Front-facing <=> negative signed area in x-right, y-down coordinates.
        d1, d2 = vp[tris[:, 1]] - vp[tris[:, 0]], vp[tris[:, 2]] - vp[tris[:, 0]]
        area = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
        np.testing.assert_array_equal(np.sign(area[seen]), np.sign(fn[seen, 2]))
    # Seen from behind, the faces point away.
    vp = _to_image(verts, rotation_from_euler(0.0, 0.0, 0.0) @ np.diag([-1.0, 1.0, -1.0]))
    assert (face_normals(vp, tris)[:, 2] > 0).all()


def test_render_shaded_lights_the_front_and_masks_the_background():
    verts, tris = _cap()
    vp = _to_image(verts, np.eye(3))
    rgb, mask = render_shaded(vp, tris, 180, 180, light_dir=(0, 0, -1), ambient=0.2)
    assert rgb.shape == (180, 180, 3) and rgb.dtype == np.float32 and mask.dtype == bool
    assert (rgb[~mask] == 0).all() and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_array_equal(mask, rasterize(vp, tris, 180, 180).mask)
    centre = rgb[90, 80, 0]
    edge = rgb[mask][:, 0].min()
    assert centre > 0.8 and edge < centre


def test_compiled_triangle_cross_equals_numpy(monkeypatch):
    from facefit.render import raster
    from facefit.render.shading import triangle_cross

    if raster._NATIVE is None:
        pytest.skip("compiled rasteriser not built")
    rng = np.random.default_rng(5)
    verts = rng.normal(0, 40, (200, 3)).astype(np.float32)
    tris = rng.integers(0, 200, (500, 3))
    native = triangle_cross(verts, tris)
    monkeypatch.setattr(raster, "_NATIVE", None)
    np.testing.assert_array_equal(native, triangle_cross(verts, tris))
    with pytest.raises(IndexError):
        monkeypatch.undo()
        triangle_cross(verts, np.array([[0, 1, 200]]))
