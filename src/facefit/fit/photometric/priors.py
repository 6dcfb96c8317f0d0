"""Priors of a photometric refinement, as torch costs (-2 log p up to a constant).

The shape, expression and joint parameters use the model's Gaussian prior
(`facefit.fit.core.priors.GaussianPrior`, from `facefit.model.face_model.FaceModel.prior`);
the second-order SH light a N(0, 1) prior per coefficient; a per-vertex albedo correction a
size, mesh-Laplacian smoothness and left/right symmetry prior.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import sparse

from facefit.fit.core.priors import GaussianPrior


def gaussian_cost(prior: GaussianPrior, x: torch.Tensor) -> torch.Tensor:
    """``prior.cost(x)`` (the squared whitened residual) of a tensor ``x`` (P,),
    differentiable."""
    return TorchGaussian(prior, x.dtype, x.device)(x)


class TorchGaussian:
    """`gaussian_cost` of one prior with its mean and sigma converted to tensors once (a
    refinement step then converts nothing)."""

    def __init__(self, prior: GaussianPrior, dtype: torch.dtype, device: torch.device) -> None:
        self.mean = torch.as_tensor(prior.mean, dtype=dtype, device=device)
        self.sigma = torch.as_tensor(prior.sigma, dtype=dtype, device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = (x - self.mean) / self.sigma
        return (r * r).sum()


def light_cost(sh: torch.Tensor) -> torch.Tensor:
    """N(0, 1) cost of the second-order (l = 2) SH coefficients ``sh[4:]`` of (9, C) light;
    the ambient and first-order bands are free."""
    return (sh[4:] ** 2).sum()


def albedo_regulariser(table: torch.Tensor, rows: torch.Tensor, mirror: torch.Tensor,
                       edges: torch.Tensor, size: float, smoothness: float,
                       symmetry: float) -> torch.Tensor:
    """Size, mesh-Laplacian smoothness and left/right symmetry of a per-vertex albedo
    correction ``table`` (N, 3), over its ``rows`` (their mirror rows ``mirror``) and the
    mesh ``edges`` (2, E) between them, per row and times 100: the definition; a refinement
    evaluates it as one sparse matrix (`albedo_quadratic`, `quadratic_cost`)."""
    d = table.index_select(0, rows)
    reg = size * (d * d).sum()
    diff = table.index_select(0, edges[0]) - table.index_select(0, edges[1])
    reg = reg + smoothness * (diff * diff).sum()
    sym = d - table.index_select(0, mirror)
    reg = reg + symmetry * (sym * sym).sum()
    return reg / len(d) * 100.0


def albedo_quadratic(num: int, rows: np.ndarray, mirror: np.ndarray, edges: np.ndarray,
                     size: float, smoothness: float, symmetry: float) -> torch.Tensor:
    """`albedo_regulariser` as one sparse symmetric (num, num) matrix Q (CSR, float32):
    ``albedo_regulariser(table, rows, mirror, edges, ...) == quadratic_cost(table, Q)`` for
    every table (num, 3). Q = (100 / len(rows)) (size RᵀR + smoothness EᵀE + symmetry
    (R - M)ᵀ(R - M)) with R, M, E the row, mirror-row and edge-difference selections."""
    n_rows, n_edges = len(rows), edges.shape[1]
    one_r, one_e = np.ones(n_rows), np.ones(n_edges)
    pick = sparse.csr_matrix((one_r, (np.arange(n_rows), rows)), shape=(n_rows, num))
    mir = sparse.csr_matrix((one_r, (np.arange(n_rows), mirror)), shape=(n_rows, num))
    diff = sparse.csr_matrix((np.r_[one_e, -one_e], (np.tile(np.arange(n_edges), 2),
                                                      np.r_[edges[0], edges[1]])),
                             shape=(n_edges, num))
    sym = pick - mir
    q = (size * (pick.T @ pick) + smoothness * (diff.T @ diff)
         + symmetry * (sym.T @ sym)) * (100.0 / max(n_rows, 1))
    q = sparse.csr_matrix(q, dtype=np.float32)
    q.sort_indices()
    with warnings.catch_warnings():  # "CSR support is in beta"; scipy made it valid
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.as_tensor(q.indptr, dtype=torch.int64),
                                       torch.as_tensor(q.indices, dtype=torch.int64),
                                       torch.as_tensor(q.data), size=q.shape,
                                       check_invariants=False)


class _Quadratic(torch.autograd.Function):
    """sum(x * (Q x)) for a symmetric sparse Q; gradient 2 Q x (no autograd through the
    sparse product)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        qx = q @ x
        ctx.save_for_backward(qx)
        return (x * qx).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (qx,) = ctx.saved_tensors
        return 2.0 * grad * qx, None


def quadratic_cost(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``sum(x * (q @ x))`` of a table x (N, C) and a symmetric sparse (N, N) matrix q
    (`albedo_quadratic`), differentiable in x."""
    return _Quadratic.apply(x, q)
