"""The ICT kind of `facefit.model.face_model.FaceModel`: a whole-head identity PCA with named
expression blendshapes (ICT Face Model, Li et al., "Learning Formation of Physically-Based
Face Attributes", CVPR 2020; MIT licence).

Vertices are ``neutral + identity_basis @ a + deltas @ w`` with identity ``a ~ N(0, 1)`` and
blendshape weights ``w`` in [0, 1] (no Gaussian basis: eos keeps ``Blendshape`` apart from
``PcaModel`` the same way). Fitters bound ``w`` by `ICTFaceModel.box` and may add the linear
sparsity penalty `ICTFaceModel.sparsity` (L1 on nonnegative weights); `prior` gives a weak
N(0, 1) ridge on ``w`` for generic Gaussian fitters. Regions are kept: fitting uses the
``face`` region (`fit_ids`), exports keep the whole head.

A model is of this kind when its loader set ``MorphableModel.kind = "ict"`` (as
`facefit.model.io_ict.ICTModel.to_morphable_model` does); `ict_from_model` builds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facefit.fit.core.priors import BoxPrior
from facefit.model.linear import LinearFaceModel
from facefit.model.morphable_model import MorphableModel

REGION_PREFIX = "region_"


class ICTFaceModel(LinearFaceModel):
    """A blendshape `MorphableModel` (identity PCA + expression blendshapes in [0, 1]) seen
    through the `FaceModel` protocol; parameters (identity (Ks), weights (Ke)). The geometry
    is linear, so vertices, Jacobian and parameter layout are `LinearFaceModel`'s; this kind
    adds the weight bounds, the sparsity cost and the regions. Its `prior` (N(0, 1) on
    everything) is a weak ridge on the weights for Gaussian fitters; bound them with `box`."""

    kind = "ict"

    @property
    def num_shape(self) -> int:
        return self._model.num_shape

    @property
    def num_expression(self) -> int:
        return self._model.num_expression

    @property
    def expression_names(self) -> list[str]:
        """Blendshape names (ARKit's, e.g. ``"jawOpen"``), or ``expr_<k>`` when not stored."""
        names = self._model.extras.get("expression_names")
        if names is None or len(names) != self.num_expression:
            return [f"expr_{k}" for k in range(self.num_expression)]
        return [str(n) for n in np.asarray(names).ravel()]

    @property
    def regions(self) -> dict[str, np.ndarray]:
        """Region name → sorted vertex ids (``face``, ``head``, ``eyes``, ``teeth``, ...)."""
        return {k[len(REGION_PREFIX):]: np.asarray(v, np.int64)
                for k, v in self._model.extras.items() if k.startswith(REGION_PREFIX)}

    def fit_ids(self) -> np.ndarray:
        """Vertex ids a dense fit should use: the ``face`` region, else every vertex."""
        face = self.regions.get("face")
        return np.arange(self._model.num_vertices) if face is None else face

    def box(self) -> BoxPrior:
        """Identity unbounded, blendshape weights in the model's bounds (default [0, 1])."""
        lo, hi = np.asarray(self._model.extras.get("expression_weight_bounds", [0.0, 1.0]),
                            np.float64).ravel()[:2]
        ks, ke = self.num_shape, self.num_expression
        return BoxPrior(np.r_[np.full(ks, -np.inf), np.full(ke, lo)],
                        np.r_[np.full(ks, np.inf), np.full(ke, hi)])

    def sparsity(self, strength: float = 1.0) -> np.ndarray:
        """(num_params,) coefficients ``c`` of the linear sparsity cost ``c @ x`` (L1 on the
        nonnegative weights, zero on identity)."""
        return np.r_[np.zeros(self.num_shape), np.full(self.num_expression, float(strength))]

    def describe(self) -> list[str]:
        """Lines for ``facefit model info``: kind, units, regions, expression names."""
        lines = [f"kind:        ict (identity N(0, 1) x {self.num_shape}, "
                 f"{self.num_expression} blendshapes, weights in [0, 1])",
                 "units:       mm (ICT-FaceKit files are in cm, scaled by 10 on load)"]
        regions = self.regions
        if regions:
            lines.append("regions:     " + ", ".join(
                f"{k} ({len(v)})" for k, v in sorted(regions.items())))
        lines.append("blendshapes: " + ", ".join(self.expression_names))
        return lines


def ict_from_model(model: MorphableModel | object) -> ICTFaceModel | None:
    """`ICTFaceModel` of a loaded model of kind ``"ict"`` (blendshape expressions), else
    None."""
    if not isinstance(model, MorphableModel) or model.kind != "ict":
        return None
    return ICTFaceModel(model)


def load_ict_modes(folder: str | Path, num_identity: int | None = None) -> MorphableModel:
    """The ICT model from the shared-data layout (``FaceXModel/generic_neutral_mesh.obj``,
    ``FaceXModel/vertex_indices.json`` and ``modes.npz`` of per-OBJ offsets in cm), as
    ``facefit.model.load_model`` would give it from the unpacked folder, without writing or parsing
    158 OBJ files (used by tests and the build scripts)."""
    from facefit.model.io_common import ModelFileError
    from facefit.model.io_ict import CM_TO_MM, NEUTRAL_FILE, ICTModel, read_obj

    root = Path(folder)
    modes_path = root / "modes.npz"
    if not modes_path.is_file():
        raise ModelFileError(modes_path, "file not found")
    mesh = read_obj(root / "FaceXModel" / NEUTRAL_FILE)
    index = json.loads((root / "FaceXModel" / "vertex_indices.json").read_text("utf-8"))
    with np.load(modes_path) as z:
        ident = sorted(k for k in z.files if k.startswith("identity"))
        if num_identity is not None:
            ident = ident[:num_identity]
        listed = [str(e) for e in index.get("expressions", [])]
        names = listed + sorted(set(z.files) - set(listed) - set(
            k for k in z.files if k.startswith("identity")))
        id_basis = np.stack([z[k] for k in ident], 2).astype(np.float32) * CM_TO_MM
        ex_basis = np.stack([z[k] for k in names], 2).astype(np.float32) * CM_TO_MM
    n = len(mesh.vertices)
    regions = {}
    from facefit.model.io_ict import REGION_MATERIALS
    for region, mats in REGION_MATERIALS.items():
        ids = [i for i, m in enumerate(mesh.materials) if m in mats]
        if ids:
            regions[region] = np.unique(
                mesh.triangles[np.isin(mesh.triangle_material, ids)]).astype(np.int64)
    vertex_uv = np.zeros((n, 2), np.float32)
    ok = mesh.triangle_uv >= 0
    vertex_uv[mesh.triangles[ok][::-1]] = mesh.uv[mesh.triangle_uv[ok][::-1]]
    lm = np.asarray(index["idx_to_landmark_verts"], np.int64)
    ict = ICTModel(
        neutral=(mesh.vertices * CM_TO_MM).astype(np.float32), identity_basis=id_basis,
        expression_deltas=ex_basis, expression_names=names, triangles=mesh.triangles,
        uv=mesh.uv, triangle_uv=mesh.triangle_uv, vertex_uv=vertex_uv,
        triangle_material=mesh.triangle_material, materials=mesh.materials, regions=regions,
        landmark_ids={"ibug68": lm} if lm.size == 68 else {}, source=str(root))
    return ict.to_morphable_model()


DATA_DIR = Path(__file__).parent / "data"
COMPACT_IDENTITY = DATA_DIR / "ict_head_identity.npz"
COMPACT_EXPRESSION = DATA_DIR / "ict_head_expression.npz"
IDENTITY_STEP_MM = 0.01
EXPRESSION_STEP_MM = 0.02
COMPACT_NAME = "ict"


def load_compact_ict() -> MorphableModel:
    """facefit's packaged ICT Face Model (``--model ict``; `scripts/build_ict_compact.py`):
    the head region (face, back of the head, neck), the leading identity modes and the 53
    ARKit-named blendshapes, int16-quantised; MIT licence (ICT-FaceKit)."""
    from scipy.spatial import cKDTree

    from facefit.model.io_common import ModelFileError
    from facefit.model.io_ict import LICENCE

    for p in (COMPACT_IDENTITY, COMPACT_EXPRESSION):
        if not p.is_file():
            raise ModelFileError(p, "file not found (run scripts/build_ict_compact.py)")
    with np.load(COMPACT_IDENTITY, allow_pickle=False) as z:
        neutral = z["neutral"].astype(np.float32)
        ident = z["identity"].astype(np.float32) * IDENTITY_STEP_MM
        tri, uv = z["triangles"].astype(np.int32), z["uv"].astype(np.float32)
        lm, face = z["ibug68"].astype(np.int64), z["face"].astype(np.int64)
    with np.load(COMPACT_EXPRESSION, allow_pickle=False) as z:
        names = [str(n) for n in z["names"]]
        deltas = z["deltas"].astype(np.float32) * EXPRESSION_STEP_MM
    q = neutral.astype(np.float64) * np.array([-1.0, 1.0, 1.0])
    mirror = np.asarray(cKDTree(neutral.astype(np.float64)).query(q)[1], np.int64)
    return MorphableModel(
        name=COMPACT_NAME, mean=neutral, shape_basis=ident, expression_basis=deltas,
        triangles=tri, uv=uv, landmark_ids={"ibug68": lm}, mirror_ids=mirror,
        licence=LICENCE, source=f"{COMPACT_IDENTITY.name} + {COMPACT_EXPRESSION.name} "
        "(facefit's compact ICT-FaceKit head)",
        kind="ict",
        extras={"expression_weight_bounds": np.array([0.0, 1.0], np.float32),
                "expression_names": np.array(names, dtype=str),
                "region_face": face, "region_head": np.arange(len(neutral), dtype=np.int64)})
