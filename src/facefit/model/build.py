"""Build morphable models from registered meshes with one topology.

* `procrustes_align`: generalised Procrustes analysis (Gower, "Generalized Procrustes
  Analysis", Psychometrika 1975): rigid (optionally similarity) alignment of every mesh to
  the iteratively re-estimated mean.
* `pca`: PCA of n meshes of V vertices through a thin SVD of the centred n x 3V data
  matrix, computed with the n x n Gram matrix (never a 3V x 3V covariance). Prior sigmas are
  ``sigma_k = s_k / sqrt(n - 1)`` (= sqrt of the sample-covariance eigenvalue), so the
  basis columns ``u_k * sigma_k`` take N(0, 1) coefficients (Paysan et al. 2009).
* `build_pca_model` / `build_expression_basis`: identity model, and an expression basis from
  neutral / expression pairs of each subject (differences, as for FaceWarehouse, Cao et al.
  2014).
* `build_bilinear`: identity x expression model from a subjects x expressions grid by HOSVD
  (mode-n SVDs of the V x identities x expressions tensor, Vlasic et al. 2005), truncated
  per mode.
* `variance_report`: table and PNG plot of the variance spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.fit.core.rotation import rodrigues, umeyama
from facefit.io.mesh import read_mesh
from facefit.model.io_common import PathLike, complete_topology
from facefit.model.io_facescape import BilinearModel
from facefit.model.morphable_model import MorphableModel


def procrustes_align(
    meshes: np.ndarray,
    scale: bool = False,
    iterations: int = 20,
    tol: float = 1e-7,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes alignment of ``meshes`` (n, V, 3) mm.

    Each mesh is rigidly (``scale=True``: with uniform scale) aligned to the current mean,
    the mean is re-estimated and re-posed onto ``reference`` (default: the first mesh) so the
    frame does not drift, until the mean moves less than ``tol`` (relative RMS).
    Returns ``(aligned (n, V, 3) float64, mean (V, 3) float64)``. Scale is off by default
    because face size is identity information in a model in millimetres.
    """
    x = np.asarray(meshes, np.float64)
    ref = x[0] if reference is None else np.asarray(reference, np.float64)
    mean = ref.copy()
    out = x.copy()
    size = float(np.sqrt(((ref - ref.mean(0)) ** 2).sum(1).mean())) or 1.0
    for _ in range(iterations):
        for i in range(x.shape[0]):
            out[i] = umeyama(x[i], mean, with_scale=scale).apply(x[i])
        new = out.mean(0)
        new = umeyama(new, ref, with_scale=scale).apply(new)
        change = float(np.sqrt(((new - mean) ** 2).sum(1).mean())) / size
        mean = new
        if change < tol:
            break
    for i in range(x.shape[0]):  # final pass onto the final mean
        out[i] = umeyama(x[i], mean, with_scale=scale).apply(x[i])
    return out, mean


@dataclass
class PCAResult:
    """PCA of flattened samples: mean (D,), orthonormal components (D, K), eigenvalues (K,)
    (sample-covariance variances, descending), and ``total_variance`` (sum of all)."""

    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray
    total_variance: float
    num_samples: int

    @property
    def sigmas(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.eigenvalues, 0.0))

    @property
    def explained(self) -> np.ndarray:
        """(K,) cumulative fraction of the total variance."""
        return np.cumsum(self.eigenvalues) / max(self.total_variance, 1e-300)


def choose_components(eigenvalues: np.ndarray, total: float, variance: float | None = None,
                      components: int | None = None) -> int:
    """Number of components: ``components``, else the fewest reaching ``variance`` of
    ``total``, else all with a non-negligible eigenvalue."""
    ev = np.asarray(eigenvalues, np.float64)
    usable = int((ev > ev[:1].max(initial=0.0) * 1e-12).sum()) if ev.size else 0
    if components is not None:
        return max(0, min(int(components), usable))
    if variance is not None:
        frac = np.cumsum(ev) / max(total, 1e-300)
        return min(int(np.searchsorted(frac, float(variance) - 1e-12) + 1), usable)
    return usable


def pca(samples: np.ndarray, centre: bool = True, variance: float | None = None,
        components: int | None = None, ddof: int = 1) -> PCAResult:
    """PCA of ``samples`` (n, D) via the n x n Gram matrix X X^T = V S^2 V^T.

    Components ``U = X^T V / S`` (D, K); eigenvalues ``S^2 / (n - ddof)``. With
    ``centre=False`` the second-moment matrix is decomposed (mean = 0). Memory O(n D).
    """
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    mean = x.mean(0) if centre else np.zeros(x.shape[1])
    xc = x - mean if centre else x
    gram = xc @ xc.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.maximum(evals[order], 0.0), evecs[:, order]
    denom = max(n - ddof, 1)
    all_var = evals / denom
    total = float(all_var.sum())
    k = choose_components(all_var, total, variance, components)
    s = np.sqrt(evals[:k])
    comps = (xc.T @ evecs[:, :k]) / np.maximum(s, 1e-300)
    return PCAResult(mean=mean, components=comps, eigenvalues=all_var[:k],
                     total_variance=total, num_samples=n)


def build_pca_model(
    meshes: np.ndarray,
    triangles: np.ndarray,
    variance: float | None = 0.98,
    components: int | None = None,
    align: bool = True,
    name: str = "built-pca",
    licence: str = "built from user data; licence of the source scans applies",
    source: str = "facefit model build",
    expression_basis: np.ndarray | None = None,
    landmark_ids: dict[str, np.ndarray] | None = None,
    uv: np.ndarray | None = None,
) -> tuple[MorphableModel, PCAResult]:
    """Identity PCA model from registered meshes (n, V, 3) mm with shared ``triangles``.

    Truncates at ``components`` if given, else at the ``variance`` fraction. The model's
    extras carry ``shape_eigenvalues`` (K,) mm^2, ``shape_total_variance`` () mm^2 and
    ``shape_num_samples`` () for reports.
    """
    x = np.asarray(meshes, np.float64)
    n, v, _ = x.shape
    if align:
        x, _ = procrustes_align(x)
    res = pca(x.reshape(n, 3 * v), variance=variance, components=components)
    mean = res.mean.reshape(v, 3)
    basis = (res.components * res.sigmas).reshape(v, 3, -1)
    exp = np.zeros((v, 3, 0)) if expression_basis is None else expression_basis
    tri, uv_out, mirror, _ = complete_topology(mean, np.asarray(triangles), uv, None)
    model = MorphableModel(
        name=name, mean=mean.astype(np.float32), shape_basis=basis.astype(np.float32),
        expression_basis=np.asarray(exp, np.float32), triangles=tri, uv=uv_out,
        landmark_ids=dict(landmark_ids or {}), mirror_ids=mirror, licence=licence,
        source=source,
        extras={"shape_eigenvalues": res.eigenvalues.astype(np.float64),
                "shape_total_variance": np.array(res.total_variance),
                "shape_num_samples": np.array(n, np.int64)},
    )
    return model, res


def build_expression_basis(
    neutral: np.ndarray, expressions: np.ndarray, subject_of: np.ndarray,
    variance: float | None = 0.98, components: int | None = None, align: bool = True,
) -> tuple[np.ndarray, PCAResult]:
    """Expression basis (V, 3, Ke) mm from neutral / expression pairs.

    ``neutral`` (S, V, 3) per subject, ``expressions`` (m, V, 3) with ``subject_of`` (m,)
    the subject index of each. Each expression is rigidly aligned to its subject's neutral
    and the differences are decomposed without centring (zero offset = neutral face), with
    ``sigma_k = s_k / sqrt(m)``.
    """
    neu = np.asarray(neutral, np.float64)
    ex = np.asarray(expressions, np.float64)
    sub = np.asarray(subject_of, np.int64)
    diffs = np.empty_like(ex)
    for i in range(ex.shape[0]):
        target = neu[sub[i]]
        if align:
            diffs[i] = umeyama(ex[i], target, with_scale=False).apply(ex[i]) - target
        else:
            diffs[i] = ex[i] - target
    v = ex.shape[1]
    res = pca(diffs.reshape(ex.shape[0], 3 * v), centre=False, variance=variance,
              components=components, ddof=0)
    return (res.components * res.sigmas).reshape(v, 3, -1), res


def _mode_svd(unfolded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors and values of a short-and-wide unfolding (m, big) via m x m Gram."""
    evals, evecs = np.linalg.eigh(unfolded @ unfolded.T)
    order = np.argsort(evals)[::-1]
    return evecs[:, order], np.sqrt(np.maximum(evals[order], 0.0))


@dataclass
class HOSVDResult:
    """Mode factors and singular values of a bilinear build."""

    id_factors: np.ndarray  # (n_subjects, r_id) orthonormal columns
    exp_factors: np.ndarray  # (n_expressions, r_exp)
    id_singular_values: np.ndarray  # all, descending
    exp_singular_values: np.ndarray


def build_bilinear(
    grid: np.ndarray,
    triangles: np.ndarray,
    id_components: int | None = None,
    exp_components: int | None = None,
    variance: float | None = 0.999,
    align: bool = True,
    name: str = "built-bilinear",
    licence: str = "built from user data; licence of the source scans applies",
    neutral_index: int = 0,
) -> tuple[BilinearModel, HOSVDResult]:
    """Bilinear model from ``grid`` (n_subjects, n_expressions, V, 3) mm by HOSVD.

    T (3V x I x E) = C x_id U_id x_exp U_exp, with U_id, U_exp the leading left singular
    vectors of the identity / expression unfoldings (truncated to ``id_components`` /
    ``exp_components`` or to the ``variance`` fraction of each mode's squared singular
    values); the vertex mode is kept whole, so the stored core is T x_id U_id^T x_exp U_exp^T
    (3V x r_id x r_exp). Subject i, expression j = core x_id U_id[i] x_exp U_exp[j].
    Expression ``neutral_index`` is the neutral face.
    """
    t = np.asarray(grid, np.float64)
    n_s, n_e, v, _ = t.shape
    if align:
        flat, _ = procrustes_align(t.reshape(n_s * n_e, v, 3))
        t = flat.reshape(n_s, n_e, v, 3)
    tv = t.reshape(n_s, n_e, 3 * v)
    u_id, s_id = _mode_svd(tv.reshape(n_s, -1))
    u_ex, s_ex = _mode_svd(tv.transpose(1, 0, 2).reshape(n_e, -1))
    r_id = choose_components(s_id ** 2, float((s_id ** 2).sum()), variance, id_components)
    r_ex = choose_components(s_ex ** 2, float((s_ex ** 2).sum()), variance, exp_components)
    u_id, u_ex = u_id[:, :r_id], u_ex[:, :r_ex]
    core = np.einsum("ijd,ia,jb->dab", tv, u_id, u_ex, optimize=True)
    id_mean = u_id.mean(0)
    id_sigma = u_id.std(0, ddof=1) if n_s > 1 else np.ones(r_id)
    exp_sigma = u_ex.std(0, ddof=1) if n_e > 1 else np.ones(r_ex)
    mean_face = np.einsum("dab,a,b->d", core, id_mean, u_ex[neutral_index]).reshape(v, 3)
    tri, uv, mirror, _ = complete_topology(mean_face, np.asarray(triangles), None, None)
    model = BilinearModel(
        name=name, core=core.reshape(v, 3, r_id, r_ex).astype(np.float32), id_mean=id_mean,
        id_sigma=id_sigma, exp_neutral=u_ex[neutral_index].copy(), exp_sigma=exp_sigma,
        triangles=tri, uv=uv, mirror_ids=mirror, licence=licence,
        source="facefit model build --grid (HOSVD)",
        extras={"id_weights": u_id, "exp_weights": u_ex,
                "id_singular_values": s_id, "exp_singular_values": s_ex},
    )
    return model, HOSVDResult(u_id, u_ex, s_id, s_ex)


def reconstruct_mesh(model: MorphableModel, mesh: np.ndarray, components: int | None = None,
                     align: bool = True) -> tuple[np.ndarray, float]:
    """Project ``mesh`` (V, 3) mm onto the first ``components`` shape columns of ``model``.

    The mesh is rigidly aligned to the model mean first (if ``align``); coefficients are the
    least-squares solution. Returns (reconstruction (V, 3) in the aligned frame, RMS vertex
    error in mm).
    """
    x = np.asarray(mesh, np.float64)
    mean = model.mean.astype(np.float64)
    if align:
        x = umeyama(x, mean, with_scale=False).apply(x)
    k = model.num_shape if components is None else min(int(components), model.num_shape)
    resid = (x - mean).ravel()
    if k:
        basis = model.shape_basis[:, :, :k].reshape(resid.size, k).astype(np.float64)
        coeffs, *_ = np.linalg.lstsq(basis, resid, rcond=None)
        rec = mean + (basis @ coeffs).reshape(-1, 3)
    else:
        rec = mean.copy()
    return rec, float(np.sqrt(((rec - x) ** 2).sum(1).mean()))


def principal_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between the column spans of ``a`` and ``b``."""
    qa, _ = np.linalg.qr(np.asarray(a, np.float64).reshape(-1, a.shape[-1]))
    qb, _ = np.linalg.qr(np.asarray(b, np.float64).reshape(-1, b.shape[-1]))
    cos = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def variance_report(eigenvalues: np.ndarray, total_variance: float, out_dir: PathLike,
                    title: str = "variance spectrum") -> tuple[str, list[Path]]:
    """Write ``variance.tsv`` and ``variance.png`` (Agg) to ``out_dir``; return the table
    text and the written paths."""
    from facefit.io.atomic import atomic_path, write_text_atomic

    ev = np.asarray(eigenvalues, np.float64)
    frac = ev / max(total_variance, 1e-300)
    cum = np.cumsum(frac)
    lines = ["k\teigenvalue_mm2\tsigma_mm\tfraction\tcumulative"]
    lines += [f"{k + 1}\t{e:.6g}\t{np.sqrt(max(e, 0)):.6g}\t{f:.6f}\t{c:.6f}"
              for k, (e, f, c) in enumerate(zip(ev, frac, cum, strict=True))]
    text = "\n".join(lines) + "\n"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tsv = write_text_atomic(out / "variance.tsv", text)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(6, 4), dpi=100)
    ks = np.arange(1, ev.size + 1)
    ax1.bar(ks, frac, color="tab:blue", label="per component")
    ax1.set_xlabel("component")
    ax1.set_ylabel("fraction of variance")
    ax2 = ax1.twinx()
    ax2.plot(ks, cum, color="tab:red", marker=".", label="cumulative")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("cumulative fraction")
    ax1.set_title(title)
    fig.tight_layout()
    png = out / "variance.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return text, [tsv, png]


# --------------------------------------------------------------------------------------------
# Mesh folders.

MESH_SUFFIXES = (".obj", ".ply")


def mesh_files(folder: PathLike) -> list[Path]:
    """OBJ / PLY files directly in ``folder``, sorted by name."""
    return sorted(q for q in Path(folder).iterdir() if q.suffix.lower() in MESH_SUFFIXES)


def read_mesh_folder(folder: PathLike) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Stack the meshes of ``folder``: ((n, V, 3), triangles of the first, paths)."""
    files = mesh_files(folder)
    if not files:
        raise ValueError(f"{folder}: no .obj or .ply meshes")
    first_v, tri = read_mesh(files[0])
    out = np.empty((len(files), *first_v.shape))
    out[0] = first_v
    for i, f in enumerate(files[1:], 1):
        v, _ = read_mesh(f)
        if v.shape != first_v.shape:
            raise ValueError(f"{f}: {v.shape[0]} vertices, {files[0].name} has "
                             f"{first_v.shape[0]} (meshes must share one topology)")
        out[i] = v
    return out, tri, files


# --------------------------------------------------------------------------------------------
# Synthetic data with known answers (tests and benchmarks/model_build.py).


def synthetic_face_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """A curved face-sized grid: (points (rows*cols, 3) mm, triangles (F, 3) int32)."""
    gx, gy = np.meshgrid(np.linspace(-70, 70, cols), np.linspace(-90, 90, rows))
    z = 50.0 - 0.004 * gx**2 - 0.002 * gy**2
    pts = np.column_stack([gx.ravel(), gy.ravel(), z.ravel()])
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tri = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])
    return pts, tri.astype(np.int32)


def rigid_motion_basis(points: np.ndarray) -> np.ndarray:
    """(3V, 6) orthonormal basis of infinitesimal translations and rotations of ``points``."""
    p = np.asarray(points, np.float64) - np.mean(points, axis=0)
    gens = []
    for axis in np.eye(3):
        gens.append(np.tile(axis, (p.shape[0], 1)).ravel())
        gens.append(np.cross(axis, p).ravel())
    q, _ = np.linalg.qr(np.column_stack(gens))
    return q


def synthetic_linear_samples(
    mean: np.ndarray, sigmas: np.ndarray, n: int, seed: int = 0, exact: bool = True,
    rigid_deg: float = 0.0, rigid_mm: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Meshes from a known linear model: (samples (n, V, 3), true orthonormal basis (3V, K)).

    The true basis is random but orthogonal to rigid motions of ``mean`` (so Procrustes
    alignment does not remove model variation). With ``exact`` the coefficients are
    whitened so their sample covariance is exactly diag(sigmas^2); random rotations up to
    ``rigid_deg`` and translations up to ``rigid_mm`` are applied to each sample.
    """

    rng = np.random.default_rng(seed)
    m = np.asarray(mean, np.float64)
    k = len(sigmas)
    rigid = rigid_motion_basis(m)
    raw = rng.standard_normal((m.size, k))
    raw -= rigid @ (rigid.T @ raw)
    basis, _ = np.linalg.qr(raw)
    coeffs = rng.standard_normal((n, k))
    if exact:
        coeffs -= coeffs.mean(0)
        q, _ = np.linalg.qr(coeffs)
        coeffs = q * np.sqrt(n - 1)
    coeffs = coeffs * np.asarray(sigmas, np.float64)
    out = (m.ravel() + coeffs @ basis.T).reshape(n, -1, 3)
    if rigid_deg or rigid_mm:
        rots = rodrigues(rng.uniform(-1, 1, (n, 3)) * np.radians(rigid_deg))
        for i in range(n):
            out[i] = out[i] @ rots[i].T + rng.uniform(-1, 1, 3) * rigid_mm
    return out, basis
