"""ARKit blendshape weights for any fitted face: transfer of the ICT Face Model's blendshapes
(ICT-FaceKit, Li et al., CVPR 2020, MIT licence) onto another model, and the per-face
bounded least-squares solve.

Transfer (one-off, `scripts/build_arkit_transfer.py`): the ICT neutral face is aligned to the
target model's mean by its 68 landmarks (similarity, Umeyama 1991), then deformed onto it by
a non-rigid ICP with a smooth displacement field (`nonrigid_icp`; after Amberg et al.,
"Optimal Step Nonrigid ICP Algorithms for Surface Registration", CVPR 2007: closest-point
targets, Laplacian stiffness lowered step by step, landmark terms). Each ICT blendshape is
then carried to every target vertex from its nearest registered ICT vertices
(`transfer_offsets`). The result is stored on a fixed subset of the target's vertices
(`ArkitTransfer`).

Per face (`arkit_blendshapes`): with the detection's landmarks, the model's identity on the
stored vertices plus the transferred shapes as [0, 1]-bounded blendshapes
(`ArkitTransfer.blendshape_model`, an ICT-kind model) are fitted to them by the bounded,
sparse fitter of `facefit.fit.blendshape`. Without landmarks, `ArkitTransfer.weights`
explains the fitted expression ``E b`` by ``min |E_S (b - C w)|^2 / sigma^2 + lam sum(w)
+ eps |w|^2`` over w in [0, 1] (``E_S``: the expression basis on the S stored vertices,
scaled to the RMS vertex distance; ``C``: each transferred shape projected onto the
expression basis, the part of it the model can express), by bounded least squares
(`facefit.fit.core.solver.box_least_squares`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.core.camera import CameraPose
from facefit.fit.core.solver import box_least_squares, box_quadratic
from facefit.fit.correspondence import IBUG68_FIXED
from facefit.model.morphable_model import MorphableModel

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_TRANSFER = DATA_DIR / "arkit_bfm3ddfa.npz"

ARKIT_52 = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
"""Apple ARKit's 52 ``ARFaceAnchor.BlendShapeLocation`` names, in Live Link Face's order."""

DEFAULT_SIGMA_MM = 0.5
DEFAULT_SPARSITY = 2.0
DEFAULT_RIDGE = 0.05


def arkit_name(name: str) -> str | None:
    """The ARKit name of an ICT shape name (``eyeBlink_L`` → ``eyeBlinkLeft``; ICT's split
    ``browInnerUp_L/_R`` → ``browInnerUp``; cheekPuff_L/_R → ``cheekPuff``), None for shapes
    ARKit does not have (``cheekRaiser_L``, ``PupilDilate_R``)."""
    base = name[:-2] + ("Left" if name.endswith("_L") else "Right") if name[-2:] in (
        "_L", "_R") else name
    if base in ARKIT_52:
        return base
    stem = name[:-2] if name[-2:] in ("_L", "_R") else name
    return stem if stem in ARKIT_52 else None


def arkit_dict(names: list[str], weights: np.ndarray) -> dict[str, float]:
    """{ARKit name: weight} for all 52 names from weights of (ICT-named) shapes: shapes that
    map to one ARKit name are averaged, names without a shape are 0."""
    sums = dict.fromkeys(ARKIT_52, 0.0)
    counts = dict.fromkeys(ARKIT_52, 0)
    for n, w in zip(names, np.asarray(weights, np.float64), strict=True):
        a = arkit_name(n)
        if a is not None:
            sums[a] += float(w)
            counts[a] += 1
    return {a: round(sums[a] / counts[a], 4) if counts[a] else 0.0 for a in ARKIT_52}


# --------------------------------------------------------------------------- registration

def mesh_laplacian(num_vertices: int, triangles: np.ndarray):
    """(V, V) sparse uniform graph Laplacian ``I - D^-1 A`` of a triangle mesh."""
    from scipy import sparse

    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])),
                            shape=(num_vertices, num_vertices)).tocsr()
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(1)).ravel()
    inv = sparse.diags(1.0 / np.maximum(deg, 1.0))
    return sparse.identity(num_vertices, format="csr") - inv @ adj


def nonrigid_icp(source: np.ndarray, triangles: np.ndarray, target: np.ndarray,
                 source_landmarks: np.ndarray, target_landmarks: np.ndarray,
                 stiffness: tuple[float, ...] = (100.0, 30.0, 10.0, 3.0, 1.0),
                 iterations: int = 3, max_distance: float = 15.0,
                 landmark_weight: float = 10.0) -> np.ndarray:
    """Deform ``source`` (V, 3) (mesh ``triangles``) onto the point set ``target`` (T, 3).

    Each iteration pairs every source vertex with its closest target point (pairs farther than
    ``max_distance`` are dropped) and solves for a displacement ``u`` minimising
    ``sum_i |x_i + u_i - t_i|^2 + alpha |L u|^2 + landmark_weight sum_l |x_l + u_l - y_l|^2``
    (L: the mesh Laplacian, alpha: the current ``stiffness``) with source landmark vertex ids
    ``source_landmarks`` and their target positions ``target_landmarks`` (K, 3).
    Returns the deformed (V, 3) vertices.
    """
    from scipy import sparse
    from scipy.sparse.linalg import splu
    from scipy.spatial import cKDTree

    x = np.asarray(source, np.float64).copy()
    n = len(x)
    lap = mesh_laplacian(n, triangles)
    ltl = (lap.T @ lap).tocsc()
    tree = cKDTree(np.asarray(target, np.float64))
    lm_w = np.zeros(n)
    lm_w[source_landmarks] = landmark_weight
    lm_t = np.zeros((n, 3))
    lm_t[source_landmarks] = target_landmarks
    for alpha in stiffness:
        for _ in range(iterations):
            dist, j = tree.query(x)
            w = (dist < max_distance).astype(np.float64)
            diag = sparse.diags(w + lm_w + 1e-6)
            lu = splu((diag + alpha * ltl).tocsc())
            rhs = (w[:, None] * (target[j] - x) + lm_w[:, None] * (lm_t - x))
            x = x + lu.solve(rhs)
    return x


TRANSFER_BLOCK = 2048
"""Points `transfer_offsets` takes at a time: the gathered neighbour offsets of a block
(2048 x 4 x 3 x 53 float32, 5 MB) instead of all 53,215 points' (135 MB)."""


def transfer_offsets(registered: np.ndarray, offsets: np.ndarray, points: np.ndarray,
                     k: int = 4) -> np.ndarray:
    """(P, 3, K) blendshape offsets at ``points`` (P, 3): inverse-distance mean over the ``k``
    nearest ``registered`` source vertices (V, 3) of their offsets (V, 3, K).

    The result is a view of a (K, P, 3) array (each shape's offsets contiguous, as
    `facefit.io.arkit_export.arkit_targets` reads them), filled `TRANSFER_BLOCK` points at
    a time: each point's sum is the same one over its neighbours either way."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(registered).query(points, k=k)
    w = 1.0 / np.maximum(dist, 1e-6)
    w /= w.sum(1, keepdims=True)
    w, idx = w.reshape(len(points), -1), idx.reshape(len(points), -1)  # k = 1: (P,) -> (P, 1)
    out = np.empty((offsets.shape[2], len(points), offsets.shape[1]),
                   np.result_type(w, offsets)).transpose(1, 2, 0)
    for s in range(0, len(points), TRANSFER_BLOCK):
        e = s + TRANSFER_BLOCK
        np.einsum("pk,pkcs->pcs", w[s:e], offsets[idx[s:e]], out=out[s:e])
    return out


# --------------------------------------------------------------------------- per-face solve

def fingerprint(model: MorphableModel, vertex_ids: np.ndarray) -> np.ndarray:
    """(5,) vertex count, centroid (3) and RMS radius (mm) of ``model``'s mean on
    ``vertex_ids``."""
    pts = model.mean[vertex_ids].astype(np.float64)
    c = pts.mean(0)
    return np.r_[model.num_vertices, c, np.sqrt(((pts - c) ** 2).sum(1).mean())]


@dataclass(frozen=True, eq=False)
class ArkitTransfer:
    """ARKit blendshapes carried onto a model, stored on a subset of its vertices.

    Attributes:
        names: K shape names (ICT's, e.g. ``"eyeBlink_L"``; `arkit_dict` maps them to ARKit's).
        vertex_ids: (S,) int64 model vertices the offsets are stored at.
        offsets: (S, 3, K) float32 mm, each shape at weight 1.
        fingerprint: (5,) float64 of the target model: vertex count, centroid (3) and RMS
            radius (mm) of its mean on the stored vertices (`fingerprint`; no model geometry
            is stored, the target's licence may not allow it).
        source: a line saying where the transfer came from.
    """

    names: list[str]
    vertex_ids: np.ndarray
    offsets: np.ndarray
    fingerprint: np.ndarray
    source: str = ""

    def matches(self, model: MorphableModel, tol_mm: float = 0.5) -> bool:
        """True if ``model`` looks like the transfer's target: same vertex count, centroid and
        RMS radius on the stored vertices within ``tol_mm``."""
        if model.num_vertices != int(self.fingerprint[0]):
            return False
        return bool(np.abs(fingerprint(model, self.vertex_ids) - self.fingerprint).max()
                    <= tol_mm)

    def projection(self, model: MorphableModel) -> np.ndarray:
        """(Ke, K) coefficients ``C`` of the least-squares fit of each shape by the model's
        expression basis on the stored vertices."""
        e = model.expression_basis[self.vertex_ids].reshape(-1, model.num_expression)
        c, *_ = np.linalg.lstsq(e.astype(np.float64),
                                self.offsets.reshape(-1, len(self.names)).astype(np.float64),
                                rcond=None)
        return c

    def blendshape_model(self, model: MorphableModel) -> MorphableModel:
        """The model's identity on the stored vertices with the transferred shapes as
        blendshape expressions (an ICT-kind model, `facefit.model.ict.ICTFaceModel`), for
        fitting ARKit weights directly to landmarks (`facefit.fit.blendshape`); its
        ``ibug68`` ids index the stored vertices."""
        pos = {int(v): i for i, v in enumerate(self.vertex_ids)}
        lm = model.landmark_ids.get("ibug68")
        landmarks = {}
        if lm is not None and all(int(v) in pos for v in lm):
            landmarks["ibug68"] = np.array([pos[int(v)] for v in lm], np.int64)
        s = len(self.vertex_ids)
        return MorphableModel(
            name=f"{model.name}+arkit", mean=model.mean[self.vertex_ids],
            shape_basis=model.shape_basis[self.vertex_ids], expression_basis=self.offsets,
            triangles=np.zeros((0, 3), np.int32), uv=np.zeros((s, 2), np.float32),
            landmark_ids=landmarks, mirror_ids=np.arange(s, dtype=np.int64),
            licence=model.licence, source=self.source,
            extras={"expression_weight_bounds": np.array([0.0, 1.0], np.float32),
                    "expression_names": np.array(self.names, dtype=str)}, kind="ict")

    def weights(self, model: MorphableModel, expression: np.ndarray,
                sigma_mm: float = DEFAULT_SIGMA_MM, sparsity: float = DEFAULT_SPARSITY,
                ridge: float = DEFAULT_RIDGE) -> np.ndarray:
        """(K,) weights in [0, 1] explaining expression coefficients (Ke,) or (N, Ke) (then
        (N, K)): bounded least squares of the RMS vertex distance ``|E_S (b - C w)|`` over
        ``sigma_mm`` with the elastic-net
        sparsity rows of `facefit.fit.blendshape` (L1 ``sparsity`` + ``ridge``)."""
        return _solver(self, model, sigma_mm, sparsity, ridge)(expression)


def _solver(tr: ArkitTransfer, model: MorphableModel, sigma: float, lam: float, eps: float):
    e = model.expression_basis[tr.vertex_ids].reshape(-1, model.num_expression).astype(
        np.float64) / (sigma * np.sqrt(len(tr.vertex_ids)))  # RMS vertex distance / sigma
    c = tr.projection(model)
    # |E (b - C w)|^2 = |R (b - C w)|^2 with R the Cholesky factor of E^T E.
    r = np.linalg.cholesky(e.T @ e + 1e-9 * np.eye(e.shape[1])).T
    k = c.shape[1]
    se = np.sqrt(eps)
    a = np.vstack([r @ c, se * np.eye(k)])
    h = a.T @ a  # the normal matrix, the same for every frame

    def solve(b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, np.float64)
        if b.ndim == 2:
            return np.stack([solve(row) for row in b])
        rhs = np.r_[r @ b, np.full(k, -lam / (2.0 * se))]
        return np.clip(box_quadratic(h, a.T @ rhs, 0.0, 1.0), 0.0, 1.0)

    return solve


def save_transfer(path: str | Path, tr: ArkitTransfer) -> None:
    """Write ``tr`` as a compact npz (offsets float16), atomically."""
    from facefit.io.atomic import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, names=np.array(tr.names, dtype=str),
                            vertex_ids=tr.vertex_ids.astype(np.int32),
                            offsets=tr.offsets.astype(np.float16),
                            fingerprint=tr.fingerprint.astype(np.float64),
                            source=np.array(tr.source))


def read_transfer(path: str | Path) -> ArkitTransfer:
    """Read a transfer file written by `save_transfer`."""
    with np.load(Path(path), allow_pickle=False) as z:
        return ArkitTransfer([str(n) for n in z["names"]], z["vertex_ids"].astype(np.int64),
                             z["offsets"].astype(np.float32), z["fingerprint"].astype(np.float64),
                             str(z["source"]))


@functools.lru_cache(maxsize=1)
def default_transfer() -> ArkitTransfer | None:
    """The shipped transfer onto the default model, or None if the file is missing."""
    return read_transfer(DEFAULT_TRANSFER) if DEFAULT_TRANSFER.is_file() else None


@functools.lru_cache(maxsize=2)
def _hybrid(model: MorphableModel, tr: ArkitTransfer):
    from facefit.model.ict import ICTFaceModel

    return ICTFaceModel(tr.blendshape_model(model))


def _arkit_source(model: MorphableModel, expression: np.ndarray,
                  transfer: ArkitTransfer | None) -> tuple[dict[str, float] | None,
                                                           ArkitTransfer | None]:
    """(the weights themselves, None) for a blendshape (ICT) model; (None, the transfer) for
    a model ``transfer`` (default: the shipped one) matches; (None, None) otherwise."""
    from facefit.model.ict import ict_from_model

    ict = ict_from_model(model)
    if ict is not None:
        return arkit_dict(ict.expression_names, np.clip(expression, 0.0, 1.0)), None
    return None, _matching_transfer(model, transfer)


@functools.lru_cache(maxsize=4)
def _matching_transfer(model: MorphableModel, transfer: ArkitTransfer | None
                       ) -> ArkitTransfer | None:
    """``transfer`` (None: the shipped one) if it matches ``model``, else None; per model and
    transfer once (`ArkitTransfer.matches` reads the mean: 1 ms a video frame)."""
    tr = default_transfer() if transfer is None else transfer
    return tr if tr is not None and tr.matches(model) else None


@dataclass(frozen=True, eq=False)
class _PoseSolve:
    """What `arkit_for_pose` solves with that depends on the model and transfer alone.

    Attributes:
        hybrid: `_hybrid` of them (the identity on the stored vertices + the shapes).
        lm: (68,) its ``ibug68`` vertex ids; zeros: (K,) zero shape weights.
        d_points: (68, 3, S + K) float64 the landmarks' derivative by identity, weights.
        weights: (68,) `ibug68_weights` with the eye points x `EYELID_WEIGHT`.
        prior: (S + K, S + K) the prior rows (identity N(0, 1), ridge on the weights).
        lower, upper: (S + K,) the solve's bounds (gaze shapes held at 0).
        eye: (E,) the lid shapes' columns (S + `_eye_shape_ids`).
    """

    hybrid: object
    lm: np.ndarray
    zeros: np.ndarray
    d_points: np.ndarray
    weights: np.ndarray
    prior: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    eye: np.ndarray


@functools.lru_cache(maxsize=2)
def _pose_solve(model: MorphableModel, tr: ArkitTransfer) -> _PoseSolve:
    from facefit.fit.blendshape import DEFAULT_RIDGE as eps
    from facefit.fit.blendshape import ibug68_weights

    hm = _hybrid(model, tr)
    lm = hm.base.landmark_ids["ibug68"]
    k, ks = len(tr.names), hm.base.num_shape
    d_points = np.concatenate([hm.base.shape_basis[lm], tr.offsets[lm]], 2).astype(np.float64)
    weights = ibug68_weights()
    weights[EYELID_IDS] *= EYELID_WEIGHT
    prior = np.diag(np.r_[np.ones(ks), np.full(k, np.sqrt(eps))])
    arrays = (lm, np.zeros(k), d_points, weights, prior,
              np.r_[np.full(ks, -np.inf), np.zeros(k)], np.r_[np.full(ks, np.inf),
                                                              _no_gaze(tr.names)],
              ks + _eye_shape_ids(tuple(tr.names)))
    for a in arrays:
        a.flags.writeable = False
    return _PoseSolve(hm, *arrays)


def arkit_blendshapes(model: MorphableModel, expression: np.ndarray,
                      face: FaceLandmarks | None = None,
                      transfer: ArkitTransfer | None = None) -> dict[str, float] | None:
    """{ARKit name: weight} (52 names) of a fitted face, or None when the model has none.

    * a blendshape (ICT) model: its fitted weights ``expression``;
    * a model the transfer matches (by default the shipped one onto the default model): with
      the detection ``face`` (68 iBUG or MediaPipe points), the transferred blendshapes and
      the model's identity fitted to its landmarks (`facefit.fit.blendshape`, bounded, sparse);
      without it, the weights explaining the fitted ``expression`` coefficients
      (`ArkitTransfer.weights`; the default model's 10 expression components cannot express
      eye shapes, so blinks and gaze come out 0 there).
    """
    own, tr = _arkit_source(model, expression, transfer)
    if own is not None or tr is None:
        return own
    if face is None or face.scheme not in ("ibug68", IBUG68_FIXED, "mediapipe468"):
        return arkit_dict(tr.names, tr.weights(model, expression))
    from facefit.fit.blendshape import fit_blendshape_face

    fit = fit_blendshape_face(_hybrid(model, tr), face, (1, 1), num_identity=None)
    return arkit_dict(tr.names, fit.extras["blendshape_weights"])


def arkit_for_pose(model: MorphableModel, face: FaceLandmarks, pose: CameraPose,
                   identity: np.ndarray, expression: np.ndarray,
                   transfer: ArkitTransfer | None = None, landmark_sigma: float = 0.01,
                   sparsity: float | None = None,
                   eyelids: EyelidCalibration | None = None,
                   lids: FaceLandmarks | None = None,
                   lid_calibration: EyelidCalibration | None = None
                   ) -> dict[str, float] | None:
    """{ARKit name: weight} for one video frame whose camera ``pose`` is already fitted: a
    blendshape (ICT) model's ``expression`` itself; for a model the transfer matches, the
    transferred blendshapes' weights (in [0, 1], sparsity prior of `facefit.fit.blendshape`)
    and an identity correction (N(0, 1) prior, around the clip's ``identity``) that best
    explain the frame's 68 landmarks at that pose (one bounded linear least-squares solve,
    exact for the scaled orthographic camera; landmark noise ``landmark_sigma`` x face size,
    `facefit.fit.blendshape.ibug68_weights`: outline left out but the chin). The identity
    term absorbs the per-clip mismatch between the detector's landmark convention and the
    model's landmark vertices, which the weights would otherwise take up. Gaze shapes
    (``eyeLook*``) are held at 0: 68 landmarks carry no pupil, and their lid motion took up
    the blinks (a frame of the synthetic blink clip, `facefit.video.synthetic`, with the
    upper lid points moved onto the lower ones: eyeBlink 0.37 beside eyeLookDown 0.66; 0.66
    without the gaze shapes); the eye points weigh `EYELID_WEIGHT`. ``eyelids`` (one per
    clip) removes the clip's own offset of the eyelid points from the model's
    (`EyelidCalibration`), so an open eye is the model's neutral one and a closing one a
    blink. ``lids``: the same face with each eye landmarked on its own
    (`facefit.detect.eyes`): the lid shapes (``eyeBlink/Squint/Wide``) are then solved again
    from its eye points (calibrated by ``lid_calibration``, the clip's second one), with
    everything else as solved. Else None."""
    from facefit.fit.blendshape import DEFAULT_RIDGE as eps
    from facefit.fit.blendshape import DEFAULT_SPARSITY
    from facefit.fit.core.residuals import landmark_rows
    from facefit.model.face_model import FaceParams

    own, tr = _arkit_source(model, expression, transfer)
    if own is not None or tr is None:
        return own
    pts = _ibug68(face)
    if pts is None:
        return None
    lid_pts = None if lids is None else _ibug68(lids)
    ps = _pose_solve(model, tr)
    d_points, weights = ps.d_points, ps.weights
    k = len(tr.names)
    ks = d_points.shape[2] - k
    ident = np.asarray(identity, np.float64)
    base = ps.hybrid.vertices(FaceParams(ident, ps.zeros), ps.lm)  # type: ignore[attr-defined]
    model_px = pose.project(base)[0][:, :2]
    if eyelids is not None:
        pts = eyelids.correct(pts, model_px)
    if lid_pts is not None and lid_calibration is not None:
        lid_pts = lid_calibration.correct(lid_pts, model_px)
    span = np.ptp(pts, axis=0)
    sigma = landmark_sigma * float(np.sqrt(max(span[0] * span[1], 1.0)))
    jac, res = landmark_rows(pose, base, d_points, pts, weights / sigma**2)
    lam = DEFAULT_SPARSITY if sparsity is None else sparsity
    se = np.sqrt(eps)
    a = np.vstack([jac[:, 6:], ps.prior])
    # identity step d around the clip's: prior N(0, 1) on ident + d
    b = np.r_[res, -ident, np.full(k, -lam / (2.0 * se))]
    sol = box_least_squares(a, b, ps.lower, ps.upper)
    if lid_pts is not None:
        # the eye shapes alone, the rest as solved, from the eyelids landmarked per eye
        eye = ps.eye
        fitted = base + d_points @ sol
        e = EYELID_IDS
        jac, res = landmark_rows(pose, fitted[e], d_points[e][:, :, eye], lid_pts[e],
                                 weights[e] / sigma**2)
        x0 = sol[eye]
        step = box_least_squares(
            np.vstack([jac[:, 6:], se * np.eye(len(eye))]),
            np.r_[res, -(se * x0 + lam / (2.0 * se))], -x0, 1.0 - x0)
        sol[eye] = x0 + step
    return arkit_dict(tr.names, np.clip(sol[ks:], 0.0, 1.0))


@functools.lru_cache(maxsize=4)
def _gaze_free(names: tuple[str, ...]) -> np.ndarray:
    return np.array([0.0 if n.startswith("eyeLook") else 1.0 for n in names])


@functools.lru_cache(maxsize=4)
def _eye_shape_ids(names: tuple[str, ...]) -> np.ndarray:
    """Indices of the lid shapes (``eyeBlink``, ``eyeSquint``, ``eyeWide``) among ``names``."""
    return np.array([i for i, n in enumerate(names)
                     if n.startswith(("eyeBlink", "eyeSquint", "eyeWide"))], np.int64)


def _no_gaze(names: list[str]) -> np.ndarray:
    """(K,) upper bounds of the landmark solve: 0 for the gaze shapes, 1 for the others."""
    return _gaze_free(tuple(names))


EYELID_IDS = np.arange(36, 48)
"""iBUG 68 eye points: the subject's right eye 36-41 (image left), left eye 42-47."""
EYELID_MIN_FRAMES = 5
"""Frames an `EyelidCalibration` (and the video ICT fit) takes the median offset over; before
that, each eye's offset is that of the frame where the eye was most open (`open_eye_offsets`):
a median of one or two frames took a blink for the open eye, and uncorrected first frames
kept the detector's offset (real LRS3 clip, left eye: eyeBlinkLeft 0.31-0.42 on frames 0-3,
then 0-0.02)."""


def open_eye_offsets(offsets: list[np.ndarray], closure: list[np.ndarray], eye: np.ndarray,
                     min_frames: int = EYELID_MIN_FRAMES) -> np.ndarray:
    """(P, 2) a clip's eyelid offsets of the open eye, from per-frame offsets (F of (P, 2)):
    their median once ``min_frames`` frames are in (blinks are short); before that, for each
    eye, the offsets in the frame where it was most open (least ``closure``, F of (E,); the
    points' eye ``eye``, (P,) in 0..E-1): an eye is seldom more open than open, so the first
    frames are corrected as the later ones, not left as detected, and a blink among them
    is not taken for the open eye (a median of so few frames would)."""
    off = np.stack(offsets)
    if len(off) >= min_frames:
        return np.median(off, axis=0)
    best = np.argmin(np.stack(closure), axis=0)  # (E,) the most open frame of each eye
    return off[best[np.asarray(eye)], np.arange(off.shape[1])]
EYELID_WEIGHT = 4.0
"""Weight of the eye points in the per-frame solve (the others 1): a lid's few pixels of
travel against the sparsity prior (synthetic clip, both eyes closed, with `EyelidCalibration`:
eyeBlink peaks 0.18 / 0.19 at weight 1, 0.26 / 0.26 at 4, 0.28 / 0.26 at 10)."""


def _eye_frames(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per eye point of (68, 2) ``pts``: its eye's unit corner-to-corner axis (12, 2), the
    perpendicular (12, 2) and the eye width (12,)."""
    corners = np.asarray(pts, np.float64)[[[36, 39], [42, 45]]]  # (2 eyes, 2, 2)
    axis = corners[:, 1] - corners[:, 0]
    width = np.linalg.norm(axis, axis=1)
    u = axis / np.maximum(width, 1e-9)[:, None]
    v = np.column_stack([-u[:, 1], u[:, 0]])
    return np.repeat(u, 6, 0), np.repeat(v, 6, 0), np.repeat(width, 6)


class EyelidCalibration:
    """Per-clip eyelid offsets: the median, over the clip's frames so far (the last
    ``history``), of each iBUG eye point's offset (36-47) from the model's neutral eye point
    at the frame's pose, in its eye's frame (along / across the corner line, over the eye
    width, so it follows head turns and scale). `correct` subtracts it: the eye as the clip
    mostly shows it (open; blinks are short) is the model's neutral eye, and a closing eye
    moves the lids from there. A detector's eyelid convention differs from the model's
    landmark vertices by a constant that otherwise sets the weights' zero: with MediaPipe's
    points the default model's neutral eye is narrower than a detected open one (iBUG eye
    aspect 0.27 against 0.35 on the synthetic clip), so a closing eye first had to pass it.
    Before ``min_frames`` frames are in, each eye's offsets are those of the frame where it
    was most open so far (`open_eye_offsets`)."""

    def __init__(self, history: int = 250, min_frames: int = EYELID_MIN_FRAMES) -> None:
        self.history = int(history)
        self.min_frames = int(min_frames)
        self._offsets: list[np.ndarray] = []
        self._closure: list[np.ndarray] = []

    def correct(self, pts: np.ndarray, model_pts: np.ndarray) -> np.ndarray:
        """(68, 2) ``pts`` with the eye points moved by minus the clip's open-eye offset
        from the model's projected points ``model_pts`` (68, 2) (this frame included;
        `open_eye_offsets`: the median, or over the first ``min_frames`` frames each eye's
        most open frame)."""
        pts = np.asarray(pts, np.float64)
        u, v, w = _eye_frames(pts)
        d = pts[EYELID_IDS] - np.asarray(model_pts, np.float64)[EYELID_IDS]
        off = np.column_stack([(d * u).sum(1), (d * v).sum(1)]) / w[:, None]
        self._offsets.append(off)
        self._closure.append(_lid_closure(off))
        del self._offsets[:-self.history], self._closure[:-self.history]
        med = open_eye_offsets(self._offsets, self._closure, _EYE_OF_POINT, self.min_frames)
        out = pts.copy()
        out[EYELID_IDS] -= (med[:, :1] * u + med[:, 1:] * v) * w[:, None]
        return out


_EYE_OF_POINT = np.repeat([0, 1], 6)  # eye (0: iBUG 36-41, 1: 42-47) of each `EYELID_IDS`


def _lid_closure(offsets: np.ndarray) -> np.ndarray:
    """(2,) per eye: how far the upper lid (iBUG 37, 38 / 43, 44) is down and the lower lid
    (41, 40 / 47, 46) up, from (12, 2) offsets in the eyes' frames (across: image-down for
    an upright head)."""
    across = offsets[:, 1].reshape(2, 6)
    return across[:, [1, 2]].mean(1) - across[:, [4, 5]].mean(1)


def _ibug68(face: FaceLandmarks) -> np.ndarray | None:
    pts = np.asarray(face.points_px, np.float64)
    if face.scheme in ("ibug68", IBUG68_FIXED):  # the network's 68 points are the latter
        return pts
    if face.scheme == "mediapipe468":
        from facefit.fit.correspondence import mediapipe_to_ibug68

        return mediapipe_to_ibug68(pts)
    return None


def arkit_summary(model: MorphableModel, rec: object) -> dict[str, dict[str, float]]:
    """``{"arkit_blendshapes": {name: weight}}`` for a `facefit.reconstruct.Reconstruction`
    (its fit and detection), or ``{}`` when the model has no ARKit weights."""
    fit = rec.fit  # type: ignore[attr-defined]
    weights = arkit_blendshapes(model, fit.expression_coeffs, getattr(rec, "face", None))
    return {} if weights is None else {"arkit_blendshapes": weights}
