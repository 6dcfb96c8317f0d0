"""Each loader reads a small file written in its publisher's exact on-disk layout."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from _model_formats import (
    chumpy_module,
    flame_arrays,
    make_bilinear_core,
    make_model,
    write_bfm2009,
    write_bfm2017,
    write_eos_bin,
    write_exp_pca_bin,
    write_facescape,
    write_flame,
    write_ibug_mapping,
)

from facefit.fit.bilinear_fit import fit_bilinear_landmarks
from facefit.model import ModelFileError, load_model, save_model
from facefit.model.io_facescape import read_bilinear
from facefit.model.io_flame import NO_EMBEDDING, STATIC_ONLY, linear_blend_skinning, load_flame
from facefit.model.io_sfm import read_eos_bin


def assert_same_model(got, want, tol: float = 1e-4, albedo: bool = True) -> None:
    np.testing.assert_allclose(got.mean, want.mean, atol=tol)
    np.testing.assert_allclose(got.shape_basis, want.shape_basis, atol=tol)
    np.testing.assert_allclose(got.expression_basis, want.expression_basis, atol=tol)
    np.testing.assert_array_equal(got.triangles, want.triangles)
    if albedo:
        np.testing.assert_allclose(got.albedo_mean, want.albedo_mean, atol=1e-5)
        np.testing.assert_allclose(got.albedo_basis, want.albedo_basis, atol=1e-5)


def test_npz_round_trip(tmp_path):
    m = make_model()
    m = type(m)(**{**m.__dict__, "extras": {"shape_eigenvalues": np.arange(3.0)}})
    path = save_model(m, tmp_path / "m.npz")
    got = load_model(path)
    assert_same_model(got, m, tol=0)
    np.testing.assert_array_equal(got.uv, m.uv)
    np.testing.assert_array_equal(got.mirror_ids, m.mirror_ids)
    np.testing.assert_array_equal(got.landmark_ids["ibug68"], m.landmark_ids["ibug68"])
    np.testing.assert_array_equal(got.extras["shape_eigenvalues"], np.arange(3.0))
    assert (got.name, got.licence, got.source) == (m.name, m.licence, m.source)


def test_bfm2009_mat_with_3ddfa_expression(tmp_path):
    m = make_model()
    path = write_bfm2009(tmp_path, m)
    got = load_model(path)
    assert_same_model(got, m)
    np.testing.assert_array_equal(got.landmark_ids["ibug68"], m.landmark_ids["ibug68"])
    assert "Model_Expression.mat" in got.source and "Basel" in got.licence


def test_bfm2009_deep3d_exp_pca_bin_with_crop(tmp_path):
    import scipy.io

    m = make_model()
    v = m.num_vertices
    # The shape model has 5 extra vertices that the expression basis (Exp_Pca.bin) lacks.
    extra = 5
    big = type(m)(**{**m.__dict__,
                     "mean": np.concatenate([m.mean, np.full((extra, 3), 99.0, np.float32)]),
                     "shape_basis": np.concatenate([m.shape_basis,
                                                    np.zeros((extra, 3, 6), np.float32)]),
                     "expression_basis": np.zeros((v + extra, 3, 0), np.float32),
                     "uv": np.zeros((v + extra, 2), np.float32),
                     "mirror_ids": np.arange(v + extra),
                     "albedo_mean": np.concatenate([m.albedo_mean,
                                                    np.zeros((extra, 3), np.float32)]),
                     "albedo_basis": np.concatenate([m.albedo_basis,
                                                     np.zeros((extra, 3, 3), np.float32)])})
    path = write_bfm2009(tmp_path, big, expression_file=False)
    from _model_formats import EXP_SIGMAS

    # Exp_Pca.bin holds unit-scaled components; std_exp.txt the sigmas.
    unit = m.expression_basis / EXP_SIGMAS.astype(np.float32)
    write_exp_pca_bin(tmp_path / "Exp_Pca.bin", np.zeros((v, 3)), unit * 1000.0)
    np.savetxt(tmp_path / "std_exp.txt", EXP_SIGMAS)
    with pytest.raises(ModelFileError, match="trimIndex"):
        load_model(path)
    scipy.io.savemat(tmp_path / "BFM_exp_idx.mat",
                     {"trimIndex": (np.arange(v) + 1).reshape(-1, 1).astype(np.float64)})
    got = load_model(path)
    assert got.num_vertices == v
    assert_same_model(got, m)


def test_bfm2017_h5(tmp_path):
    import h5py

    m = make_model()
    path = write_bfm2017(tmp_path / "model2017-1_face12_nomouth.h5", m)
    got = load_model(path)
    assert_same_model(got, m)
    assert got.name == "bfm2017"
    assert got.landmark_ids == {}
    # Named metadata landmarks map to their nearest vertices.
    pts = [{"id": "center.nose.tip", "coordinates": (m.mean[40] + 0.1).tolist()},
           {"id": "left.eye.corner", "coordinates": m.mean[7].tolist()}]
    with h5py.File(path, "a") as h5:
        h5["metadata/landmarks/json"] = json.dumps(pts)
    got = load_model(path)
    assert got.landmark_ids["bfm2017"].tolist() == [40, 7]
    assert got.extras["bfm2017_landmark_names"][0] == "center.nose.tip"


def test_flame_pkl_with_chumpy_standin(tmp_path, monkeypatch):
    m = make_model(albedo=False)
    arrays = flame_arrays(m)
    path = write_flame(tmp_path / "generic_model.pkl", arrays, monkeypatch)
    assert b"chumpy.ch" in path.read_bytes()
    assert "chumpy" not in sys.modules
    flame = load_flame(path)
    assert "chumpy" not in sys.modules
    fm = flame.model
    assert fm.num_shape == 300 and fm.num_expression == 100
    np.testing.assert_allclose(fm.mean, m.mean, atol=1e-4)
    np.testing.assert_allclose(fm.shape_basis[:, :, :6], m.shape_basis, atol=1e-5)
    np.testing.assert_allclose(fm.expression_basis[:, :, :4], m.expression_basis, atol=1e-5)
    assert np.abs(fm.shape_basis[:, :, 6:]).max() == 0
    np.testing.assert_allclose(flame.j_regressor, arrays["J_regressor"], atol=1e-7)
    np.testing.assert_allclose(flame.posedirs, arrays["posedirs"] * 1000, atol=1e-4)
    assert flame.parents.tolist() == [-1, 0, 1, 1, 1]
    assert fm.landmark_ids == {} and NO_EMBEDDING in flame.unavailable
    assert "unavailable" in fm.source
    # load_model gives the linear part.
    assert load_model(path).num_expression == 100


def test_flame_static_embedding_and_skinning(tmp_path, monkeypatch):
    m = make_model(albedo=False)
    arrays = flame_arrays(m)
    path = write_flame(tmp_path / "flame2023.pkl", arrays, monkeypatch)
    rng = np.random.default_rng(3)
    faces = rng.choice(m.triangles.shape[0], 51, replace=False)
    bary = rng.dirichlet(np.ones(3), 51)
    import pickle

    with open(tmp_path / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": faces.astype(np.uint32), "lmk_b_coords": bary}, fh, 2)
    flame = load_flame(path, num_shape=300)
    ids = flame.model.landmark_ids["ibug51"]
    want = m.triangles[faces][np.arange(51), bary.argmax(1)]
    np.testing.assert_array_equal(ids, want)
    assert STATIC_ONLY in flame.unavailable and flame.model.name == "flame2023"
    # Skinning: zero pose is the rest shape; a jaw rotation moves only jaw-weighted vertices.
    rest = flame.model.vertices()
    np.testing.assert_allclose(flame.vertices(pose=np.zeros((5, 3))), rest, atol=1e-4)
    pose = np.zeros((5, 3))
    pose[2, 0] = 0.3
    posed = linear_blend_skinning(rest, pose, np.zeros_like(flame.posedirs),
                                  flame.j_regressor, flame.weights, flame.parents)
    jaw = flame.weights[:, 2] > 0
    assert np.abs(posed[~jaw] - rest[~jaw]).max() < 1e-4
    assert np.abs(posed[jaw] - rest[jaw]).max() > 1.0
    # A global rotation of a root-only mesh rotates about the root joint.
    pose = np.zeros((5, 3))
    pose[0] = [0.0, 0.4, 0.0]
    w_root = np.zeros_like(flame.weights)
    w_root[:, 0] = 1
    out = linear_blend_skinning(rest, pose, np.zeros_like(flame.posedirs), flame.j_regressor,
                                w_root, flame.parents)
    j0 = flame.j_regressor[0] @ rest
    c, s = np.cos(0.4), np.sin(0.4)
    r = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    np.testing.assert_allclose(out, (rest - j0) @ r.T + j0, atol=1e-3)


def test_flame_chumpy_expression_is_reported(tmp_path, monkeypatch):
    import pickle
    import types

    ch_cls, modules = chumpy_module()
    ops = types.ModuleType("chumpy.ch_ops")

    class add:  # noqa: N801 - chumpy's class name
        def __getstate__(self):
            return {"a": 1, "b": 2}

    add.__module__ = "chumpy.ch_ops"
    add.__qualname__ = "add"
    ops.add = add
    for name, mod in {**modules, "chumpy.ch_ops": ops}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    arrays = flame_arrays(make_model(albedo=False))
    data = {k: ch_cls(v) if k != "shapedirs" else add() for k, v in arrays.items()}
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    for name in (*modules, "chumpy.ch_ops"):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ModelFileError, match="'shapedirs' is a chumpy expression"):
        load_model(path)


def test_facescape_bilinear_npz(tmp_path):
    core, tri, uv, lm = make_bilinear_core()
    id_mean = np.array([1.0, 0.1, -0.2, 0.05, 0.0])
    id_var = np.array([0.01, 0.5, 0.4, 0.3, 0.2])
    path = write_facescape(tmp_path / "facescape_bm_v1.6_847_50_52_id_front.npz", core, tri, uv,
                           lm, id_mean, id_var)
    bm = read_bilinear(path)
    assert bm.core.shape == (core.shape[0] // 3, 3, 5, 4)
    w = np.array([1.0, 0.3, -0.1, 0.2, 0.4])
    e = np.array([0.6, 0.2, 0.1, 0.1])
    want = np.einsum("dab,a,b->d", core, w, e).reshape(-1, 3)
    np.testing.assert_allclose(bm.vertices(w, e), want, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(bm.triangles, tri)
    np.testing.assert_allclose(bm.uv, uv)
    model = load_model(path)
    assert model.num_shape == 5 and model.num_expression == 3
    neutral = np.einsum("da,a->d", core[:, :, 0], id_mean).reshape(-1, 3)
    np.testing.assert_allclose(model.mean, neutral, rtol=1e-5, atol=1e-3)
    # Identity direction k at the neutral expression, scaled by sqrt(id_var[k]).
    np.testing.assert_allclose(model.shape_basis[:, :, 1],
                               core[:, 1, 0].reshape(-1, 3) * np.sqrt(0.5), atol=1e-3)
    np.testing.assert_array_equal(model.landmark_ids["ibug68"], lm)
    # Alternating identity / expression fit recovers landmarks of a known face.
    target = bm.vertices(w, e, lm)
    fit = fit_bilinear_landmarks(bm, target, iterations=30, id_reg=1e-6, exp_reg=1e-6)
    got = fit.scale * bm.vertices(fit.id_weights, fit.exp_weights, lm) @ fit.rotation.T
    assert fit.rms_history[-1] < 0.05 * fit.rms_history[0] + 1e-3
    np.testing.assert_allclose(got + fit.translation, target, atol=0.05)


def test_sfm_eos_bin_v4_with_mapping_contours_edges(tmp_path):
    m = make_model()
    path = write_eos_bin(tmp_path / "sfm_shape_144.bin", m)
    write_ibug_mapping(tmp_path / "ibug_to_sfm.txt", m.landmark_ids["ibug68"])
    (tmp_path / "sfm_model_contours.json").write_text(json.dumps(
        {"model_contour": {"right_contour": [1, 2, 3], "left_contour": [10, 11, 12]}}))
    (tmp_path / "sfm_144_edge_topology.json").write_text(json.dumps(
        {"edge_topology": {"adjacent_faces": [[0, 1], [1, 2]],
                           "adjacent_vertices": [[1, 2], [2, 13]]}}))
    raw = read_eos_bin(path)
    assert raw.version == 4 and raw.expression_kind == "pca"
    got = load_model(path)
    assert_same_model(got, m)
    np.testing.assert_allclose(got.uv, m.uv, atol=1e-6)
    np.testing.assert_array_equal(got.landmark_ids["ibug68"], m.landmark_ids["ibug68"])
    assert got.extras["contour_landmarks_right"].tolist() == list(range(8))
    assert got.extras["contour_vertices_left"].tolist() == [10, 11, 12]
    assert got.extras["edge_adjacent_faces"].tolist() == [[-1, 0], [0, 1]]


def test_sfm_portable_blendshapes_partial_mapping(tmp_path):
    m = make_model()
    path = write_eos_bin(tmp_path / "bs.bin", m, version=3, portable=True, blendshapes=True,
                         landmark_definitions={"nose": 5, "chin": 7}, color=False)
    mapping = write_ibug_mapping(tmp_path / "map.txt", m.landmark_ids["ibug68"],
                                 skip=(*range(1, 9), *range(10, 18), 61, 65))
    got = load_model(path, landmark_mapping=mapping)
    np.testing.assert_allclose(got.expression_basis, m.expression_basis, atol=1e-5)
    assert got.albedo_mean is None
    assert got.extras["blendshape_names"].tolist() == ["bs0", "bs1", "bs2", "bs3"]
    assert got.landmark_ids["eos"].tolist() == [7, 5]  # sorted by name: chin, nose
    pts = got.extras["ibug68_subset_points"]
    assert len(pts) == 50 and 8 in pts and 60 not in pts
    np.testing.assert_array_equal(got.landmark_ids["ibug68_subset"],
                                  m.landmark_ids["ibug68"][pts])


@pytest.mark.parametrize("version", [1, 2])
def test_sfm_old_versions(tmp_path, version):
    m = make_model()
    got = load_model(write_eos_bin(tmp_path / "old.bin", m, version=version))
    np.testing.assert_allclose(got.shape_basis, m.shape_basis, atol=1e-5)
    assert got.num_expression == (4 if version == 2 else 0)
