import numpy as np
import pytest
import torch

from facefit.render import differentiable as dr
from facefit.render.raster import rasterize
from facefit.render.shading import vertex_normals as np_vertex_normals


def _grid(n=5, size=40.0):
    """A bumpy grid surface (x, y in [0, size]), counter-clockwise from +z."""
    u, v = np.meshgrid(np.linspace(0, size, n), np.linspace(0, size, n))
    z = 3.0 * np.sin(u / 9.0) * np.cos(v / 11.0)
    verts = np.stack([u, v, z], -1).reshape(-1, 3)
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    return verts, tris


def _double(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def test_sh_quadratic_form_matches_basis():
    n = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=1)
    sh = torch.randn(9, 3, dtype=torch.float64)
    assert torch.allclose(dr.sh_basis(n) @ sh, dr.sh_shading(n, sh), atol=1e-12)
    ambient = torch.zeros(9, 1, dtype=torch.float64)
    ambient[0] = dr.AMBIENT_L00
    assert torch.allclose(dr.sh_shading(n, ambient), torch.ones(50, 1, dtype=torch.float64),
                          atol=1e-5)


def test_light_direction_of_a_directional_light():
    d = np.array([0.3, -0.5, 0.8])
    d /= np.linalg.norm(d)
    sh = np.zeros((9, 3))
    sh[0] = 2.0
    sh[1:4] = np.array([d[1], d[2], d[0]])[:, None]
    assert np.allclose(dr.light_direction(sh), d)
    # the shading peaks along d
    normals = torch.nn.functional.normalize(torch.randn(2000, 3, dtype=torch.float64), dim=1)
    shading = dr.sh_shading(normals, torch.as_tensor(sh))[:, 0]
    assert (normals[shading.argmax()].numpy() @ d) > 0.95


def test_vertex_normals_match_numpy():
    verts, tris = _grid()
    ours = dr.vertex_normals(torch.tensor(verts), torch.tensor(tris)).numpy()
    assert np.allclose(ours, np_vertex_normals(verts, tris), atol=1e-5)
    stencil = dr.normal_stencil(verts, tris)
    st = dr.stencil_normals(torch.tensor(verts), torch.tensor(stencil)).numpy()
    inner = np.flatnonzero((verts[:, 0] > 0) & (verts[:, 0] < 40) & (verts[:, 1] > 0)
                           & (verts[:, 1] < 40))
    assert ((st[inner] * ours[inner]).sum(1) > np.cos(np.deg2rad(15))).all()


def test_gradcheck_shading_and_normals():
    verts, tris = _grid(4)
    tri = torch.tensor(tris)
    sh = _double(np.random.default_rng(0).normal(size=(9, 3)))
    alb = _double(np.random.default_rng(1).uniform(0.2, 0.8, (len(verts), 3)))
    bary = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], dtype=torch.float64)
    vids = tri[[1, 7]]

    def f(v, a, s):
        n = dr.vertex_normals(v, tri)
        ni = torch.nn.functional.normalize(dr.interpolate(n, vids, bary), dim=1)
        return dr.shade(ni, dr.interpolate(a, vids, bary), s, specular=0.3, shininess=4.0)

    assert torch.autograd.gradcheck(f, (_double(verts), alb, sh))


def test_gradcheck_stencil_normals_and_rotation():
    verts, tris = _grid(4)
    stencil = torch.tensor(dr.normal_stencil(verts, tris))
    assert torch.autograd.gradcheck(lambda v: dr.stencil_normals(v, stencil), (_double(verts),))
    assert torch.autograd.gradcheck(dr.rodrigues, (_double([0.2, -0.1, 0.3]),))
    r = dr.rodrigues(torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64))
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_torch_rotations_and_projection_are_the_core_ones():
    from facefit.fit.core.camera import ScaledOrthographicCamera
    from facefit.fit.core.rotation import rodrigues, skew

    w = np.array([0.2, -0.1, 0.3])
    tw = torch.tensor(w, dtype=torch.float64)
    np.testing.assert_allclose(dr.skew(tw).numpy(), skew(w), atol=0)
    np.testing.assert_allclose(dr.rodrigues(tw).numpy(), rodrigues(w)[0], atol=1e-12)
    # the second-order update agrees with Rodrigues to third order in the angle
    small = dr.small_rotation(tw * 1e-2).numpy()
    assert np.abs(small - rodrigues(w * 1e-2)[0]).max() < 1e-6
    assert torch.autograd.gradcheck(dr.small_rotation, (_double(w),))
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(9, 3)) * 40.0
    cam = ScaledOrthographicCamera(rodrigues(w)[0], 2.5, np.array([120.0, 90.0]))
    got = dr.scaled_orthographic(torch.tensor(pts @ cam.rotation.T), 2.5,
                                 torch.tensor(cam.translation))
    np.testing.assert_allclose(got.numpy(), cam.image_points(pts), atol=1e-12)


def test_gradcheck_image_sampling():
    rng = np.random.default_rng(2)
    image = _double(rng.uniform(size=(3, 6, 7)))
    xy = _double(rng.uniform(0.3, 4.7, (5, 2)) + 0.013)  # off the pixel grid (kinks)
    assert torch.autograd.gradcheck(dr.sample_image, (image, xy))
    # integer coordinates sample pixel centres
    at = dr.sample_image(image, torch.tensor([[2.0, 3.0]], dtype=torch.float64))
    assert torch.allclose(at[0], image[:, 3, 2])


def test_pixel_samples_and_render_agree_with_raster():
    verts, tris = _grid(9, 30.0)
    vp = verts.copy()
    vp[:, 2] = -vp[:, 2]  # depth: larger = farther; the grid faces the viewer (-z)
    vp[:, 1] = 30.0 - vp[:, 1]  # y down keeps the triangles facing the camera
    r = rasterize(vp, tris, 32, 32)
    s = dr.pixel_samples(vp, tris, 32, 32)
    assert len(s.pixel) == int(r.mask.sum())
    xy = dr.interpolate(torch.tensor(vp[:, :2]), s.vertex_ids, s.bary.double())
    assert torch.allclose(xy, s.xy.double(), atol=1e-4)  # interpolated = pixel centres
    sh = np.zeros((9, 3))
    sh[0] = dr.AMBIENT_L00
    color, cover = dr.render(torch.tensor(vp), tris, 32, 32, np.full((len(vp), 3), 0.5), sh)
    assert cover.sum() == len(s.pixel)
    assert torch.allclose(color[cover], torch.full((int(cover.sum()), 3), 0.5,
                                                   dtype=color.dtype), atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_matches_cpu():
    n = torch.nn.functional.normalize(torch.randn(20, 3), dim=1)
    sh = torch.randn(9, 3)
    assert torch.allclose(dr.sh_shading(n, sh), dr.sh_shading(n.cuda(), sh.cuda()).cpu(),
                          atol=1e-5)


def test_mesh_edges_are_the_unique_edges():
    _, tris = _grid(6)
    tris = np.concatenate([tris, tris[:3]])  # repeated triangles add no edge
    pairs = {tuple(sorted(e)) for t in tris.tolist() for e in ((t[0], t[1]), (t[1], t[2]),
                                                               (t[2], t[0]))}
    want = np.array(sorted(pairs))
    np.testing.assert_array_equal(dr.mesh_edges(tris), want)
    both = np.array(sorted(pairs | {(b, a) for a, b in pairs}))
    np.testing.assert_array_equal(dr.mesh_edges(tris, directed=True), both)


def test_normal_stencil_picks_the_farthest_neighbours_along_the_tangents():
    """On a flat grid with the model x axis in the surface (u = +x, v = n × u = +y), each
    inner vertex's stencil holds one-ring neighbours farthest along +x, -x, +y and -y."""
    n = 5
    verts, tris = _grid(n)
    verts[:, 2] = 0.0
    st = dr.normal_stencil(verts, tris)
    for i in (6, 7, 12, 18):
        ring = np.unique(tris[(tris == i).any(1)])
        ring = ring[ring != i]
        x, y = verts[ring, 0], verts[ring, 1]
        got = verts[st[i]]
        assert (got[0, 0], got[1, 0], got[2, 1], got[3, 1]) == (x.max(), x.min(), y.max(),
                                                                 y.min())
        assert set(st[i]) <= set(ring)
