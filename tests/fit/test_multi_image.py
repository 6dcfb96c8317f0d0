"""Shared-identity fitting of several synthetic views of one face."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facefit.fit.multi_image import (
    LANDMARK_BIAS_RATIO,
    fit_same_person,
    fit_single,
    fit_views,
    pool_confidence,
    shared_bias_weight,
)
from facefit.model import load_default_model
from facefit.synthetic.views import make_photo_set, neutral_error_mm


@pytest.fixture(scope="module")
def model():
    return load_default_model()


def test_noiseless_views_recover_shape_and_expressions(model) -> None:
    shape, views = make_photo_set(model, 3, seed=1, noise_px=0.0)
    vs = [dataclasses.replace(v.view, sigma_px=1e-3, depth_weight=0.0) for v in views]
    got, exprs, poses, rms, _ = fit_views(model, vs, iterations=10)
    assert max(rms) < 1e-3
    np.testing.assert_allclose(got, shape, atol=1e-3)
    for e, v, p in zip(exprs, views, poses, strict=True):
        np.testing.assert_allclose(e, v.expression, atol=1e-3)
        np.testing.assert_allclose(p.rotation, v.pose.rotation, atol=1e-5)


def test_joint_beats_pooling_beats_single_photos(model) -> None:
    """On landmarks with independent noise only (no shared detector bias, so the joint fit is
    told ``landmark_bias_ratio=0``) the joint fit uses every view's evidence best."""
    errs = []
    for seed in range(4):
        shape, views = make_photo_set(model, 6, seed=seed)
        vs = [v.view for v in views]
        single = np.mean([neutral_error_mm(model, fit_single(model, v).shape_coeffs, shape)
                          for v in vs])
        pooled = fit_same_person(model, vs, "confidence")
        joint = fit_same_person(model, vs, "joint", landmark_bias_ratio=0.0)
        errs.append((single, neutral_error_mm(model, pooled.shape_coeffs, shape),
                     neutral_error_mm(model, joint.shape_coeffs, shape)))
        assert len(joint.fits) == 6
        assert joint.neutral_vertices.shape == (model.num_vertices, 3)
        np.testing.assert_array_equal(joint.fits[0].shape_coeffs, joint.shape_coeffs)
    single, pooled, joint = np.mean(errs, axis=0)
    assert joint < pooled < single


def test_pool_confidence_prefers_frontal_low_residual(model) -> None:
    shape, views = make_photo_set(model, 3, seed=2)
    fits = [fit_single(model, v.view) for v in views]
    pooled, w = pool_confidence(fits)
    assert w.sum() == pytest.approx(1.0)
    # the weights, computed by hand: cos(yaw) / (1 + residual_mm^2), normalised
    raw = np.array([np.cos(np.deg2rad(f.yaw_deg)) / (1 + (f.residual_px / f.scale) ** 2)
                    for f in fits])
    np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-9)
    np.testing.assert_allclose(pooled, np.einsum("n,nk->k", w, [f.shape_coeffs for f in fits]),
                               rtol=1e-5, atol=1e-6)
    # at equal residuals the more frontal fit counts more; at equal yaw the better fitted one
    a, b = fits[0], fits[1]
    turned = dataclasses.replace(a, yaw_deg=60.0)
    worse = dataclasses.replace(a, residual_px=a.residual_px + 3 * a.scale)
    assert pool_confidence([a, turned])[1][0] > 0.6
    assert pool_confidence([a, worse])[1][0] > 0.6
    assert pooled.shape == shape.shape == b.shape_coeffs.shape
    with pytest.raises(ValueError):
        pool_confidence([])


def test_merged_texture_of_uniform_photos_is_uniform(model) -> None:
    from facefit.texture.extract import merge_texels, texel_samples

    _, views = make_photo_set(model, 2, seed=3)
    fits = fit_same_person(model, [v.view for v in views], "confidence").fits
    image = np.empty((480, 640, 3), np.uint8)
    image[:] = (100, 150, 200)
    samples = [texel_samples(model, f.verts_px, image, size=64) for f in fits]
    assert all((w > 0).any() and w.max() <= 1.0 for _, w in samples)
    tex = merge_texels([c for c, _ in samples], [w for _, w in samples])
    assert tex.shape == (64, 64, 3)
    np.testing.assert_allclose(tex.reshape(-1, 3).mean(0), (100, 150, 200), atol=2)


def test_shared_bias_weight() -> None:
    """One photo counts the prior once; with no shared error N photos count it once too; with
    only shared error N times (the photos then hold one photo's evidence on the identity)."""
    assert shared_bias_weight(1) == pytest.approx(1.0)
    assert shared_bias_weight(6, 0.0) == pytest.approx(1.0)
    assert shared_bias_weight(6, 1e9) == pytest.approx(6.0)
    b, e = LANDMARK_BIAS_RATIO, 1.0
    # the over-count of the data term: N / (N (b + e) / (N b + e))
    assert shared_bias_weight(4) == pytest.approx((4 * b + e) / (b + e))
    assert 1.0 < shared_bias_weight(3) < shared_bias_weight(6) < 6.0
