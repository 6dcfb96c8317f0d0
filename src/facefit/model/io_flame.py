"""FLAME reader (Li et al., "Learning a model of facial shape and expression from 4D scans",
SIGGRAPH Asia 2017) without chumpy, plus FLAME's linear blend skinning.

``generic_model.pkl`` / ``flame2023.pkl`` is a Python 2 pickle of a dict whose arrays are
partly ``chumpy.ch.Ch`` objects. It is read by `facefit.io.safe_pickle` (an allow-list
unpickler: a pickle that names anything else, e.g. ``os.system``, is refused before anything
runs); ``chumpy.*`` classes become stand-ins that keep the pickled state, and `load_flame`
turns plain ``Ch`` objects (state key ``x``) and ``scipy.sparse`` stand-ins into numpy
arrays after checking their shapes.

Keys used (metres in the file, millimetres in facefit): ``v_template`` (V, 3), ``shapedirs``
(V, 3, 300 + 100): the first 300 columns are identity and the last 100 expression, both
already scaled so that coefficients are N(0, 1); ``posedirs`` (V, 3, 36) pose correctives;
``J_regressor`` (5, V) sparse; ``weights`` (V, 5) skinning weights; ``kintree_table`` (2, 5)
parents; ``f`` (F, 3) triangles. Joints: 0 global, 1 neck, 2 jaw, 3 left eye, 4 right eye.

Landmarks need FLAME's landmark embedding file (``flame_static_embedding.pkl`` with
``lmk_face_idx`` / ``lmk_b_coords`` for the 51 inner iBUG points, optionally
``flame_dynamic_embedding.npy`` for the 17 contour points, or DECA's
``landmark_embedding.npy`` with ``full_lmk_faces_idx`` for all 68). The barycentric
embedding is stored in ``extras`` (``lmk_faces``, ``lmk_bary``) and the landmark set uses
each landmark's heaviest vertex. Without an embedding file: **no landmark set, so landmark
fitting, landmark-based initialisation and landmark metrics are unavailable**; with only the
static embedding the 17 contour landmarks are unavailable (set ``ibug51``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.fit.core.rotation import rodrigues
from facefit.io.safe_pickle import (
    PickleDataError,
    SparseStandIn,
    StandIn,
    load_pickle,
    read_npy,
)
from facefit.model.io_common import ModelFileError, PathLike, complete_topology, read_model_file
from facefit.model.morphable_model import MorphableModel

M_TO_MM = 1000.0
NUM_SHAPE = 300
LICENCE = ("FLAME licence (non-commercial scientific research) or CC-BY-4.0 for FLAME 2023 "
           "Open; see flame.is.tue.mpg.de")
NO_EMBEDDING = ("no landmark embedding file: landmark fitting, landmark initialisation and "
                "landmark metrics are unavailable for this FLAME model")
STATIC_ONLY = "static embedding only: the 17 contour landmarks (iBUG 1-17) are unavailable"


ChumpyStandIn = StandIn  # what a ``chumpy.*`` object in a FLAME pickle becomes


def _to_array(value: object, key: str, path: Path, max_elements: int = 50_000_000
              ) -> np.ndarray:
    """A numeric ndarray from a pickled value (array, chumpy ``Ch``, sparse matrix, list)."""
    if isinstance(value, SparseStandIn):
        try:
            return value.toarray(max_elements)
        except PickleDataError as exc:
            raise ModelFileError(path, f"key '{key}': {exc}") from None
    if isinstance(value, StandIn):
        if "x" not in value.state:
            raise ModelFileError(path, f"key '{key}' is a chumpy expression "
                                       f"({value.pickled_class}) that needs chumpy to evaluate")
        return _to_array(value.state["x"], key, path, max_elements)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "biuf":
        raise ModelFileError(path, f"key '{key}' is not a numeric array")
    return arr


def read_pickle(path: PathLike) -> object:
    """Unpickle ``path`` with `facefit.io.safe_pickle` (latin-1 for Python 2 pickles)."""
    return read_model_file(load_pickle, Path(path))


def _read_npy_dict(path: Path) -> dict[str, object]:
    """A dict saved with ``np.save`` (a 0-d object array), unpickled safely."""
    obj = read_model_file(read_npy, path, unpickle=True)
    item = obj.item() if obj.dtype == object and obj.size == 1 else None
    if not isinstance(item, dict):
        raise ModelFileError(path, "landmark embedding is not a dict")
    return item


@dataclass(frozen=True, eq=False)
class FlameModel:
    """FLAME with its skinning data; ``model`` is the linear part used by the fitters.

    Attributes:
        model: the `MorphableModel` (mm); extras hold ``flame_posedirs`` (V, 3, 36),
            ``flame_J_regressor`` (J, V), ``flame_weights`` (V, J), ``flame_parents`` (J,).
        posedirs: (V, 3, 36) float32 mm per unit of (R - I) entries of joints 1..J-1.
        j_regressor: (J, V) float32 dense joint regressor.
        weights: (V, J) float32 skinning weights.
        parents: (J,) int64 parent joint of each joint, -1 for the root.
        unavailable: features that need files not given (e.g. the landmark embedding).
    """

    model: MorphableModel
    posedirs: np.ndarray
    j_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    unavailable: tuple[str, ...] = ()

    def vertices(
        self,
        shape_coeffs: np.ndarray | None = None,
        expression_coeffs: np.ndarray | None = None,
        pose: np.ndarray | None = None,
    ) -> np.ndarray:
        """(V, 3) mm posed vertices; ``pose`` is (J, 3) axis-angle (global, neck, jaw, eyes)."""
        rest = self.model.vertices(shape_coeffs, expression_coeffs)
        if pose is None:
            return rest
        return linear_blend_skinning(rest, np.asarray(pose, np.float64), self.posedirs,
                                     self.j_regressor, self.weights, self.parents)


def linear_blend_skinning(
    rest: np.ndarray,
    pose: np.ndarray,
    posedirs: np.ndarray,
    j_regressor: np.ndarray,
    weights: np.ndarray,
    parents: np.ndarray,
) -> np.ndarray:
    """FLAME/SMPL skinning of rest-pose vertices ``rest`` (V, 3) mm with ``pose`` (J, 3) rad.

    Pose correctives ``posedirs @ vec(R_j - I)`` (joints 1..J-1) are added before skinning;
    joints are regressed from the shaped rest vertices. Returns (V, 3) float32 mm.
    """
    rest = np.asarray(rest, np.float64)
    rots = rodrigues(pose)
    n_j = rots.shape[0]
    feat = (rots[1:] - np.eye(3)).ravel()
    posed = rest + np.asarray(posedirs, np.float64) @ feat
    joints = np.asarray(j_regressor, np.float64) @ rest
    world = np.zeros((n_j, 4, 4))
    for j in range(n_j):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        par = int(parents[j])
        local[:3, 3] = joints[j] - (joints[par] if par >= 0 else 0.0)
        world[j] = local if par < 0 else world[par] @ local
    rel = world.copy()
    rel[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
    blend = np.einsum("vj,jab->vab", np.asarray(weights, np.float64), rel)
    out = np.einsum("vab,vb->va", blend[:, :3, :3], posed) + blend[:, :3, 3]
    return out.astype(np.float32)


def _load_embedding(path: Path, triangles: np.ndarray) -> tuple[dict[str, np.ndarray],
                                                                 dict[str, np.ndarray], str]:
    """(landmark_ids, extras, note) from a FLAME / DECA landmark embedding file."""
    emb = _read_npy_dict(path) if path.suffix.lower() == ".npy" else read_pickle(path)
    if not isinstance(emb, dict):
        raise ModelFileError(path, "landmark embedding is not a dict")
    emb = {str(k): _to_array(v, str(k), path) for k, v in emb.items()}
    extras: dict[str, np.ndarray] = {}
    if "full_lmk_faces_idx" in emb:
        faces = emb["full_lmk_faces_idx"].astype(np.int64).reshape(-1)
        bary = emb[_need_key(emb, "full_lmk_bary_coords", path)].reshape(-1, 3)
        name, note = "ibug68", "landmarks: full 68-point embedding"
    elif "lmk_face_idx" in emb or "static_lmk_faces_idx" in emb:
        fk = "lmk_face_idx" if "lmk_face_idx" in emb else "static_lmk_faces_idx"
        bk = "lmk_b_coords" if fk == "lmk_face_idx" else "static_lmk_bary_coords"
        faces = emb[fk].astype(np.int64).reshape(-1)
        bary = emb[_need_key(emb, bk, path)].reshape(-1, 3)
        name, note = "ibug51", f"landmarks: static 51-point embedding; {STATIC_ONLY}"
        for dk, dbk in (("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords"),):
            if dk in emb and dbk in emb:
                _check_dynamic(emb[dk], emb[dbk], triangles, path)
                extras["lmk_dynamic_faces"] = emb[dk].astype(np.int64)
                extras["lmk_dynamic_bary"] = emb[dbk].astype(np.float32)
    else:
        raise ModelFileError(path, "missing key 'lmk_face_idx' (or 'full_lmk_faces_idx')")
    if faces.size != bary.shape[0]:
        raise ModelFileError(path, f"{faces.size} landmark faces but {bary.shape[0]} "
                                   "barycentric rows")
    if faces.size and (faces.min() < 0 or faces.max() >= triangles.shape[0]):
        raise ModelFileError(path, f"landmark face ids outside 0..{triangles.shape[0] - 1}")
    corners = triangles[faces]
    ids = corners[np.arange(faces.size), np.argmax(bary, axis=1)].astype(np.int64)
    extras["lmk_faces"] = faces
    extras["lmk_bary"] = bary.astype(np.float32)
    return {name: ids}, extras, note


def _check_dynamic(faces: np.ndarray, bary: np.ndarray, triangles: np.ndarray,
                   path: Path) -> None:
    """The dynamic (contour) embedding: (B, 17) face ids in range, (B, 17, 3) barycentrics."""
    if faces.ndim != 2 or bary.shape != (*faces.shape, 3):
        raise ModelFileError(path, f"dynamic embedding of shapes {faces.shape} / {bary.shape}, "
                                   "expected (B, 17) / (B, 17, 3)")
    if faces.size and (faces.min() < 0 or faces.max() >= triangles.shape[0]):
        raise ModelFileError(path, f"dynamic landmark face ids outside "
                                   f"0..{triangles.shape[0] - 1}")


def _need_key(d: dict[str, np.ndarray], key: str, path: Path) -> str:
    if key not in d:
        raise ModelFileError(path, f"missing key '{key}'")
    return key


def load_flame(
    path: PathLike,
    embedding: PathLike | None = None,
    dynamic_embedding: PathLike | None = None,
    num_shape: int = NUM_SHAPE,
) -> FlameModel:
    """Read a FLAME ``.pkl`` (and optional landmark embedding) into a `FlameModel` in mm.

    Without ``embedding``, ``landmark_embedding.npy`` / ``flame_static_embedding.pkl`` beside
    ``path`` are used when present; ``dynamic_embedding`` (``flame_dynamic_embedding.npy``)
    adds the contour embedding to ``extras``.
    """
    p = Path(path)
    raw = read_pickle(p)
    if not isinstance(raw, dict):
        raise ModelFileError(p, "not a FLAME pickle (expected a dict of arrays)")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                "kintree_table", "f"):
        if key not in raw:
            raise ModelFileError(p, f"missing key '{key}'")
    v_t = _to_array(raw["v_template"], "v_template", p).astype(np.float64)
    if v_t.ndim != 2 or v_t.shape[1] != 3 or v_t.shape[0] < 3:
        raise ModelFileError(p, f"key 'v_template' has shape {v_t.shape}, expected (V, 3)")
    v = v_t.shape[0]
    kin = _to_array(raw["kintree_table"], "kintree_table", p)
    if kin.ndim != 2 or kin.shape[0] != 2 or not 1 <= kin.shape[1] <= 64:
        raise ModelFileError(p, f"key 'kintree_table' has shape {kin.shape}, expected (2, J)")
    n_j = kin.shape[1]
    arrays = {key: _to_array(raw[key], key, p, max_elements=64 * v)
              for key in ("shapedirs", "posedirs", "J_regressor", "weights", "f")}
    want = {"posedirs": (v, 3, 9 * (n_j - 1)), "J_regressor": (n_j, v), "weights": (v, n_j)}
    for key, shape in want.items():
        got = arrays[key].shape
        if key == "posedirs" and got in ((3 * v, shape[2]), (v * 3 * shape[2],)):
            continue  # stored flat: reshaped below
        if got != shape:
            raise ModelFileError(p, f"key '{key}' has shape {got}, expected {shape}")
    sd = arrays["shapedirs"].astype(np.float64)
    if sd.ndim != 3 or sd.shape[:2] != (v, 3):
        raise ModelFileError(p, f"key 'shapedirs' has shape {sd.shape}, expected ({v}, 3, K)")
    ks = min(num_shape, sd.shape[2])
    posedirs = arrays["posedirs"].astype(np.float64).reshape(v, 3, -1)
    j_reg = arrays["J_regressor"].astype(np.float64)
    weights = arrays["weights"].astype(np.float64)
    parents = kin.astype(np.int64)[0].copy()
    parents[(parents < 0) | (parents >= parents.size)] = -1
    tri = arrays["f"]
    if tri.ndim != 2 or tri.shape[1] != 3 or (tri.size and (tri.min() < 0 or tri.max() >= v)):
        raise ModelFileError(p, f"key 'f' is not (F, 3) vertex ids in 0..{v - 1}")
    tri = tri.astype(np.int32)
    mean = (v_t * M_TO_MM).astype(np.float32)
    extras = {
        "flame_posedirs": (posedirs * M_TO_MM).astype(np.float32),
        "flame_J_regressor": j_reg.astype(np.float32),
        "flame_weights": weights.astype(np.float32),
        "flame_parents": parents,
    }
    landmarks: dict[str, np.ndarray] = {}
    unavailable: list[str] = []
    notes: list[str] = []
    emb_path = Path(embedding) if embedding is not None else None
    if emb_path is None:
        for cand in ("landmark_embedding.npy", "flame_static_embedding.pkl"):
            if (p.parent / cand).is_file():
                emb_path = p.parent / cand
                break
    if emb_path is not None:
        landmarks, emb_extras, note = _load_embedding(emb_path, tri)
        extras.update(emb_extras)
        notes.append(note)
        if "ibug68" not in landmarks:
            unavailable.append(STATIC_ONLY)
    else:
        unavailable.append(NO_EMBEDDING)
    dyn = Path(dynamic_embedding) if dynamic_embedding is not None else (
        p.parent / "flame_dynamic_embedding.npy")
    if dyn.is_file() and "lmk_dynamic_faces" not in extras:
        d = _read_npy_dict(dyn)
        if "lmk_face_idx" in d and "lmk_b_coords" in d:
            faces = _to_array(d["lmk_face_idx"], "lmk_face_idx", dyn).astype(np.int64)
            bary = _to_array(d["lmk_b_coords"], "lmk_b_coords", dyn)
            _check_dynamic(faces, bary, tri, dyn)
            extras["lmk_dynamic_faces"] = faces
            extras["lmk_dynamic_bary"] = bary.astype(np.float32)
            notes.append("dynamic contour embedding")
    tri, uv, mirror, made = complete_topology(mean, tri, None, None)
    model = MorphableModel(
        name="flame2023" if "2023" in p.name else "flame",
        mean=mean,
        shape_basis=(sd[:, :, :ks] * M_TO_MM).astype(np.float32),
        expression_basis=(sd[:, :, ks:] * M_TO_MM).astype(np.float32),
        triangles=tri,
        uv=uv,
        landmark_ids=landmarks,
        mirror_ids=mirror,
        licence=LICENCE,
        source=f"{p} ({'; '.join(notes + made + unavailable) or 'FLAME'})",
        extras=extras,
        kind="flame",
    )
    return FlameModel(model=model, posedirs=extras["flame_posedirs"],
                      j_regressor=extras["flame_J_regressor"], weights=extras["flame_weights"],
                      parents=parents, unavailable=tuple(unavailable))


def flame_from_model(model: MorphableModel) -> FlameModel:
    """Rebuild a `FlameModel` from a `MorphableModel` whose extras carry FLAME's skinning data
    (e.g. one converted to facefit ``.npz``); its ``model`` is of kind ``"flame"``."""
    ex = model.extras
    for key in ("flame_posedirs", "flame_J_regressor", "flame_weights", "flame_parents"):
        if key not in ex:
            raise ValueError(f"model {model.name}: missing extras '{key}' (not a FLAME model)")
    if model.kind != "flame":
        model = dataclasses.replace(model, kind="flame")
    return FlameModel(model=model, posedirs=ex["flame_posedirs"],
                      j_regressor=ex["flame_J_regressor"], weights=ex["flame_weights"],
                      parents=ex["flame_parents"].astype(np.int64))
