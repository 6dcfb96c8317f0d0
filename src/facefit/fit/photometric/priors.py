"""Priors of a photometric refinement, as torch costs (-2 log p up to a constant).

The shape, expression and joint parameters use the model's Gaussian prior
(`facefit.fit.core.priors.GaussianPrior`, from `facefit.model.face_model.FaceModel.prior`);
the second-order SH light a N(0, 1) prior per coefficient; a per-vertex albedo correction a
size, mesh-Laplacian smoothness and left/right symmetry prior.
"""

from __future__ import annotations

import torch

from facefit.fit.core.priors import GaussianPrior


def gaussian_cost(prior: GaussianPrior, x: torch.Tensor) -> torch.Tensor:
    """``prior.cost(x)`` (the squared whitened residual) of a tensor ``x`` (P,),
    differentiable."""
    mean = torch.as_tensor(prior.mean, dtype=x.dtype, device=x.device)
    sigma = torch.as_tensor(prior.sigma, dtype=x.dtype, device=x.device)
    r = (x - mean) / sigma
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
    mesh ``edges`` (2, E) between them, per row and times 100."""
    d = table.index_select(0, rows)
    reg = size * (d * d).sum()
    diff = table.index_select(0, edges[0]) - table.index_select(0, edges[1])
    reg = reg + smoothness * (diff * diff).sum()
    sym = d - table.index_select(0, mirror)
    reg = reg + symmetry * (sym * sym).sum()
    return reg / len(d) * 100.0
