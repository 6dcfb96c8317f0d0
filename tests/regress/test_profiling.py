"""Face-profiling geometry on a synthetic photo whose colours encode their own pixel position
(R = x, G = y), so a rendered pixel tells where in the photo it came from."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.fit.camera import euler_from_rotation, rotation_from_euler
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.model.bfm_3ddfa import load_default_model
from facefit.regress.profiling import (
    IBUG68_MIRROR,
    crop_view,
    fit_crop,
    jitter_crops,
    map_params,
    map_points,
    mirror_view,
    photometric_augment,
    synthesise_view,
)
from facefit.render.raster import rasterize


@pytest.fixture(scope="module")
def scene():
    model = load_default_model()
    rng = np.random.default_rng(3)
    shape = rng.normal(0, 0.5, model.num_shape)
    expr = rng.normal(0, 0.3, model.num_expression)
    cam = ScaledOrthographicCamera(rotation_from_euler(10.0, -5.0, 3.0), 0.55,
                                   np.array([128.0, 120.0]))
    pts = cam.image_points(model.vertices(shape, expr, ids=model.landmark_ids["ibug68"]))[:, :2]
    yy, xx = np.mgrid[0:256, 0:256]
    image = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    fit = fit_crop(model, image, pts.astype(np.float32))
    return model, image, fit


def _label_projection(model, view) -> np.ndarray:
    """68 points from the labels through facefit's camera class (independent of profiling)."""
    cam = ScaledOrthographicCamera(view.rotation, view.scale, np.asarray(view.translation))
    v = model.vertices(view.shape, view.expression, ids=model.landmark_ids["ibug68"])
    return cam.image_points(v)[:, :2]


def test_zero_rotation_returns_input(scene):
    model, image, fit = scene
    v = synthesise_view(model, image, fit, 0.0)
    assert np.abs(v.image.astype(int) - image).max() <= 1
    assert np.abs(v.landmarks_68 - fit.landmarks_68_2d).max() < 1e-3
    np.testing.assert_allclose(v.rotation, fit.rotation, atol=1e-12)


@pytest.mark.parametrize("angles", [(60.0, 8.0, -6.0), (-85.0, -5.0, 4.0)])
def test_rotated_view_labels_and_pixels(scene, angles):
    model, image, fit = scene
    v = synthesise_view(model, image, fit, *angles)
    # Labels agree with their own projection through the camera class, < 0.5 px.
    assert np.abs(_label_projection(model, v) - v.landmarks_68).max() < 0.5
    # The pose is the fitted one turned by the requested rotation.
    np.testing.assert_allclose(v.rotation, rotation_from_euler(*angles) @ fit.rotation,
                               atol=1e-9)
    # Every model vertex the new view shows (z-buffer of the labelled mesh) is rendered with
    # the photo's colour at the place the fit put that vertex in the photo.
    cam = ScaledOrthographicCamera(v.rotation, v.scale, np.asarray(v.translation))
    new = cam.image_points(model.vertices(v.shape, v.expression)).astype(np.float32)
    ras = rasterize(new, model.triangles, 256, 256)
    xy = np.rint(new[:, :2]).astype(int)
    inside = ((xy >= 0) & (xy < 256)).all(1)
    seen = np.zeros(len(new), bool)
    seen[inside] = new[inside, 2] <= ras.depth[xy[inside, 1], xy[inside, 0]] + 0.5
    drawn = np.zeros(len(new), bool)
    drawn[model.triangles.ravel()] = True  # vertices no triangle uses are not rendered
    seen &= drawn
    assert seen.sum() > 5000
    decoded = v.image[xy[seen, 1], xy[seen, 0], :2].astype(float)
    err = np.linalg.norm(decoded - fit.verts_px[seen, :2], axis=1)
    assert np.median(err) < 1.0 and np.percentile(err, 90) < 2.0
    # The crop corner far from the face moves much less than the nose (the grid is pinned
    # 64 px outside the crop).
    corner = np.abs(v.image[0, :8, :2].astype(int) - image[0, :8, :2]).max()
    nose = np.abs(v.landmarks_68[30] - fit.landmarks_68_2d[30]).max()
    assert corner < 0.4 * nose, (corner, nose)


def test_crop_and_mirror_keep_labels(scene):
    model, image, fit = scene
    v = crop_view(synthesise_view(model, image, fit, 45.0), 120, shift=(0.03, -0.02), zoom=1.05)
    assert v.image.shape == (120, 120, 3)
    assert np.abs(_label_projection(model, v) - v.landmarks_68).max() < 0.5
    m = mirror_view(model, v)
    assert np.abs(_label_projection(model, m) - m.landmarks_68).max() < 0.5
    assert euler_from_rotation(m.rotation)[0] == pytest.approx(-euler_from_rotation(v.rotation)[0])
    flipped = np.c_[119 - v.landmarks_68[:, 0], v.landmarks_68[:, 1]][IBUG68_MIRROR]
    assert np.abs(m.landmarks_68 - flipped).max() < 1.5  # mirror-map coefficient transfer
    np.testing.assert_array_equal(m.image, v.image[:, ::-1])


def test_ibug_mirror_matches_model_mirror_map():
    model = load_default_model()
    lm = model.landmark_ids["ibug68"]
    pts = model.mean[lm]
    mirrored = model.mean[model.mirror_ids[lm]]
    # the model's mirror of landmark i lies near landmark IBUG68_MIRROR[i]
    d = np.linalg.norm(mirrored - pts[IBUG68_MIRROR], axis=1)
    assert np.median(d) < 1.0 and d.max() < 8.0
    assert (IBUG68_MIRROR[IBUG68_MIRROR] == np.arange(68)).all()


def test_photometric_augment_is_seeded_and_keeps_shape():
    img = np.full((64, 64, 3), 128, np.uint8)
    a = photometric_augment(img, np.random.default_rng(1))
    b = photometric_augment(img, np.random.default_rng(1))
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_jittered_crops_move_pixels_and_labels_together(scene):
    """A re-cut crop's labels (parameters and points) follow its pixels: the photo's colours
    encode their position, so the colour under a mapped landmark is the colour that was under
    the original one."""
    model, image, fit = scene
    v = crop_view(synthesise_view(model, image, fit, 30.0), 120)
    rng = np.random.default_rng(5)
    imgs, maps = jitter_crops(np.stack([v.image] * 6), rng, shift_sd=0.1)
    assert imgs.shape == (6, 120, 120, 3) and maps.shape == (6, 2, 3)
    assert np.ptp(maps[:, :, 2]) > 5.0  # the crops really moved
    pts = map_points(np.stack([v.landmarks_68] * 6), maps)
    # parameters mapped: the label projection of the new parameters lands on the new points
    params = map_params(np.tile(np.r_[v.pose8, v.shape, v.expression], (6, 1)), maps)
    for i in range(6):
        a = params[i, :6].reshape(2, 3)
        lm = model.vertices(params[i, 8:48], params[i, 48:], ids=model.landmark_ids["ibug68"])
        np.testing.assert_allclose(lm @ a.T + params[i, 6:8], pts[i], atol=1e-3)
    # pixels: inner face points (away from the border) keep their colour
    from scipy.ndimage import map_coordinates

    def colours(img: np.ndarray, xy: np.ndarray) -> np.ndarray:  # bilinear, R and G
        return np.stack([map_coordinates(img[:, :, c].astype(float), xy[:, ::-1].T, order=1)
                         for c in (0, 1)], 1)

    inner = [30, 33, 36, 39, 42, 45, 48, 54]
    before = colours(v.image, v.landmarks_68[inner])
    for i in range(6):
        ok = ((pts[i, inner] >= 2) & (pts[i, inner] < 117)).all(1)
        after = colours(imgs[i], pts[i, inner][ok])
        assert np.abs(after - before[ok]).max() < 2.0
    # NaN (hidden AFLW points) stays NaN
    assert np.isnan(map_points(np.full((6, 2, 2), np.nan, np.float32), maps)).all()
