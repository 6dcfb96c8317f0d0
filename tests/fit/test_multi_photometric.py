"""Joint photometric refinement of several synthetic photos of one identity."""

import numpy as np
import pytest

from facefit.fit.multi_image import ViewPoints, fit_same_person
from facefit.fit.photometric import PhotometricConfig, refine_photometric_multi
from facefit.model import load_default_model
from facefit.synthetic.photos import make_synthetic_photo_set
from facefit.synthetic.views import neutral_error_mm


@pytest.fixture(scope="module")
def model():
    return load_default_model()


def test_joint_photometric_shares_identity_and_lowers_errors(model):
    ids = np.asarray(model.landmark_ids["ibug68"])
    shape, faces = make_synthetic_photo_set(model, 2, seed=101, size=160)
    rng = np.random.default_rng(1)
    pts = [f.landmarks + rng.normal(0, 1.0, f.landmarks.shape) for f in faces]
    views = [ViewPoints(p, ids, np.ones(68), 0.02 * float(np.sqrt(np.prod(np.ptp(p, 0)))))
             for p in pts]
    multi = fit_same_person(model, views, "joint")
    res = refine_photometric_multi(model, multi.fits, [f.image for f in faces],
                                   landmarks_px=pts, landmark_vertex_ids=[ids, ids],
                                   config=PhotometricConfig(iterations=30, size=128,
                                                            levels=(2, 1),
                                                            level_share=(0.6, 0.4)))
    assert len(res.results) == 2 and res.albedo.shape == (model.num_vertices, 3)
    for r in res.results:
        np.testing.assert_array_equal(r.fit.shape_coeffs, res.shape_coeffs)
        assert r.photometric_error < 0.8 * r.initial_photometric_error
        assert r.landmark_error_px < 3.0
    # seed 101: joint landmark fit 1.32 mm, joint photometric 1.14 mm (dense neutral RMS)
    e_lm = neutral_error_mm(model, multi.shape_coeffs, shape)
    e_ph = neutral_error_mm(model, res.shape_coeffs, shape)
    assert e_ph < 1.05 * e_lm


def test_joint_refinement_runs_the_joint_default_steps(model, monkeypatch):
    """Without ``iterations`` a joint refinement runs `JOINT_ITERATIONS` steps (patched
    small here), split over the levels by ``level_share``, and its coefficients take Adam
    steps of `JOINT_LR_COEFFS`; given values win."""
    from facefit.fit.photometric import config as config_module
    from facefit.fit.photometric import optimise

    monkeypatch.setattr(config_module, "JOINT_ITERATIONS", 5)
    steps: list[list[float]] = []

    class SpyAdam(optimise.Adam):
        def __init__(self, params, **kwargs):  # noqa: ANN001, ANN003
            params = list(params)
            if params and isinstance(params[0], dict):  # the refinement's groups
                steps.append([g["lr"] for g in params])
            super().__init__(params, **kwargs)

    monkeypatch.setattr(optimise, "Adam", SpyAdam)
    ids = np.asarray(model.landmark_ids["ibug68"])
    _, faces = make_synthetic_photo_set(model, 2, seed=102, size=96)
    views = [ViewPoints(f.landmarks, ids, np.ones(68), 2.0) for f in faces]
    multi = fit_same_person(model, views, "joint")
    for iterations, want in ((None, 5), (3, 3)):
        res = refine_photometric_multi(
            model, multi.fits, [f.image for f in faces],
            config=PhotometricConfig(iterations=iterations, size=64, levels=(2, 1),
                                     level_share=(0.6, 0.4), albedo_after=0))
        assert [r.iterations for r in res.results] == [want, want]
    # pose groups first (3 a photo), then the shape's and each photo's expression's
    coeff_lrs = [lrs[6:7] + lrs[7::2][:2] for lrs in steps]
    assert coeff_lrs[0] == [config_module.JOINT_LR_COEFFS] * 3 == [0.1] * 3
    refine_photometric_multi(
        model, multi.fits, [f.image for f in faces],
        config=PhotometricConfig(iterations=2, size=64, levels=(2, 1), lr_coeffs=0.03,
                                 albedo_after=0))
    assert steps[-1][6:7] + steps[-1][7::2][:2] == [0.03] * 3


def test_rejects_empty_input(model):
    with pytest.raises(ValueError):
        refine_photometric_multi(model, [], [])
