"""The linear (PCA) kind of `facefit.model.face_model.FaceModel`: vertices
``mean + shape_basis @ a + expression_basis @ b`` with N(0, 1) priors on ``a`` and ``b``
(Blanz & Vetter, "A Morphable Model for the Synthesis of 3D Faces", SIGGRAPH 1999)."""

from __future__ import annotations

import numpy as np

from facefit.fit.core.priors import GaussianPrior
from facefit.model.face_model import FaceParams
from facefit.model.morphable_model import MorphableModel


class LinearFaceModel:
    """A `MorphableModel` seen through the `FaceModel` protocol; parameters (shape,
    expression)."""

    kind = "linear"

    def __init__(self, model: MorphableModel) -> None:
        self._model = model

    @property
    def base(self) -> MorphableModel:
        return self._model

    @property
    def num_params(self) -> int:
        return self._model.num_shape + self._model.num_expression

    def zero_params(self) -> FaceParams:
        return FaceParams(np.zeros(self._model.num_shape), np.zeros(self._model.num_expression))

    def vertices(self, params: FaceParams, ids: np.ndarray | None = None) -> np.ndarray:
        m = self._model
        sel = slice(None) if ids is None else ids
        return (m.mean[sel].astype(np.float64) + m.shape_basis[sel] @ params.shape
                + m.expression_basis[sel] @ params.expression)

    def vertex_jacobian(self, params: FaceParams, ids: np.ndarray) -> np.ndarray:
        m = self._model
        return np.concatenate([m.shape_basis[ids], m.expression_basis[ids]], 2).astype(np.float64)

    def parameter_vector(self, params: FaceParams) -> np.ndarray:
        return np.r_[params.shape, params.expression].astype(np.float64)

    def with_vector(self, params: FaceParams, vector: np.ndarray) -> FaceParams:
        ks = self._model.num_shape
        return FaceParams(vector[:ks].copy(), vector[ks:].copy(), params.joints)

    def prior(self) -> GaussianPrior:
        return GaussianPrior.standard(self.num_params)
