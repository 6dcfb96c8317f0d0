"""The fast video overlay renderer draws the same picture as `render_overlay`."""

import numpy as np

from facefit.fit.camera import rotation_from_euler
from facefit.fit.landmark_fit import _Pose
from facefit.io.export import render_overlay
from facefit.model import load_default_model
from facefit.render.overlay import OverlayRenderer


def test_overlay_matches_reference_render() -> None:
    m = load_default_model()
    r = OverlayRenderer(m.mean, m.triangles, rim_mm=0.0)  # the reference has no rim fade
    assert len(r.levels[-1].triangles) < 0.3 * len(m.triangles)
    img = np.full((240, 320, 3), 90, np.uint8)
    pose = _Pose(rotation_from_euler(20, 5, 0), 0.6, np.array([160.0, 120.0]))
    xy, d = pose.project(m.vertices(np.zeros(m.num_shape)).astype(np.float64))
    v = np.column_stack([xy, d]).astype(np.float32)
    assert r.level_for(0.6).cell_mm == 3.0 and r.level_for(5.0).cell_mm == 0.0
    a = render_overlay(img, v, m.triangles).astype(int)
    b = r.render(img, v, 0.6).astype(int)
    assert ((a != 90).any(2) == (b != 90).any(2)).mean() > 0.995  # same silhouette
    assert np.abs(a - b).mean() < 0.5 and (np.abs(a - b).max(2) > 10).mean() < 0.01


def test_overlay_fades_out_at_the_open_edge() -> None:
    from facefit.render.rim import rim_weight

    m = load_default_model()
    img = np.full((400, 400, 3), 90, np.uint8)
    pose = _Pose(rotation_from_euler(0, 0, 0), 1.2, np.array([200.0, 200.0]))
    xy, d = pose.project(m.vertices(np.zeros(m.num_shape)).astype(np.float64))
    v = np.column_stack([xy, d]).astype(np.float32)
    full = {"half_res_above": None}  # pixel-exact coverage (half resolution: see below)
    hard = OverlayRenderer(m.mean, m.triangles, rim_mm=0.0, **full).render(img, v, 1.2)
    soft = OverlayRenderer(m.mean, m.triangles, **full).render(img, v, 1.2).astype(int)
    hard = hard.astype(int)
    w = rim_weight(m.mean, m.triangles)
    used = np.zeros(len(w), bool)
    used[m.triangles.ravel()] = True  # vertices the mesh leaves out have weight 1 too
    rim = np.round(v[w == 0, :2]).astype(int)
    core = np.round(v[(w == 1) & used, :2]).astype(int)
    at = lambda im, p: np.abs(im[p[:, 1], p[:, 0]] - 90).max(1)  # noqa: E731
    assert at(soft, rim).mean() < 0.5 * at(hard, rim).mean()  # the cut is faded out
    # coverage unchanged at the core, but where a faded rim lies in front of it (17 of 38,911
    # vertices of the default mesh, whose border is cut along a smooth curve)
    assert ((at(soft, core) > 0) != (at(hard, core) > 0)).mean() < 1e-3
    diff = np.abs(soft - hard)[core[:, 1], core[:, 0]].max(1)
    assert (diff > 2).mean() < 0.01  # the face is unchanged (but where the rim lies in front)


def test_half_resolution_render_matches_full_resolution() -> None:
    m = load_default_model()
    img = np.random.default_rng(0).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    pose = _Pose(rotation_from_euler(-25, 10, 5), 1.2, np.array([330.0, 250.0]))
    xy, d = pose.project(m.vertices(np.zeros(m.num_shape)).astype(np.float64))
    v = np.column_stack([xy, d]).astype(np.float32)
    full = OverlayRenderer(m.mean, m.triangles, half_res_above=None).render(img, v, 1.2)
    half_r = OverlayRenderer(m.mean, m.triangles, half_res_above=1.0)
    assert half_r.level_for(1.2 / 2).cell_mm > half_r.level_for(1.2).cell_mm
    half = half_r.render(img, v, 1.2)
    a, b = full.astype(int), half.astype(int)
    drawn = (a != img).any(2)
    assert drawn.mean() > 0.1 and ((b != img).any(2) == drawn).mean() > 0.99
    assert np.abs(a - b).mean() < 0.5 and (np.abs(a - b).max(2) > 10).mean() < 0.01
    # below the threshold the picture is the full resolution one, bit for bit
    np.testing.assert_array_equal(
        OverlayRenderer(m.mean, m.triangles, half_res_above=1.3).render(img, v, 1.2), full)


def test_compiled_blend_matches_numpy(monkeypatch) -> None:
    """The compiled interpolation and blend (``ff_interpolate``, ``ff_overlay_blend``) draw
    the numpy path's picture byte for byte, at full and at half resolution."""
    import pytest

    from facefit.render import raster

    native = raster.native_library()
    if native is None:
        pytest.skip("compiled extension not built")
    m = load_default_model()
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (300, 340, 3), dtype=np.uint8)
    pose = _Pose(rotation_from_euler(35, -8, 4), 1.4, np.array([170.3, 150.6]))
    xy, d = pose.project(m.vertices(np.zeros(m.num_shape)).astype(np.float64))
    v = np.column_stack([xy, d]).astype(np.float32)
    for half in (None, 1.0):
        r = OverlayRenderer(m.mean, m.triangles, half_res_above=half)
        a = r.render(img, v, 1.4, pose.project(m.mean[:5].astype(np.float64))[0])
        monkeypatch.setattr(raster, "_NATIVE", None)
        b = r.render(img, v, 1.4, pose.project(m.mean[:5].astype(np.float64))[0])
        monkeypatch.setattr(raster, "_NATIVE", native)
        assert (a != img).any(2).mean() > 0.2
        np.testing.assert_array_equal(a, b)
