"""The `FaceModel` kinds: vertices agree with each model's own evaluation, and every kind's
`vertex_jacobian` matches finite differences of its `vertices` (relative error < 1e-4)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model"))

from _model_formats import make_bilinear_core, make_model, write_facescape  # noqa: E402
from test_core_camera import REL_TOL, rel_err  # noqa: E402
from test_flame_fit import make_flame, truth_pose  # noqa: E402

from facefit.model import load_model  # noqa: E402
from facefit.model.face_model import FaceModel, FaceParams  # noqa: E402
from facefit.model.io_flame import linear_blend_skinning  # noqa: E402
from facefit.model.kinds import face_model  # noqa: E402


def kinds(tmp_path: Path) -> dict[str, FaceModel]:
    core, tri, uv, lm = make_bilinear_core()
    path = write_facescape(tmp_path / "bm.npz", core, tri, uv, lm,
                           np.array([1.0, 0.1, -0.2, 0.05, 0.0]), np.full(5, 0.3))
    return {"linear": face_model(make_model()), "flame": face_model(make_flame("full").model),
            "bilinear": face_model(load_model(path))}


def random_params(fm: FaceModel, rng: np.random.Generator) -> FaceParams:
    p = fm.with_vector(fm.zero_params(), 0.5 * rng.normal(size=fm.num_params))
    assert np.array_equal(fm.parameter_vector(p).shape, (fm.num_params,))
    return p


@pytest.mark.parametrize("kind", ["linear", "flame", "bilinear"])
def test_vertex_jacobian_matches_finite_differences(kind: str, tmp_path) -> None:
    fm = kinds(tmp_path)[kind]
    assert fm.kind == kind and isinstance(fm, FaceModel)
    rng = np.random.default_rng(1)
    params = random_params(fm, rng)
    ids = np.sort(rng.choice(fm.base.num_vertices, 30, replace=False))
    jac = fm.vertex_jacobian(params, ids)
    assert jac.shape == (30, 3, fm.num_params)
    x0 = fm.parameter_vector(params)
    eps = 1e-5
    num = np.stack([(fm.vertices(fm.with_vector(params, x0 + eps * e), ids)
                     - fm.vertices(fm.with_vector(params, x0 - eps * e), ids)) / (2 * eps)
                    for e in np.eye(fm.num_params)], axis=2)
    assert rel_err(jac, num) < REL_TOL
    assert fm.prior().size == fm.num_params


def test_kinds_evaluate_like_their_models(tmp_path) -> None:
    ks = kinds(tmp_path)
    rng = np.random.default_rng(2)
    lin = ks["linear"]
    p = random_params(lin, rng)
    np.testing.assert_allclose(lin.vertices(p), lin.base.vertices(p.shape, p.expression),
                               atol=1e-3)
    fl = ks["flame"]
    p = FaceParams(rng.normal(size=fl.base.num_shape), rng.normal(size=fl.base.num_expression),
                   truth_pose())
    f = fl.flame  # type: ignore[attr-defined]
    want = linear_blend_skinning(f.model.vertices(p.shape, p.expression), p.joints, f.posedirs,
                                 f.j_regressor, f.weights, f.parents)
    np.testing.assert_allclose(fl.vertices(p), want, atol=1e-3)
    assert fl.prior().sigma[-1] == pytest.approx(0.3)  # jaw prior
    bi = ks["bilinear"]
    p = random_params(bi, rng)
    w, e = bi.weights(p)  # type: ignore[attr-defined]
    np.testing.assert_allclose(bi.vertices(p), bi.bm.vertices(w, e), atol=1e-3)  # type: ignore
    # at zero parameters the bilinear kind is the linearised model's mean
    np.testing.assert_allclose(bi.vertices(bi.zero_params()), bi.base.mean, atol=1e-3)


class _BentLinear:
    """A toy non-linear kind: a linear model whose first shape coefficient also bends the face
    (``+ 0.02 a0^2 * x-offsets``): a new kind plugs into the fitters through the protocol."""

    kind = "bent"

    def __init__(self, base) -> None:
        from facefit.model.linear import LinearFaceModel

        self.lin = LinearFaceModel(base)
        self.bend = np.zeros_like(base.mean, dtype=np.float64)
        self.bend[:, 0] = base.mean[:, 1]

    def __getattr__(self, name: str):
        return getattr(self.lin, name)

    def vertices(self, params: FaceParams, ids=None) -> np.ndarray:
        sel = slice(None) if ids is None else ids
        return self.lin.vertices(params, ids) + 0.02 * params.shape[0] ** 2 * self.bend[sel]

    def vertex_jacobian(self, params: FaceParams, ids) -> np.ndarray:
        jac = self.lin.vertex_jacobian(params, ids).copy()
        jac[:, :, 0] += 0.04 * params.shape[0] * self.bend[ids]
        return jac


def test_a_new_kind_plugs_into_fit_face() -> None:
    from facefit.detect.base import FaceLandmarks
    from facefit.fit.core.camera import ScaledOrthographicCamera
    from facefit.fit.face_fit import fit_face
    from facefit.fit.multi_image import ViewPoints, fit_same_person, view_from_face

    base = make_model()
    kind = _BentLinear(base)
    truth = FaceParams(np.array([2.0, -0.5, 0.3, 0.0, 0.2, 0.1]), np.array([0.4, 0, 0, 0.2]))
    rng = np.random.default_rng(3)
    x0 = kind.parameter_vector(truth)
    num = np.stack([(kind.vertices(kind.with_vector(truth, x0 + 1e-5 * e), np.arange(9))
                     - kind.vertices(kind.with_vector(truth, x0 - 1e-5 * e), np.arange(9)))
                    / 2e-5 for e in np.eye(kind.num_params)], axis=2)
    assert rel_err(kind.vertex_jacobian(truth, np.arange(9)), num) < REL_TOL
    cam = ScaledOrthographicCamera(np.eye(3), 2.0, np.array([320.0, 240.0]))
    ids = np.sort(rng.choice(base.num_vertices, 80, replace=False))
    px, _ = cam.project(kind.vertices(truth, ids))
    fit = fit_same_person(base, [ViewPoints(px, ids, np.ones(80), 1e-3)], iterations=15,
                          kind=kind).fits[0]
    np.testing.assert_allclose(fit.shape_coeffs, truth.shape, atol=1e-3)
    np.testing.assert_allclose(fit.vertices_mm, kind.vertices(truth), atol=1e-2)
    assert "bent_params" in fit.extras
    # fit_face dispatches a kind it has never heard of to the same protocol path
    lm, _ = cam.project(kind.vertices(truth, base.landmark_ids["ibug68"]))
    face = FaceLandmarks(np.array([0, 0, 640, 480], np.float32), 1.0, lm.astype(np.float32),
                         None, "ibug68")
    fit = fit_face(kind, face, (640, 480), landmark_sigma=1e-4)
    want = fit_same_person(base, [view_from_face(base, face, 1e-4)], kind=kind).fits[0]
    np.testing.assert_allclose(fit.vertices_mm, want.vertices_mm)
    assert "bent_params" in fit.extras
