"""Model building: round-trip accuracy on known synthetic models, and build time / memory.

Run: ``python benchmarks/model_build.py [--meshes 200] [--vertices 50000]``

1. PCA round trip: meshes sampled from a known linear model (random rigid motions applied)
   -> Procrustes + PCA -> principal angles to the true subspace, eigenvalue errors, and the
   held-out reconstruction error against the number of components.
2. Bilinear round trip: a subjects x expressions grid from a known bilinear model -> HOSVD
   -> principal angles per mode, mode singular values, reconstruction error.
3. Scale: build time and peak memory for 200 meshes of 50k vertices (Gram-matrix PCA).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from facefit.fit.core.rotation import umeyama
from facefit.model.build import (
    build_bilinear,
    build_pca_model,
    pca,
    principal_angles_deg,
    procrustes_align,
    reconstruct_mesh,
    synthetic_face_grid,
    synthetic_linear_samples,
)

SIGMAS = np.array([9.0, 7.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0])


def pca_round_trip() -> None:
    mean, tri = synthetic_face_grid(40, 32)
    train, true_basis = synthetic_linear_samples(mean, SIGMAS, n=100, seed=1, rigid_deg=8,
                                                 rigid_mm=15)
    model, res = build_pca_model(train, tri, components=len(SIGMAS))
    r = umeyama(model.mean, mean, with_scale=False).rotation
    posed = np.einsum("ab,vbk->vak", r, model.shape_basis.astype(np.float64))
    angles = principal_angles_deg(posed.reshape(-1, model.num_shape), true_basis)
    rel = res.eigenvalues / SIGMAS**2 - 1
    print(f"PCA round trip: {train.shape[0]} meshes x {train.shape[1]} vertices, "
          f"{len(SIGMAS)} true components, rigid motions up to 8 deg / 15 mm")
    print("  principal angles (deg): " + " ".join(f"{a:.4f}" for a in angles))
    print("  eigenvalue rel. error:  " + " ".join(f"{e:+.4f}" for e in rel))
    # Same with i.i.d. Gaussian coefficients and 0.05 mm vertex noise: sampling-limited.
    noisy, _ = synthetic_linear_samples(mean, SIGMAS, n=100, seed=1, exact=False, rigid_deg=8,
                                        rigid_mm=15)
    noisy += np.random.default_rng(4).normal(0, 0.05, noisy.shape)
    m2, r2 = build_pca_model(noisy, tri, components=len(SIGMAS))
    r = umeyama(m2.mean, mean, with_scale=False).rotation
    posed = np.einsum("ab,vbk->vak", r, m2.shape_basis.astype(np.float64))
    angles = principal_angles_deg(posed.reshape(-1, m2.num_shape), true_basis)
    print("  with Gaussian (not whitened) coefficients + 0.05 mm noise, same n:")
    print("  principal angles (deg): " + " ".join(f"{a:.4f}" for a in angles)
          + "  (noise-limited: ~ sqrt(3V * 0.05^2 / (n sigma_k^2)) rad)")
    print("  eigenvalue rel. error:  " + " ".join(f"{e:+.4f}" for e in r2.eigenvalues
                                                  / SIGMAS**2 - 1)
          + "  (sampling error ~ sqrt(2/n) = 0.14)")
    test, _ = synthetic_linear_samples(mean, SIGMAS, n=20, seed=1, exact=False, rigid_deg=5,
                                       rigid_mm=10)
    test += np.random.default_rng(2).normal(0, 0.05, test.shape)
    print("  held-out RMS error (mm) vs K (20 new faces + 0.05 mm noise):")
    for k in range(len(SIGMAS) + 1):
        err = np.mean([reconstruct_mesh(model, t, k)[1] for t in test])
        print(f"    K={k}: {err:.4f}")


def bilinear_round_trip() -> None:
    mean, tri = synthetic_face_grid(30, 24)
    rng = np.random.default_rng(8)
    n_s, n_e, r_id, r_ex = 20, 8, 5, 3
    core = rng.standard_normal((mean.size, r_id, r_ex)) * 3.0
    core[:, 0, 0] += mean.ravel() * 3.0
    w_id = rng.standard_normal((n_s, r_id)) * [1.0, 0.6, 0.4, 0.3, 0.2] + [1 / 3, 0, 0, 0, 0]
    w_ex = rng.standard_normal((n_e, r_ex)) * [1.0, 0.5, 0.3] + [1.0, 0, 0]
    grid = np.einsum("dab,ia,jb->ijd", core, w_id, w_ex).reshape(n_s, n_e, -1, 3)
    model, res = build_bilinear(grid, tri, id_components=r_id, exp_components=r_ex,
                                align=False, variance=None)
    a_id = principal_angles_deg(res.id_factors, w_id)
    a_ex = principal_angles_deg(res.exp_factors, w_ex)
    s_true = np.linalg.svd(grid.reshape(n_s, -1), compute_uv=False)
    rec = np.einsum("vcie,si,ke->skvc", model.core.astype(np.float64), res.id_factors,
                    res.exp_factors)
    err = np.sqrt(((rec - grid) ** 2).sum(-1).mean())
    print(f"bilinear round trip: {n_s} subjects x {n_e} expressions x {grid.shape[2]} vertices,"
          f" true ranks {r_id} x {r_ex}")
    print("  identity-mode angles (deg):   " + " ".join(f"{a:.2e}" for a in a_id))
    print("  expression-mode angles (deg): " + " ".join(f"{a:.2e}" for a in a_ex))
    print("  identity singular value rel. error: "
          + " ".join(f"{e:+.1e}" for e in res.id_singular_values[:r_id] / s_true[:r_id] - 1))
    nxt = res.id_singular_values[r_id] / s_true[0]
    print(f"  next identity singular value / first: {nxt:.1e}")
    print(f"  grid reconstruction RMS: {err:.2e} mm")


def scale(n: int, v: int, k: int) -> None:
    rows = int(round(np.sqrt(v * 1.25)))
    cols = v // rows
    mean, tri = synthetic_face_grid(rows, cols)
    sig = np.linspace(10.0, 0.5, k)
    t0 = time.perf_counter()
    meshes, _ = synthetic_linear_samples(mean, sig, n=n, seed=3, exact=False, rigid_deg=5,
                                         rigid_mm=10)
    meshes = meshes.astype(np.float32)
    gen = time.perf_counter() - t0
    print(f"scale: {n} meshes x {mean.shape[0]} vertices ({meshes.nbytes / 2**20:.0f} MiB "
          f"float32 input, generated in {gen:.1f} s)")
    tracemalloc.start()
    t0 = time.perf_counter()
    aligned, _ = procrustes_align(meshes)
    t1 = time.perf_counter()
    res = pca(aligned.reshape(n, -1), variance=0.98)
    t2 = time.perf_counter()
    del aligned
    _, peak_pca = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    t3 = time.perf_counter()
    model, _ = build_pca_model(meshes, tri, variance=0.98)
    t4 = time.perf_counter()
    _, peak_full = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"  Procrustes alignment: {t1 - t0:.2f} s; Gram PCA: {t2 - t1:.2f} s "
          f"({res.eigenvalues.size} components for 98% variance); peak traced "
          f"{peak_pca / 2**30:.2f} GiB")
    print(f"  build_pca_model total (alignment + PCA + UVs/mirror map for the new mesh): "
          f"{t4 - t3:.2f} s; peak traced {peak_full / 2**30:.2f} GiB; "
          f"process max RSS {maxrss:.2f} GiB; {model.num_shape} components")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meshes", type=int, default=200)
    ap.add_argument("--vertices", type=int, default=50_000)
    ap.add_argument("--components", type=int, default=60, help="true rank of the scale data")
    args = ap.parse_args()
    pca_round_trip()
    bilinear_round_trip()
    scale(args.meshes, args.vertices, args.components)


if __name__ == "__main__":
    main()
