"""The fixed-point check of a turned face's network answer and its re-reading from zoomed
first crops (`facefit.detect.network.fixed_point_residual`, `RECHECK_RESIDUAL`)."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.detect.network import (
    RECHECK_RESIDUAL,
    RECHECK_ZOOMS,
    REFINE_ZOOM,
    NetworkLandmarkDetector,
    fixed_point_residual,
)
from facefit.model import load_default_model
from facefit.regress.predictor import RegressionPredictor


class _NoDetector:
    """`landmark_faces` is given its faces; nothing detects."""


@pytest.fixture(scope="module")
def turned() -> tuple[np.ndarray, np.ndarray]:
    """A face rendered at 50 degrees of yaw and its (68, 2) true landmarks, px."""
    from facefit.fit.camera import rotation_from_euler
    from facefit.synthetic.photos import render_turned_face

    model = load_default_model()
    rng = np.random.default_rng(4)
    x = model.vertices(rng.normal(0, 0.7, model.num_shape), np.zeros(model.num_expression))
    image, v = render_turned_face(model, x, rotation_from_euler(50.0, 0.0, 0.0), 256, 0.55,
                                  rng, background=0.45)
    return image, v[model.landmark_ids["ibug68"], :2].astype(np.float64)


def _boxed(points: np.ndarray, zoom: float, shift: np.ndarray) -> FaceLandmarks:
    """A face whose 68-point box (its points' box: no detector box) is that of ``points``
    scaled by ``zoom`` about its centre and moved by ``shift`` px."""
    c = (points.min(0) + points.max(0)) / 2
    p = (c + (points - c) * zoom + shift).astype(np.float32)
    return FaceLandmarks(np.r_[p.min(0), p.max(0)], 1.0, p, None, "ibug68")


def _nme(points: np.ndarray, truth: np.ndarray) -> float:
    side = np.sqrt(np.prod(truth.max(0) - truth.min(0)))
    return float(np.linalg.norm(points - truth, axis=1).mean() / side)


def test_fixed_point_residual_is_the_move_of_one_more_pass(turned) -> None:
    """The residual, against one more pass computed here: the mean move of the 68 points
    over the square root of the answer's box area."""
    image, truth = turned
    pred = RegressionPredictor()
    lm = NetworkLandmarkDetector(_NoDetector(), "network", predictor=pred, recheck=None)
    (face,) = lm.landmark_faces(image, [_boxed(truth, 1.0, np.zeros(2))])
    r = face.regression
    b = r.upright_box.astype(np.float64)
    c, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) * REFINE_ZOOM / 2
    (again,) = pred.predict_batch(image, boxes=np.r_[c - half, c + half][None],
                                  angles_deg=[r.inplane_deg])
    side = np.sqrt(np.prod(r.box[2:] - r.box[:2]))
    want = np.linalg.norm(again.landmarks_68_px - r.landmarks_68_px, axis=1).mean() / side
    (got,) = fixed_point_residual(pred, image, [r])
    assert got == pytest.approx(want, rel=1e-5)
    assert fixed_point_residual(pred, image, []).shape == (0,)


def test_a_doubtful_turned_face_keeps_the_chain_of_least_residual(turned) -> None:
    """From a first crop half the face's size and off to its side (23 % NME), the answer
    moves under one more pass by more than the bar: the detector then runs the chain from the
    first crop zoomed by each of `RECHECK_ZOOMS` too and keeps the answer of least residual
    (each computed here by a detector without the check), a better one (2 % NME); with the
    bar out of reach the first answer stays."""
    image, truth = turned
    pred = RegressionPredictor()
    side = np.sqrt(np.prod(truth.max(0) - truth.min(0)))
    bad = _boxed(truth, 0.5, np.array([0.4, 0.0]) * side)
    plain = NetworkLandmarkDetector(_NoDetector(), "network", predictor=pred, recheck=None)
    (first,) = plain.landmark_faces(image, [bad])
    assert abs(first.regression.yaw_deg) >= plain.zooms_from_yaw
    chains = [first] + [plain.landmark_faces(image, [_boxed(bad.points_px, z, np.zeros(2))])[0]
                        for z in RECHECK_ZOOMS]
    res = fixed_point_residual(pred, image, [f.regression for f in chains])
    assert res[0] > RECHECK_RESIDUAL, "the wide first crop should not be a fixed point"
    want = chains[int(np.argmin(res))]
    checked = NetworkLandmarkDetector(_NoDetector(), "network", predictor=pred)
    assert checked.recheck == RECHECK_RESIDUAL and checked.recheck_zooms == RECHECK_ZOOMS
    (got,) = checked.landmark_faces(image, [bad])
    np.testing.assert_allclose(got.points_px, want.points_px, atol=1e-3)
    assert _nme(got.points_px, truth) < 0.5 * _nme(first.points_px, truth)
    out_of_reach = NetworkLandmarkDetector(_NoDetector(), "network", predictor=pred,
                                           recheck=float(res[0]) + 1.0)
    (kept,) = out_of_reach.landmark_faces(image, [bad])
    np.testing.assert_allclose(kept.points_px, first.points_px, atol=1e-6)
    with pytest.raises(ValueError, match="recheck_zooms"):
        NetworkLandmarkDetector(_NoDetector(), "network", predictor=pred, recheck_zooms=(0.0,))
