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
