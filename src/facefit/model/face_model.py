"""The `FaceModel` protocol: what a fitter needs from any kind of face model.

A face model maps one parameter type, `FaceParams` (identity and expression coefficients in
prior-normalised units, plus joint rotations for articulated models), to model-frame vertices
in mm, and gives the Jacobian of any vertex subset with respect to its flattened parameter
vector (`FaceModel.parameter_vector`), with the prior of that vector. Kinds:

* `facefit.model.linear.LinearFaceModel`: PCA (``mean + S a + E b``);
* `facefit.model.flame.FlameFaceModel`: FLAME with linear blend skinning (jaw, neck);
* `facefit.model.bilinear.BilinearFaceModel`: FaceScape identity x expression tensor.

The loader decides the kind (`MorphableModel.kind`); `facefit.model.kinds.face_model` turns a
loaded `MorphableModel` into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from facefit.fit.core.priors import GaussianPrior
from facefit.model.morphable_model import MorphableModel


@dataclass(frozen=True, eq=False)
class FaceParams:
    """Parameters of a face of any model kind.

    Attributes:
        shape: (Ks,) identity coefficients, N(0, 1) a priori.
        expression: (Ke,) expression coefficients, N(0, 1) a priori.
        joints: (J, 3) axis-angle joint rotations in radians (articulated kinds), else None.
    """

    shape: np.ndarray
    expression: np.ndarray
    joints: np.ndarray | None = None


class CoefficientLayout:
    """The parameter layout of the unarticulated kinds (linear, ICT, bilinear):
    ``[shape, expression]``, N(0, 1) each; a kind supplies ``num_params`` and
    ``num_shape_params``."""

    num_params: int
    num_shape_params: int

    def parameter_vector(self, params: FaceParams) -> np.ndarray:
        return np.r_[params.shape, params.expression].astype(np.float64)

    def with_vector(self, params: FaceParams, vector: np.ndarray) -> FaceParams:
        k = self.num_shape_params
        return FaceParams(vector[:k].copy(), vector[k:].copy(), params.joints)

    def prior(self) -> GaussianPrior:
        return GaussianPrior.standard(self.num_params)


@runtime_checkable
class FaceModel(Protocol):
    """A face model kind (see the module docstring)."""

    kind: str

    @property
    def base(self) -> MorphableModel:
        """The linear model it was loaded as: topology, UVs, landmark sets, albedo."""
        ...

    @property
    def num_params(self) -> int: ...

    def zero_params(self) -> FaceParams: ...

    def vertices(self, params: FaceParams, ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) or (len(ids), 3) float64 model-frame vertices, mm."""
        ...

    def vertex_jacobian(self, params: FaceParams, ids: np.ndarray) -> np.ndarray:
        """(len(ids), 3, num_params) derivative of ``vertices(params, ids)`` with respect to
        ``parameter_vector(params)``."""
        ...

    def parameter_vector(self, params: FaceParams) -> np.ndarray:
        """(num_params,) the free parameters, in the Jacobian's column order."""
        ...

    def with_vector(self, params: FaceParams, vector: np.ndarray) -> FaceParams:
        """``params`` with its free parameters replaced by ``vector``."""
        ...

    def prior(self) -> GaussianPrior:
        """Gaussian prior of ``parameter_vector``."""
        ...
