"""Fitting the same synthetic landmarks through each loader's format gives the .npz result."""

from __future__ import annotations

import numpy as np
import pytest
from _model_formats import (
    flame_arrays,
    make_bilinear_core,
    make_model,
    write_bfm2009,
    write_bfm2017,
    write_eos_bin,
    write_facescape,
    write_flame,
    write_ibug_mapping,
)

from facefit.model import load_model, save_model

landmark_fit = pytest.importorskip("facefit.fit.landmark_fit")


def synthetic_landmarks(model) -> np.ndarray:
    """(68, 2) px: a known face (shape, expression) seen by a scaled orthographic camera."""
    shape = np.array([0.8, -0.5, 0.3, 0.0, 0.4, -0.2])
    expr = np.array([0.6, -0.3, 0.2, 0.1])
    pts = model.vertices(shape, expr, model.landmark_ids["ibug68"]).astype(np.float64)
    yaw = np.radians(12.0)
    r = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    cam = pts @ r.T
    return np.column_stack([320 + 2.5 * cam[:, 0], 240 - 2.5 * cam[:, 1]])


def fitted_vertices(model, px: np.ndarray) -> tuple[np.ndarray, float]:
    shape, expr, _, rms, _ = landmark_fit.fit_points(
        model, px, model.landmark_ids["ibug68"], landmark_sigma_px=1.0, iterations=6)
    return model.vertices(shape, expr).astype(np.float64), rms


def _flame_with_embedding(tmp_path, model, monkeypatch):
    path = write_flame(tmp_path / "generic_model.pkl", flame_arrays(model), monkeypatch)
    faces, bary = [], []
    for vid in model.landmark_ids["ibug68"]:
        f = int(np.flatnonzero((model.triangles == vid).any(1))[0])
        faces.append(f)
        bary.append((model.triangles[f] == vid).astype(np.float64))
    np.save(tmp_path / "landmark_embedding.npy",
            np.array({"full_lmk_faces_idx": np.array([faces]),
                      "full_lmk_bary_coords": np.array([bary])}, dtype=object),
            allow_pickle=True)
    return path


@pytest.mark.parametrize("fmt", ["bfm2009", "bfm2017", "flame", "sfm"])
def test_linear_formats_fit_like_npz(tmp_path, fmt, monkeypatch):
    model = make_model(albedo=True)
    ref = load_model(save_model(model, tmp_path / "ref.npz"))
    px = synthetic_landmarks(ref)
    want, want_rms = fitted_vertices(ref, px)
    if fmt == "bfm2009":
        path = write_bfm2009(tmp_path, model)
    elif fmt == "bfm2017":
        path = write_bfm2017(tmp_path / "m.h5", model)
    elif fmt == "flame":
        path = _flame_with_embedding(tmp_path, make_model(albedo=False), monkeypatch)
    else:
        path = write_eos_bin(tmp_path / "sfm.bin", model)
        write_ibug_mapping(tmp_path / "ibug_to_sfm.txt", model.landmark_ids["ibug68"])
    if fmt == "bfm2017":  # the .h5 has no iBUG ids: give them as a file of 68 ids
        ids_file = tmp_path / "bfm2017_ibug68.txt"
        ids_file.write_text(" ".join(map(str, model.landmark_ids["ibug68"])))
        other = load_model(path, landmarks=ids_file)
    else:
        other = load_model(path)
    np.testing.assert_array_equal(other.landmark_ids["ibug68"], ref.landmark_ids["ibug68"])
    got, rms = fitted_vertices(other, px)
    assert np.sqrt(((got - want) ** 2).sum(1).mean()) < 0.01  # mm
    assert abs(rms - want_rms) < 0.01


def test_facescape_fits_like_its_npz_conversion(tmp_path):
    core, tri, uv, lm = make_bilinear_core()
    path = write_facescape(tmp_path / "bm.npz", core, tri, uv, lm,
                           np.array([1.0, 0.1, -0.2, 0.05, 0.0]), np.full(5, 0.3))
    linear = load_model(path)
    ref = load_model(save_model(linear, tmp_path / "ref.npz"))
    shape = np.array([0.5, -0.4, 0.3, 0.2, 0.1])
    expr = np.array([0.3, -0.2, 0.1])
    pts = ref.vertices(shape, expr, lm).astype(np.float64)
    px = np.column_stack([320 + 2 * pts[:, 0], 240 - 2 * pts[:, 1]])
    got, _ = fitted_vertices(linear, px)
    want, _ = fitted_vertices(ref, px)
    assert np.sqrt(((got - want) ** 2).sum(1).mean()) < 1e-3
