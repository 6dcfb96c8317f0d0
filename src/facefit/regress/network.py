"""The regression network: MobileNet-V1 (Howard et al. 2017) at width 0.5 on a ~120 px crop,
predicting the default model's pose (8: the scaled orthographic ``A`` (2x3) row-major and
``(tx, ty)`` in crop pixels), 40 shape and 10 expression coefficients, as 3DDFA (Zhu et al.
2016) regresses its 62 parameters. Outputs are normalised per parameter (`ParamNorm`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facefit.model.morphable_model import MorphableModel

N_POSE = 8

# (output channels at width 1, stride) of the 13 depthwise-separable blocks.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MobileNetV1(nn.Module):
    """MobileNet-V1 with a width multiplier, global average pooling and a linear head."""

    def __init__(self, num_outputs: int, width: float = 0.5) -> None:
        super().__init__()
        c = int(32 * width)
        layers = _conv_bn(3, c, 3, 2)
        for cout, stride in _BLOCKS:
            co = int(cout * width)
            layers += _conv_bn(c, c, 3, stride, groups=c) + _conv_bn(c, co, 1, 1)
            c = co
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float images in [0, 1] -> (B, num_outputs)."""
        x = self.features((x - 0.5) / 0.25)
        return self.head(x.mean(dim=(2, 3)))


@dataclass(frozen=True)
class ParamNorm:
    """Per-parameter mean and std of the targets (pose8, shape, expression concatenated)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_targets(cls, params: np.ndarray) -> ParamNorm:
        p = np.asarray(params, np.float64)
        return cls(p.mean(0).astype(np.float32), np.maximum(p.std(0), 1e-6).astype(np.float32))

    def denormalise(self, out: torch.Tensor) -> torch.Tensor:
        return out * torch.as_tensor(self.std, device=out.device) + torch.as_tensor(
            self.mean, device=out.device)

    def normalise(self, params: torch.Tensor) -> torch.Tensor:
        return (params - torch.as_tensor(self.mean, device=params.device)) / torch.as_tensor(
            self.std, device=params.device)


class Projector(nn.Module):
    """Image points of chosen model vertices for (B, 8 + Ks + Ke) parameters: differentiable
    ``x = A (mean + S s + E e) + t`` on a vertex subset (68 landmarks, or a sparse set for
    3DDFA's vertex distance cost)."""

    def __init__(self, model: MorphableModel, vertex_ids: np.ndarray) -> None:
        super().__init__()
        ids = np.asarray(vertex_ids, np.int64)
        self.n_shape, self.n_expr = model.num_shape, model.num_expression
        self.register_buffer("mean", torch.as_tensor(model.mean[ids], dtype=torch.float32))
        basis = np.concatenate([model.shape_basis[ids], model.expression_basis[ids]], axis=2)
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32))

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        """(B, P) raw parameters -> (B, N, 2) pixels."""
        a = params[:, :6].reshape(-1, 2, 3)
        t = params[:, 6:8]
        coeffs = params[:, N_POSE:N_POSE + self.n_shape + self.n_expr]
        v = self.mean[None] + torch.einsum("nck,bk->bnc", self.basis, coeffs)
        return torch.einsum("brc,bnc->bnr", a, v) + t[:, None, :]


def sparse_vertex_ids(model: MorphableModel, step: int = 40) -> np.ndarray:
    """Every ``step``-th vertex plus the 68 landmarks (3DDFA computes its vertex costs on a
    similar subsample)."""
    return np.unique(np.r_[np.arange(0, model.num_vertices, step),
                           model.landmark_ids["ibug68"]]).astype(np.int64)


def build_network(model: MorphableModel, width: float = 0.5, seed: int | None = None
                  ) -> MobileNetV1:
    """The network for ``model``: outputs 8 + num_shape + num_expression. With ``seed`` its
    initial weights are drawn from that seed (torch's global generator is left as it was),
    else from torch's global generator."""
    n_out = N_POSE + model.num_shape + model.num_expression
    if seed is None:
        return MobileNetV1(n_out, width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MobileNetV1(n_out, width)
