"""The FaceScape bilinear kind of `facefit.model.face_model.FaceModel` (Yang et al.,
"FaceScape", CVPR 2020; multilinear models after Vlasic et al., SIGGRAPH 2005):
vertices ``core x_id w x_exp e`` with identity weights ``w = id_mean + id_sigma * a`` and
expression weights ``e = exp_neutral + D b`` (``D``: `expression_directions`), ``a`` and
``b`` N(0, 1) a priori: the units of the linearised model `to_morphable_model` writes.
"""

from __future__ import annotations

import numpy as np

from facefit.model.face_model import CoefficientLayout, FaceParams
from facefit.model.io_facescape import BilinearModel, expression_directions
from facefit.model.morphable_model import MorphableModel

__all__ = ["BilinearFaceModel", "bilinear_from_model", "expression_directions"]

_KEYS = ("bilinear_core", "bilinear_id_mean", "bilinear_id_sigma", "bilinear_exp_neutral",
         "bilinear_exp_sigma")


def bilinear_from_model(model: MorphableModel) -> BilinearModel | None:
    """The `BilinearModel` behind a linearised FaceScape model (``extras["bilinear_core"]``
    and its statistics, kept by `to_morphable_model`), or None for a linear model."""
    ex = model.extras
    if not all(k in ex for k in _KEYS):
        return None
    return BilinearModel(
        name=model.name, core=ex["bilinear_core"], id_mean=ex["bilinear_id_mean"],
        id_sigma=ex["bilinear_id_sigma"], exp_neutral=ex["bilinear_exp_neutral"],
        exp_sigma=ex["bilinear_exp_sigma"], triangles=model.triangles, uv=model.uv,
        landmark_ids=dict(model.landmark_ids), mirror_ids=model.mirror_ids,
        licence=model.licence, source=model.source)


class BilinearFaceModel(CoefficientLayout):
    """A `BilinearModel` (and the linearised `MorphableModel` it was loaded as) seen through
    the `FaceModel` protocol; parameters (shape = identity, expression)."""

    kind = "bilinear"

    def __init__(self, bm: BilinearModel, base: MorphableModel) -> None:
        self.bm = bm
        self._base = base
        self.directions = expression_directions(bm)

    @property
    def base(self) -> MorphableModel:
        return self._base

    @property
    def num_params(self) -> int:
        return self.bm.num_identity + self.directions.shape[1]

    @property
    def num_shape_params(self) -> int:
        return self.bm.num_identity

    def zero_params(self) -> FaceParams:
        return FaceParams(np.zeros(self.bm.num_identity), np.zeros(self.directions.shape[1]))

    def weights(self, params: FaceParams) -> tuple[np.ndarray, np.ndarray]:
        """(identity weights (I,), expression weights (E,)) of ``params``."""
        bm = self.bm
        return (bm.id_mean + bm.id_sigma * np.asarray(params.shape, np.float64),
                bm.exp_neutral + self.directions @ np.asarray(params.expression, np.float64))

    def vertices(self, params: FaceParams, ids: np.ndarray | None = None) -> np.ndarray:
        w, e = self.weights(params)
        core = self.bm.core if ids is None else self.bm.core[ids]
        return np.einsum("vcie,i,e->vc", core, w, e, optimize=True)

    def vertex_jacobian(self, params: FaceParams, ids: np.ndarray) -> np.ndarray:
        w, e = self.weights(params)
        d_id = self.bm.identity_basis(e, ids) * self.bm.id_sigma
        d_exp = self.bm.expression_basis(w, ids) @ self.directions
        return np.concatenate([d_id, d_exp], axis=2)
