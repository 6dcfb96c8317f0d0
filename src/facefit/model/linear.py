"""The linear (PCA) kind of `facefit.model.face_model.FaceModel`: vertices
``mean + shape_basis @ a + expression_basis @ b`` with N(0, 1) priors on ``a`` and ``b``
(Blanz & Vetter, "A Morphable Model for the Synthesis of 3D Faces", SIGGRAPH 1999)."""

from __future__ import annotations

import numpy as np

from facefit.model.face_model import CoefficientLayout, FaceParams
from facefit.model.morphable_model import MorphableModel


class LinearFaceModel(CoefficientLayout):
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

    @property
    def num_shape_params(self) -> int:
        return self._model.num_shape

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
