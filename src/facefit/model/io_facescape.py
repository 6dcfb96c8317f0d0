"""FaceScape bilinear model reader and the `BilinearModel` companion type.

FaceScape (Yang et al., "FaceScape: a Large-scale High Quality 3D Face Dataset and Detailed
Riggable 3D Face Prediction", CVPR 2020) publishes ``facescape_bm_v1.6_*.npz`` with
``shape_bm_core`` (3V, I, E): vertices = ``core . id . exp`` (identity weights first, then
expression weights; ``exp = e_0`` is the neutral face), ``id_mean`` / ``id_var`` (I,)
identity weight statistics, ``fv_indices`` (F, 3) and ``ft_indices`` (F, 3) 1-based face
vertex / texture-coordinate ids, ``texcoords`` (T, 2), ``lm_list_v16`` (68,) landmark vertex
ids. Multilinear face models follow Vlasic et al., "Face Transfer with Multilinear Models",
SIGGRAPH 2005; FaceWarehouse (Cao et al., TVCG 2014) introduced the identity x expression
bilinear face model.

A bilinear model is not linear in (identity, expression) jointly. `to_morphable_model` fixes
one factor to make it linear in the other (identity basis at a fixed expression, expression
basis at a fixed identity), and `facefit.fit.bilinear_fit` alternates the two linear solves.
facefit's own `build.build_bilinear` writes the same layout, with HOSVD factors instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefit.io.safe_pickle import NpzArchive, PickleDataError, read_npz
from facefit.model.io_common import ModelFileError, PathLike, complete_topology, read_model_file
from facefit.model.morphable_model import MorphableModel

LICENCE = "FaceScape licence: non-commercial research use only (facescape.nju.edu.cn)"


@dataclass(frozen=True, eq=False)
class BilinearModel:
    """Identity x expression bilinear model; vertices = core x_id w x_exp e (mm).

    Attributes:
        name: model name.
        core: (V, 3, I, E) float32 core tensor already multiplied by the vertex factor, mm.
        id_mean: (I,) mean identity weights; id_sigma: (I,) their standard deviations.
        exp_neutral: (E,) expression weights of the neutral face.
        exp_sigma: (E,) spread of the expression weights (prior scale for fitting).
        triangles: (F, 3) int32; uv: (V, 2) float32 or None; landmark_ids: name -> ids.
        mirror_ids: (V,) int64 or None; licence, source: strings;
        extras: other arrays (e.g. ``id_weights`` (n_subjects, I) from a HOSVD build).
    """

    name: str
    core: np.ndarray
    id_mean: np.ndarray
    id_sigma: np.ndarray
    exp_neutral: np.ndarray
    exp_sigma: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray | None = None
    landmark_ids: dict[str, np.ndarray] = field(default_factory=dict)
    mirror_ids: np.ndarray | None = None
    licence: str = ""
    source: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.core.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.core.shape[2])

    @property
    def num_expression(self) -> int:
        return int(self.core.shape[3])

    def vertices(self, id_weights: np.ndarray | None = None,
                 exp_weights: np.ndarray | None = None,
                 ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) or (len(ids), 3) float32 mm for identity / expression weights (defaults:
        ``id_mean`` and ``exp_neutral``)."""
        w = self.id_mean if id_weights is None else np.asarray(id_weights, np.float64)
        e = self.exp_neutral if exp_weights is None else np.asarray(exp_weights, np.float64)
        core = self.core if ids is None else self.core[ids]
        return np.einsum("vcie,i,e->vc", core, w, e, optimize=True).astype(np.float32)

    def identity_basis(self, exp_weights: np.ndarray | None = None,
                       ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3, I) float64: d vertices / d identity weights at expression ``exp_weights``."""
        e = self.exp_neutral if exp_weights is None else np.asarray(exp_weights, np.float64)
        core = self.core if ids is None else self.core[ids]
        return np.einsum("vcie,e->vci", core, e, optimize=True)

    def expression_basis(self, id_weights: np.ndarray | None = None,
                         ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3, E) float64: d vertices / d expression weights at identity ``id_weights``."""
        w = self.id_mean if id_weights is None else np.asarray(id_weights, np.float64)
        core = self.core if ids is None else self.core[ids]
        return np.einsum("vcie,i->vce", core, w, optimize=True)


MAX_FACTOR_SIZE = 512  # identity / expression weights: FaceScape has 50 and 52


def expression_directions(bm: BilinearModel) -> np.ndarray:
    """(E, E-1) expression directions orthogonal to the neutral weights (moving along those
    only rescales the face), scaled by ``exp_sigma``: the expression basis of
    `to_morphable_model` is ``expression_basis(w) @ directions``."""
    n = bm.exp_neutral / max(float(np.linalg.norm(bm.exp_neutral)), 1e-12)
    u, s, _ = np.linalg.svd(np.eye(n.size) - np.outer(n, n))
    return bm.exp_sigma[:, None] * u[:, s > 0.5]


def _need(z: NpzArchive, key: str, path: Path) -> np.ndarray:
    if key not in z.files:
        raise ModelFileError(path, f"missing key '{key}'")
    return _numeric(z, key, path)


def _numeric(z: NpzArchive, key: str, path: Path) -> np.ndarray:
    """Member ``key`` as a numeric array (object members are unpickled by the allow-list
    unpickler, as FaceScape's own files hold a few pickled dicts)."""
    arr = np.asarray(z[key])
    if arr.dtype.kind not in "biuf":
        raise ModelFileError(path, f"key '{key}' is not a numeric array")
    return arr


def _vector(z: NpzArchive, key: str, path: Path, size: int, default: np.ndarray
            ) -> np.ndarray:
    if key not in z.files:
        return default
    arr = _numeric(z, key, path).astype(np.float64).ravel()
    if arr.size != size:
        raise ModelFileError(path, f"key '{key}' has {arr.size} values, expected {size}")
    return arr


def read_bilinear(path: PathLike) -> BilinearModel:
    """Read a FaceScape-layout bilinear ``.npz`` (or one written by `build.build_bilinear`).

    Members are read by `facefit.io.safe_pickle.read_npz` (never numpy's pickle): only the
    keys below are read, and a pickled member among them goes through the allow-list
    unpickler."""
    p = Path(path)
    with read_model_file(read_npz, p, unpickle=True) as z:
        try:
            core = _need(z, "shape_bm_core", p).astype(np.float32)
            if core.ndim != 3 or core.shape[0] % 3 or 0 in core.shape:
                raise ModelFileError(p, f"key 'shape_bm_core' has shape {core.shape}, "
                                        "expected (3V, I, E)")
            v3, n_i, n_e = core.shape
            if n_i > MAX_FACTOR_SIZE or n_e > MAX_FACTOR_SIZE:
                raise ModelFileError(p, f"key 'shape_bm_core' has shape {core.shape}: more "
                                        f"than {MAX_FACTOR_SIZE} identity or expression weights")
            core4 = core.reshape(v3 // 3, 3, n_i, n_e)
            id_mean = _vector(z, "id_mean", p, n_i, np.zeros(n_i))
            id_var = _vector(z, "id_var", p, n_i, np.ones(n_i))
            neutral = np.zeros(n_e)
            neutral[0] = 1.0
            exp_neutral = _vector(z, "exp_neutral", p, n_e, neutral)
            exp_sigma = _vector(z, "exp_sigma", p, n_e, np.ones(n_e))
            tri = _need(z, "fv_indices", p).astype(np.int64)
            one_based = (bool(_numeric(z, "faces_one_based", p).ravel()[0])
                         if "faces_one_based" in z.files else True)
            if one_based:
                tri = tri - 1
            n_v = v3 // 3
            if tri.ndim != 2 or tri.shape[1] != 3 or (
                    tri.size and (tri.min() < 0 or tri.max() >= n_v)):
                raise ModelFileError(p, f"key 'fv_indices' is not (F, 3) vertex ids of {n_v} "
                                        "vertices")
            uv = None
            if "texcoords" in z.files and "ft_indices" in z.files:
                tc = _numeric(z, "texcoords", p).astype(np.float64)
                ft = _numeric(z, "ft_indices", p).astype(np.int64) - (1 if one_based else 0)
                if (tc.ndim != 2 or tc.shape[1] != 2 or ft.shape != tri.shape
                        or (ft.size and (ft.min() < 0 or ft.max() >= tc.shape[0]))):
                    raise ModelFileError(p, "keys 'texcoords' / 'ft_indices' do not match "
                                            "the faces")
                uv = np.zeros((n_v, 2), np.float32)
                uv[tri.ravel()] = tc[ft.ravel()]  # one texcoord per vertex (seams collapse)
            landmarks: dict[str, np.ndarray] = {}
            if "lm_list_v16" in z.files:
                landmarks["ibug68"] = _numeric(z, "lm_list_v16", p).astype(np.int64).ravel()
            extras = {k[len("extras/"):]: np.asarray(z[k]) for k in z.files
                      if k.startswith("extras/")}
            name = str(z["name"][()]) if "name" in z.files else "facescape-bilinear"
            licence = str(z["licence"][()]) if "licence" in z.files else LICENCE
        except ModelFileError:
            raise
        except PickleDataError as exc:
            raise ModelFileError(p, str(exc)) from None
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            problem = f"truncated or corrupt archive ({type(exc).__name__})"
            raise ModelFileError(p, problem) from None
    return BilinearModel(
        name=name, core=core4, id_mean=id_mean, id_sigma=np.sqrt(np.maximum(id_var, 0.0)),
        exp_neutral=exp_neutral, exp_sigma=exp_sigma, triangles=tri.astype(np.int32), uv=uv,
        landmark_ids=landmarks, licence=licence, source=str(p), extras=extras,
    )


def save_bilinear(model: BilinearModel, path: PathLike) -> Path:
    """Write ``model`` in the FaceScape ``.npz`` layout (0-based faces flagged explicitly)."""
    from facefit.io.atomic import atomic_path

    v, _, n_i, n_e = model.core.shape
    arrays: dict[str, np.ndarray] = {
        "shape_bm_core": model.core.reshape(3 * v, n_i, n_e).astype(np.float32),
        "id_mean": np.asarray(model.id_mean, np.float64),
        "id_var": np.asarray(model.id_sigma, np.float64) ** 2,
        "exp_neutral": np.asarray(model.exp_neutral, np.float64),
        "exp_sigma": np.asarray(model.exp_sigma, np.float64),
        "fv_indices": np.asarray(model.triangles, np.int32),
        "faces_one_based": np.array(False),
        "name": np.array(model.name),
        "licence": np.array(model.licence),
    }
    if model.uv is not None:
        arrays["texcoords"] = np.asarray(model.uv, np.float32)
        arrays["ft_indices"] = np.asarray(model.triangles, np.int32)
    if "ibug68" in model.landmark_ids:
        arrays["lm_list_v16"] = np.asarray(model.landmark_ids["ibug68"], np.int64)
    for k, val in model.extras.items():
        arrays[f"extras/{k}"] = np.asarray(val)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return Path(path)


def to_morphable_model(
    bm: BilinearModel,
    id_weights: np.ndarray | None = None,
    exp_weights: np.ndarray | None = None,
) -> MorphableModel:
    """Linearise ``bm`` at (``id_weights``, ``exp_weights``) (defaults: mean, neutral).

    shape_basis = d vertices / d identity at ``exp_weights``, scaled by ``id_sigma`` (so
    identity coefficients are N(0, 1) offsets from ``id_weights``); expression_basis =
    d vertices / d expression at ``id_weights``, scaled by ``exp_sigma``, with the direction
    of the neutral weights projected out (it only rescales the face). Exact for changes of
    one factor; the cross term of changing both is dropped.
    """
    w = bm.id_mean if id_weights is None else np.asarray(id_weights, np.float64)
    e = bm.exp_neutral if exp_weights is None else np.asarray(exp_weights, np.float64)
    mean = bm.vertices(w, e)
    shape = bm.identity_basis(e) * bm.id_sigma
    # Expression directions: the complement of the neutral weights (moving along them only
    # rescales the face), scaled by exp_sigma: weights = exp_weights + directions @ coeffs.
    directions = expression_directions(bm)
    exp_basis = np.einsum("vce,ek->vck", bm.expression_basis(w), directions)
    tri, uv, mirror, made = complete_topology(mean, bm.triangles, bm.uv, bm.mirror_ids)
    extras = dict(bm.extras)
    extras["bilinear_id_weights"] = np.asarray(w, np.float64)
    extras["bilinear_exp_weights"] = np.asarray(e, np.float64)
    extras["bilinear_exp_directions"] = directions
    # the bilinear model itself (same arrays, no copy), for the 2D alternating fit
    # (`facefit.fit.bilinear_fit.bilinear_from_model`); saved with the model by save_model
    extras.update(bilinear_core=bm.core, bilinear_id_mean=np.asarray(bm.id_mean, np.float64),
                  bilinear_id_sigma=np.asarray(bm.id_sigma, np.float64),
                  bilinear_exp_neutral=np.asarray(bm.exp_neutral, np.float64),
                  bilinear_exp_sigma=np.asarray(bm.exp_sigma, np.float64))
    return MorphableModel(
        name=bm.name,
        mean=mean.astype(np.float32),
        shape_basis=shape.astype(np.float32),
        expression_basis=exp_basis.astype(np.float32),
        triangles=tri,
        uv=uv,
        landmark_ids=dict(bm.landmark_ids),
        mirror_ids=mirror,
        licence=bm.licence,
        source=bm.source + (f" (linearised; {'; '.join(made)})" if made else " (linearised)"),
        extras=extras,
        kind="bilinear",
    )


def load_facescape(path: PathLike) -> MorphableModel:
    """FaceScape bilinear ``.npz`` linearised at the mean identity and neutral expression."""
    return to_morphable_model(read_bilinear(path))
