"""Finite-difference checks of every hand-written Jacobian outside the cameras: the residual
blocks composed with a linear model, the linear model's basis, FLAME's skinned coefficient
Jacobian and the bilinear model's identity / expression bases (relative error < 1e-4)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model"))

from _model_formats import make_bilinear_core, make_model, write_facescape  # noqa: E402
from test_core_camera import REL_TOL, cameras, rel_err  # noqa: E402
from test_flame_fit import make_flame, truth_pose  # noqa: E402

from facefit.fit.core.residuals import ContourResidual, depth_rows, landmark_rows  # noqa: E402
from facefit.fit.flame_fit import FlameSkinner  # noqa: E402
from facefit.model.io_facescape import read_bilinear  # noqa: E402
from facefit.model.io_flame import linear_blend_skinning  # noqa: E402


def _linear_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(scale=50.0, size=(25, 3))
    basis = rng.normal(scale=3.0, size=(25, 3, 5))
    c = rng.normal(size=5)
    return mean, basis, c, rng


@pytest.mark.parametrize("cam", cameras(), ids=["orthographic", "perspective"])
def test_landmark_and_depth_blocks_match_finite_differences(cam) -> None:
    mean, basis, c, rng = _linear_problem()
    targets = rng.normal(scale=100.0, size=(25, 2)) + 250
    depth = rng.normal(scale=20.0, size=25)
    w = rng.uniform(0.5, 2.0, 25)

    def residuals(x: np.ndarray) -> np.ndarray:
        cm = cam.updated(x[:6])
        pts = mean + basis @ (c + x[6:])
        return np.r_[landmark_rows(cm, pts, basis, targets, w)[1],
                     depth_rows(cm, pts, basis, depth, w)[1]]

    pts = mean + basis @ c
    j_lm, _ = landmark_rows(cam, pts, basis, targets, w)
    j_d, _ = depth_rows(cam, pts, basis, depth, w)
    jac = np.vstack([j_lm, j_d])
    eps = 1e-6
    num = np.column_stack([(residuals(e * eps) - residuals(-e * eps)) / (2 * eps)
                           for e in np.eye(11)])
    # residual = observed - predicted: its derivative is minus the Jacobian
    assert rel_err(-num, jac) < REL_TOL


def test_contour_block_pairs_follow_the_silhouette() -> None:
    from facefit.fit.core.camera import ScaledOrthographicCamera

    # candidates on a circle of radius 10 (and an inner ring); outline landmarks outside it
    ang = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = np.column_stack([10 * np.cos(ang), 10 * np.sin(ang), np.zeros(72)])
    cand = np.vstack([ring, 0.5 * ring])
    block = ContourResidual(np.array([[20.0, 0.0], [0.0, 20.0]]) * [1, -1] + 100, 1.0, cand,
                            np.zeros((144, 3, 1)), np.zeros(3), np.zeros((3, 1)))
    cam = ScaledOrthographicCamera(np.eye(3), 1.0, np.array([100.0, 100.0]))
    pts, _, tgt, w, proj = block.match(np.zeros(1), cam)
    np.testing.assert_allclose(np.linalg.norm(pts[:, :2], axis=1), 10.0)  # outer ring only
    np.testing.assert_allclose(proj, cam.project(pts)[0])
    np.testing.assert_allclose(w, 1.0)


def test_linear_model_basis_is_the_vertex_jacobian() -> None:
    model = make_model()
    c0 = np.zeros(model.num_shape)
    e0 = np.zeros(model.num_expression)
    # the model is linear: unit steps are exact central differences (float32 output)
    num_s = np.stack([(model.vertices(c0 + e, e0).astype(np.float64)
                       - model.vertices(c0 - e, e0)) / 2 for e in np.eye(len(c0))], axis=2)
    num_e = np.stack([(model.vertices(c0, e0 + e).astype(np.float64)
                       - model.vertices(c0, e0 - e)) / 2 for e in np.eye(len(e0))], axis=2)
    assert rel_err(num_s, model.shape_basis.astype(np.float64)) < REL_TOL
    assert rel_err(num_e, model.expression_basis.astype(np.float64)) < REL_TOL


@pytest.mark.parametrize("embedding", ["full", "dynamic"])
def test_flame_skinned_coefficient_jacobian(embedding: str) -> None:
    flame = make_flame(embedding)
    m = flame.model
    ids = np.arange(0, m.num_vertices, 3)
    skin = FlameSkinner(flame, ids)
    pose = truth_pose((0.3, 0.05, -0.04))
    c = np.random.default_rng(0).normal(size=m.num_shape + m.num_expression)
    x, blend = skin.points(c, pose)
    # the skinner agrees with the full skinning of the whole mesh
    full = linear_blend_skinning(m.vertices(c[:m.num_shape], c[m.num_shape:]), pose,
                                 flame.posedirs, flame.j_regressor, flame.weights, flame.parents)
    np.testing.assert_allclose(x, full[ids], atol=1e-3)
    jac = skin.coeff_jacobian(pose, blend)
    eps = 1e-5
    num = np.stack([(skin.points(c + eps * e, pose)[0] - skin.points(c - eps * e, pose)[0])
                    / (2 * eps) for e in np.eye(len(c))], axis=2)
    assert rel_err(jac, num) < REL_TOL


def test_bilinear_bases_are_the_vertex_jacobians(tmp_path) -> None:
    core, tri, uv, lm = make_bilinear_core()
    bm = read_bilinear(write_facescape(tmp_path / "bm.npz", core, tri, uv, lm,
                                       np.array([1.0, 0.1, -0.2, 0.05, 0.0]), np.full(5, 0.3)))
    rng = np.random.default_rng(4)
    w = bm.id_mean + 0.2 * rng.normal(size=bm.num_identity)
    e = bm.exp_neutral + 0.2 * rng.normal(size=bm.num_expression)
    # vertices are linear in each factor: unit central differences are exact
    num_id = np.stack([(bm.vertices(w + k, e).astype(np.float64) - bm.vertices(w - k, e)) / 2
                       for k in np.eye(bm.num_identity)], axis=2)
    num_ex = np.stack([(bm.vertices(w, e + k).astype(np.float64) - bm.vertices(w, e - k)) / 2
                       for k in np.eye(bm.num_expression)], axis=2)
    assert rel_err(bm.identity_basis(e), num_id) < REL_TOL
    assert rel_err(bm.expression_basis(w), num_ex) < REL_TOL
