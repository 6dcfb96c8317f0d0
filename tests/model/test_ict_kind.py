"""The ICT kind (`facefit.model.ict.ICTFaceModel`): kind dispatch, blendshape vertices and
Jacobian, bounds, regions, ``facefit model info``, the shared-data reader, and the real
model from ``../shared`` (skipped when absent)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from _model_formats import make_model
from test_io_ict import SHARED, make_folder

from facefit.cli.model import register
from facefit.model import load_model, save_model
from facefit.model.face_model import FaceParams
from facefit.model.ict import ICTFaceModel, ict_from_model, load_ict_modes
from facefit.model.io_ict import REGION_MATERIALS
from facefit.model.kinds import face_model


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facefit")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_kind_vertices_jacobian_bounds(tmp_path):
    folder, written = make_folder(tmp_path)
    fm = face_model(load_model(folder))
    assert isinstance(fm, ICTFaceModel) and fm.kind == "ict"
    assert fm.expression_names == ["jawOpen", "eyeBlink_L", "cheekRaiser_L"]
    assert (fm.num_shape, fm.num_expression, fm.num_params) == (2, 3, 5)
    neutral = written["generic_neutral_mesh"]
    a, w = np.array([0.7, -1.2]), np.array([0.3, 0.0, 1.0])
    expect = 10.0 * (neutral + a[0] * (written["identity000"] - neutral)
                     + a[1] * (written["identity001"] - neutral)
                     + w[0] * (written["jawOpen"] - neutral)
                     + w[2] * (written["cheekRaiser_L"] - neutral))
    params = FaceParams(a, w)
    np.testing.assert_allclose(fm.vertices(params), expect, atol=1e-3)
    ids = np.array([3, 40, 99])
    np.testing.assert_allclose(fm.vertices(params, ids), expect[ids], atol=1e-3)
    # Linear in the parameters: the Jacobian equals finite differences exactly.
    x = fm.parameter_vector(params)
    jac = fm.vertex_jacobian(params, ids)
    for k in range(fm.num_params):
        step = np.zeros(fm.num_params)
        step[k] = 0.5
        diff = fm.vertices(fm.with_vector(params, x + step), ids) - fm.vertices(params, ids)
        np.testing.assert_allclose(diff / 0.5, jac[:, :, k], atol=1e-4)
    box = fm.box()
    np.testing.assert_array_equal(box.lower, [-np.inf, -np.inf, 0, 0, 0])
    np.testing.assert_array_equal(box.upper, [np.inf, np.inf, 1, 1, 1])
    assert box.contains(x) and not box.contains(x + np.r_[0, 0, 0, 0, 0.5])
    np.testing.assert_array_equal(fm.sparsity(2.0), [0, 0, 2, 2, 2])
    # Regions: the synthetic OBJ's first 60 quads are M_Face (ids of those quads' corners).
    face = fm.regions["face"]
    rows = np.arange(100).reshape(10, 10)
    quads = [rows[i:i + 2, j:j + 2].ravel() for i in range(9) for j in range(9)][:60]
    np.testing.assert_array_equal(face, np.unique(np.concatenate(quads)))
    np.testing.assert_array_equal(fm.fit_ids(), face)
    assert set(fm.regions) <= set(REGION_MATERIALS)


def test_linear_models_stay_linear():
    m = make_model()
    assert ict_from_model(m) is None and face_model(m).kind == "linear"


def test_info_and_npz_round_trip(tmp_path, capsys):
    folder, _ = make_folder(tmp_path)
    assert run(["model", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "kind:        ict (identity N(0, 1) x 2, 3 blendshapes" in out
    assert "units:       mm" in out and "face (" in out and "teeth (3)" in out
    assert "blendshapes: jawOpen, eyeBlink_L, cheekRaiser_L" in out
    save_model(load_model(folder), tmp_path / "ict.npz")
    fm = face_model(load_model(tmp_path / "ict.npz"))
    assert fm.kind == "ict" and fm.expression_names[0] == "jawOpen"


def test_modes_reader_matches_obj_reader(tmp_path):
    folder, written = make_folder(tmp_path)
    neutral = written["generic_neutral_mesh"]
    # The obj writer rounds to 6 significant digits: compare with what load_model read.
    obj_model = load_model(folder)
    np.savez(tmp_path / "modes.npz", **{k: (v - neutral).astype(np.float32)
                                        for k, v in written.items() if k != "generic_neutral_mesh"})
    fast = load_ict_modes(tmp_path)
    np.testing.assert_allclose(fast.shape_basis, obj_model.shape_basis, atol=1e-3)
    np.testing.assert_allclose(fast.expression_basis, obj_model.expression_basis, atol=1e-3)
    np.testing.assert_array_equal(fast.triangles, obj_model.triangles)
    assert ICTFaceModel(fast).expression_names == ICTFaceModel(obj_model).expression_names


@pytest.mark.skipif(not (SHARED / "modes.npz").is_file(), reason="../shared ICT data absent")
def test_real_model_kind():
    fm = face_model(load_ict_modes(SHARED, num_identity=5))
    assert fm.kind == "ict" and fm.num_expression == 57 and fm.num_shape == 5
    assert {"jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L"} <= set(fm.expression_names)
    extent = np.ptp(fm.base.mean, axis=0)  # a whole head in mm: 248 x 338 x 223
    assert 200 < extent[0] < 300 and 300 < extent[1] < 380 and 180 < extent[2] < 260
    lm = fm.base.landmark_ids["ibug68"]
    assert len(lm) == 68 and np.isin(lm, fm.regions["face"]).all()
    # Blendshapes act on the face: jawOpen moves the chin landmark (8) down by centimetres.
    w = np.zeros(57)
    w[fm.expression_names.index("jawOpen")] = 1.0
    moved = fm.vertices(FaceParams(np.zeros(5), w), lm) - fm.vertices(fm.zero_params(), lm)
    assert moved[8, 1] < -10.0 and abs(moved[36, 1]) < 1.0


def test_compact_packaged_model():
    """The packaged ICT head (``--model ict``): sizes, kind, and agreement with the
    original data within the quantisation step."""
    from facefit.model.ict import COMPACT_EXPRESSION, COMPACT_IDENTITY, load_compact_ict

    assert COMPACT_IDENTITY.stat().st_size <= 2_000_000
    assert COMPACT_EXPRESSION.stat().st_size <= 2_000_000
    m = load_compact_ict()
    fm = face_model(m)
    assert fm.kind == "ict" and m.num_vertices == 14062 and fm.num_expression == 53
    assert "MIT" in m.licence and "jawOpen" in fm.expression_names
    lm = m.landmark_ids["ibug68"]
    assert len(lm) == 68 and np.isin(lm, fm.regions["face"]).all()
    assert m.triangles.max() < m.num_vertices
    if not (SHARED / "modes.npz").is_file():
        return
    full = load_ict_modes(SHARED, num_identity=m.num_shape)
    head = ICTFaceModel(full).regions["head"]
    np.testing.assert_allclose(m.mean, full.mean[head], atol=1e-4)
    np.testing.assert_allclose(m.shape_basis, full.shape_basis[head], atol=0.0051)
    k = [ICTFaceModel(full).expression_names.index(n) for n in fm.expression_names]
    np.testing.assert_allclose(m.expression_basis, full.expression_basis[head][:, :, k],
                               atol=0.0101)
    np.testing.assert_array_equal(head[lm], full.landmark_ids["ibug68"])
