"""Model building round trips: known synthetic models are recovered by PCA and HOSVD."""

from __future__ import annotations

import numpy as np

from facefit.fit.core.rotation import umeyama
from facefit.model.build import (
    build_bilinear,
    build_expression_basis,
    build_pca_model,
    pca,
    principal_angles_deg,
    procrustes_align,
    reconstruct_mesh,
    synthetic_face_grid,
    synthetic_linear_samples,
    variance_report,
)
from facefit.model.info import model_summary, variance_explained

SIGMAS = np.array([9.0, 7.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0])


def test_pca_matches_dense_svd_and_sigma_convention():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((15, 40)) @ rng.standard_normal((40, 40))
    res = pca(x, components=5)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    np.testing.assert_allclose(res.sigmas, s[:5] / np.sqrt(14), rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(res.components * vt[:5].T, 0)), 1.0, atol=1e-10)
    assert np.isclose(res.total_variance, (s**2).sum() / 14)
    res98 = pca(x, variance=0.98)
    assert res98.explained[-1] >= 0.98 and res98.explained[-2] < 0.98


def test_pca_round_trip_recovers_subspace_and_eigenvalues():
    mean, tri = synthetic_face_grid(30, 25)
    train, true_basis = synthetic_linear_samples(mean, SIGMAS, n=80, seed=1, rigid_deg=8,
                                                 rigid_mm=15)
    model, res = build_pca_model(train, tri, components=len(SIGMAS))
    # A model is defined up to a rigid frame: pose the built one onto the true mean first.
    r = umeyama(model.mean.astype(np.float64), mean, with_scale=False).rotation
    posed = np.einsum("ab,vbk->vak", r, model.shape_basis.astype(np.float64))
    angles = principal_angles_deg(posed.reshape(-1, model.num_shape), true_basis)
    assert angles.max() < 1.0, angles
    rel = np.abs(res.eigenvalues / SIGMAS**2 - 1)
    assert rel.max() < 0.05, rel
    np.testing.assert_allclose(np.linalg.norm(model.shape_basis.reshape(-1, 8), axis=0), SIGMAS,
                               rtol=0.03)
    assert abs(variance_explained(model) - 1.0) < 1e-6
    assert "100.0% of the training variance" in model_summary(model)
    # Truncation by variance fraction.
    m95, r95 = build_pca_model(train, tri, variance=0.95)
    need = np.searchsorted(np.cumsum(SIGMAS**2) / (SIGMAS**2).sum(), 0.95) + 1
    assert m95.num_shape == need


def test_held_out_error_decreases_with_components():
    mean, tri = synthetic_face_grid(24, 20)
    train, _ = synthetic_linear_samples(mean, SIGMAS, n=60, seed=2)
    test, _ = synthetic_linear_samples(mean, SIGMAS, n=10, seed=2, exact=False, rigid_deg=5,
                                       rigid_mm=10)
    rng = np.random.default_rng(3)
    test = test + rng.normal(0, 0.05, test.shape)
    model, _ = build_pca_model(train, tri, components=len(SIGMAS))
    errors = [np.mean([reconstruct_mesh(model, t, k)[1] for t in test])
              for k in range(len(SIGMAS) + 1)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.1 < errors[0]


def test_procrustes_removes_rigid_motion():
    mean, _ = synthetic_face_grid(10, 10)
    same, _ = synthetic_linear_samples(mean, np.zeros(2) + 1e-9, n=6, seed=4, rigid_deg=20,
                                       rigid_mm=30)
    aligned, gmean = procrustes_align(same)
    assert np.abs(aligned - gmean).max() < 1e-6


def test_expression_basis_from_pairs():
    mean, _ = synthetic_face_grid(16, 14)
    rng = np.random.default_rng(5)
    exp_sig = np.array([4.0, 2.0, 1.0])
    neutral, _ = synthetic_linear_samples(mean, SIGMAS[:3], n=5, seed=6)
    _, exp_true = synthetic_linear_samples(mean, exp_sig, n=3, seed=7)
    w = rng.standard_normal((5 * 6, 3))
    q, _ = np.linalg.qr(w)
    w = q * np.sqrt(w.shape[0]) * exp_sig  # second moment exactly diag(exp_sig^2)
    owner = np.repeat(np.arange(5), 6)
    expr = neutral[owner] + (w @ exp_true.T).reshape(len(owner), -1, 3)
    basis, res = build_expression_basis(neutral, expr, owner, components=3)
    assert principal_angles_deg(basis.reshape(-1, 3), exp_true).max() < 1.0
    np.testing.assert_allclose(res.sigmas, exp_sig, rtol=0.05)


def test_bilinear_round_trip_hosvd():
    mean, tri = synthetic_face_grid(14, 12)
    rng = np.random.default_rng(8)
    v3 = mean.size
    n_s, n_e, r_id, r_ex = 12, 6, 4, 3
    core = rng.standard_normal((v3, r_id, r_ex)) * 3.0
    core[:, 0, 0] += mean.ravel() * 3.0
    w_id = rng.standard_normal((n_s, r_id)) * [1.0, 0.6, 0.4, 0.2] + [1.0 / 3, 0, 0, 0]
    w_ex = rng.standard_normal((n_e, r_ex)) * [1.0, 0.5, 0.3] + [1.0, 0, 0]
    grid = np.einsum("dab,ia,jb->ijd", core, w_id, w_ex).reshape(n_s, n_e, -1, 3)
    model, res = build_bilinear(grid, tri, id_components=r_id, exp_components=r_ex,
                                align=False, variance=None)
    assert principal_angles_deg(res.id_factors, w_id).max() < 1.0
    assert principal_angles_deg(res.exp_factors, w_ex).max() < 1.0
    true_s = np.linalg.svd(grid.reshape(n_s, -1), compute_uv=False)[:r_id]
    np.testing.assert_allclose(res.id_singular_values[:r_id], true_s, rtol=0.05)
    assert res.id_singular_values[r_id] < 1e-6 * true_s[0]  # exact rank recovered
    rec = model.vertices(res.id_factors[7], res.exp_factors[4])
    np.testing.assert_allclose(rec, grid[7, 4], atol=1e-3)
    # Truncating one mode further loses accuracy.
    small, _ = build_bilinear(grid, tri, id_components=2, exp_components=r_ex, align=False)
    err = np.abs(small.vertices(small.extras["id_weights"][7], small.extras["exp_weights"][4])
                 - grid[7, 4]).max()
    assert err > 1e-2


def test_variance_report_writes_table_and_png(tmp_path):
    text, paths = variance_report(np.array([4.0, 2.0, 1.0]), 8.0, tmp_path / "rep")
    assert text.splitlines()[1].startswith("1\t4")
    assert "0.875000" in text
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
