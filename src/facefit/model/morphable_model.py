"""The `MorphableModel` type: a linear (PCA) 3D morphable model of the face.

A face is ``mean + shape_basis @ alpha + expression_basis @ beta`` with coefficients
``alpha`` and ``beta`` in prior-normalised units: each is a priori N(0, 1), so the
columns of the bases already carry the prior standard deviations (as in eos).
Vertices are stored as ``(V, 3)`` float32 in millimetres, in the model frame:
x to the face's left (viewer's right), y up, z out of the face towards a frontal viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The kinds of face model (`facefit.model.kinds.face_model` builds each): ``linear`` PCA,
#: ``flame`` (linear blend skinning), ``bilinear`` (FaceScape tensor), ``ict`` (blendshapes).
MODEL_KINDS = ("linear", "flame", "bilinear", "ict")


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """A linear morphable model with triangles, UVs and landmark vertex ids.

    Attributes:
        name: short model name, e.g. ``"bfm2009-3ddfa"``.
        mean: (V, 3) float32, mean face in mm.
        shape_basis: (V, 3, Ks) float32, identity basis scaled by the prior sigmas (mm per unit).
        expression_basis: (V, 3, Ke) float32, expression basis scaled by its prior sigmas.
        triangles: (F, 3) int32 vertex ids, counter-clockwise seen from outside the face.
        uv: (V, 2) float32 texture coordinates in [0, 1], v up (OBJ/glTF-style origin bottom-left).
        landmark_ids: mapping of landmark-set name to (L,) int64 vertex ids; ``"ibug68"`` is
            the 68-point iBUG set used by AFLW2000-3D.
        mirror_ids: (V,) int64, for each vertex its left/right mirror vertex (for symmetry).
        licence: one-line licence note for the data.
        source: where the data came from.
        albedo_mean: optional (V, 3) float32 per-vertex albedo in [0, 1].
        albedo_basis: optional (V, 3, Ka) float32 albedo basis scaled by its prior sigmas.
        extras: model-specific arrays of its kind (FLAME skinning, FaceScape core tensor,
            ICT regions, ...), read only by that kind's own module.
        kind: the model kind (`MODEL_KINDS`), set by the loader that read the file; the
            arrays above are then the kind's linear form (its tangent at rest).
    """

    name: str
    mean: np.ndarray
    shape_basis: np.ndarray
    expression_basis: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    landmark_ids: dict[str, np.ndarray]
    mirror_ids: np.ndarray
    licence: str = ""
    source: str = ""
    albedo_mean: np.ndarray | None = None
    albedo_basis: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"MorphableModel {self.name}: unknown kind {self.kind!r} "
                             f"(expected one of {', '.join(MODEL_KINDS)})")
        v = self.mean.shape[0]
        checks = {
            "mean": (self.mean.shape, (v, 3)),
            "shape_basis": (self.shape_basis.shape[:2], (v, 3)),
            "expression_basis": (self.expression_basis.shape[:2], (v, 3)),
            "uv": (self.uv.shape, (v, 2)),
            "mirror_ids": (self.mirror_ids.shape, (v,)),
        }
        for key, (got, want) in checks.items():
            if tuple(got) != want:
                raise ValueError(
                    f"MorphableModel {self.name}: {key} has shape {got}, expected {want}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise ValueError(f"MorphableModel {self.name}: triangles must be (F, 3)")

    @property
    def num_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shape_basis.shape[2])

    @property
    def num_expression(self) -> int:
        return int(self.expression_basis.shape[2])

    def vertices(
        self,
        shape_coeffs: np.ndarray | None = None,
        expression_coeffs: np.ndarray | None = None,
        ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """(V, 3) or (len(ids), 3) float32 vertices in mm for the given coefficients."""
        sel = slice(None) if ids is None else ids
        out = self.mean[sel].astype(np.float32, copy=True)
        for basis, coeffs in ((self.shape_basis, shape_coeffs),
                              (self.expression_basis, expression_coeffs)):
            if coeffs is not None and len(coeffs):
                b = basis[sel]  # one (3 n, K) matrix-vector product, not n batched (3, K) ones
                out += (b.reshape(-1, b.shape[-1]) @ np.asarray(coeffs, np.float32)
                        ).reshape(out.shape)
        return out
