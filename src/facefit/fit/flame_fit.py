"""Fit FLAME (Li et al., "Learning a model of facial shape and expression from 4D scans",
SIGGRAPH Asia 2017) to 2D landmarks, jaw and neck articulation included.

FLAME poses its rest shape ``mean + shape_basis @ alpha + expression_basis @ beta`` by
linear blend skinning with pose correctives (`facefit.model.io_flame.linear_blend_skinning`).
This fitter estimates, with a scaled orthographic camera:

* the camera: rotation (FLAME's global rotation: joint 0 is kept at zero, the camera rotation
  plays its part), log-scale and image translation;
* shape and expression coefficients, each with an N(0, 1) prior;
* neck and jaw rotations (axis-angle, radians) with N(0, sigma^2) priors per component.

Eyeball rotations stay at zero: the 68 iBUG landmarks lie on the eyelids, not on the eyeballs,
so they carry no information about gaze (`EYES_NOTE`).

Landmarks come from FLAME's barycentric landmark embedding (``extras["lmk_faces"]`` /
``["lmk_bary"]``: 68 points, or the 51 inner points of the static embedding); with the dynamic
contour embedding (``extras["lmk_dynamic_faces"]`` (79, 17), ``["lmk_dynamic_bary"]``
(79, 17, 3)) the 17 outline points use the embedding of the current head yaw, as in FLAME's
and DECA's code. A model with only an ``ibug68`` vertex-id set uses those vertices.

The solver is the fitting core's Levenberg-Marquardt (`facefit.fit.core`) on the full
parameter vector. The posed landmarks are affine
in the coefficients for a fixed pose (joints are regressed linearly from the rest shape), so
their coefficient Jacobian is exact and analytic; the few joint angles use central
differences (`facefit.model.flame.FlameSkinner`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera
from facefit.fit.core.camera import (
    NUM_POSE_PARAMS,
    CameraPose,
    camera_pose,
    estimate_perspective,
    estimate_scaled_orthographic,
)
from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.residuals import landmark_rows
from facefit.fit.core.rotation import rodrigues
from facefit.fit.core.solver import NormalEquations, levenberg_marquardt
from facefit.fit.correspondence import ibug68_points
from facefit.fit.result import FitResult, assemble_result, image_vertices
from facefit.model.flame import JAW, NECK, FlameSkinner
from facefit.model.io_flame import FlameModel, linear_blend_skinning

EYES_NOTE = ("eyeball rotations are left at 0: the 68 iBUG landmarks lie on the eyelids and "
             "carry no information about gaze")
_NUM_YAW_BINS = 79  # FLAME's dynamic embedding: yaw -39..39 degrees


_State = tuple[CameraPose, np.ndarray, np.ndarray]  # camera, coeffs, joints


class FlameLandmarkError(ValueError):
    """The FLAME model has no landmark embedding (one-line message)."""


@dataclass(frozen=True, eq=False)
class FlameEmbedding:
    """Barycentric landmarks of a FLAME mesh.

    Attributes:
        corners: (L, 3) vertex ids of each static landmark's triangle.
        bary: (L, 3) barycentric weights.
        ibug_index: (L,) 0-based iBUG-68 number of each static landmark.
        dynamic_corners: (79, 17, 3) contour triangles per yaw bin, or None.
        dynamic_bary: (79, 17, 3) their barycentric weights, or None.
        unavailable: notes on the landmarks this embedding cannot provide.
    """

    corners: np.ndarray
    bary: np.ndarray
    ibug_index: np.ndarray
    dynamic_corners: np.ndarray | None = None
    dynamic_bary: np.ndarray | None = None
    unavailable: tuple[str, ...] = ()


def flame_embedding(flame: FlameModel) -> FlameEmbedding:
    """The landmark embedding of ``flame``; raises `FlameLandmarkError` when it has none."""
    m = flame.model
    ex, tri = m.extras, np.asarray(m.triangles, np.int64)
    dyn_c = dyn_b = None
    if "lmk_dynamic_faces" in ex and "lmk_dynamic_bary" in ex:
        faces = np.asarray(ex["lmk_dynamic_faces"], np.int64).reshape(_NUM_YAW_BINS, 17)
        dyn_c = tri[faces]
        dyn_b = np.asarray(ex["lmk_dynamic_bary"], np.float64).reshape(_NUM_YAW_BINS, 17, 3)
    if "lmk_faces" in ex and "lmk_bary" in ex:
        faces = np.asarray(ex["lmk_faces"], np.int64).reshape(-1)
        bary = np.asarray(ex["lmk_bary"], np.float64).reshape(-1, 3)
        if faces.size not in (51, 68):
            raise FlameLandmarkError(f"FLAME model {m.name}: landmark embedding has "
                                     f"{faces.size} points, expected 51 or 68")
        index = np.arange(68 - faces.size, 68)
        corners = tri[faces]
    elif "ibug68" in m.landmark_ids:
        ids = np.asarray(m.landmark_ids["ibug68"], np.int64)
        corners, bary, index = np.repeat(ids[:, None], 3, 1), np.eye(3)[np.zeros(68, int)], \
            np.arange(68)
    else:
        raise FlameLandmarkError(
            f"FLAME model {m.name}: no landmark embedding (give flame_static_embedding.pkl or "
            "landmark_embedding.npy): landmark fitting, landmark initialisation and landmark "
            "metrics are unavailable")
    notes = []
    if index[0] > 0 and dyn_c is None:
        notes.append("static embedding only: the 17 contour landmarks (iBUG 1-17) are "
                     "unavailable")
    return FlameEmbedding(corners, bary, index, dyn_c, dyn_b, tuple(notes))


def dynamic_contour_bin(rotation: np.ndarray) -> int:
    """Yaw bin (0..78) of FLAME's dynamic contour embedding for a head rotation (3, 3):
    ``round(-yaw)`` in degrees for yaw <= 0 (clamped at 39), ``39 - round(-yaw)`` otherwise
    (78 beyond 39 degrees), as in FLAME's TF and DECA's PyTorch code."""
    r = np.asarray(rotation, np.float64)
    yaw = np.arctan2(-r[2, 0], np.hypot(r[0, 0], r[1, 0]))
    ang = int(np.round(min(-np.degrees(yaw), 39.0)))
    if ang >= 0:
        return ang
    return 78 if ang < -39 else 39 - ang


@dataclass(frozen=True, eq=False)
class FlameFit:
    """Result of `fit_flame_points`.

    Attributes:
        shape_coeffs, expression_coeffs: (Ks,), (Ke,) float64, N(0, 1) units.
        pose: (J, 3) axis-angle joint rotations (row 0, global, is zero: see ``rotation``;
            row 1 neck, row 2 jaw, rows 3-4 eyes).
        rotation: (3, 3) camera rotation, model frame to view frame.
        scale: px per mm; translation: (2,) px, image position of the model origin
            (perspective camera: scale 1 and translation (3,) mm, the model origin in the
            view frame).
        residual_px: RMS landmark residual; num_landmarks: landmarks used;
        iterations: LM iterations run; notes: features that were not fitted;
        camera: the camera model.
    """

    shape_coeffs: np.ndarray
    expression_coeffs: np.ndarray
    pose: np.ndarray
    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    residual_px: float
    num_landmarks: int
    iterations: int
    notes: tuple[str, ...]
    camera: Camera = Camera()

    def camera_pose(self) -> CameraPose:
        """The fitted camera (`facefit.fit.core.camera`)."""
        return camera_pose(self.rotation, self.scale, self.translation, self.camera.focal_px,
                           self.camera.principal_point_px)


def fit_flame_points(
    flame: FlameModel,
    points_px: np.ndarray,
    weights: np.ndarray | None = None,
    landmark_sigma_px: float = 2.0,
    neck_sigma: float = 0.2,
    jaw_sigma: float = 0.3,
    iterations: int = 30,
    fit_neck: bool = True,
    fit_jaw: bool = True,
    camera: Camera | None = None,
) -> FlameFit:
    """Fit camera, shape, expression, neck and jaw of ``flame`` to 68 iBUG landmarks.

    Args:
        flame: the FLAME model with a landmark embedding (`flame_embedding`).
        points_px: (68, 2) iBUG-68 landmarks in pixels (rows the embedding lacks are ignored).
        weights: (68,) relative confidence per landmark (default 1).
        landmark_sigma_px: landmark noise in pixels: balance between data and priors.
        neck_sigma, jaw_sigma: prior standard deviation of each joint angle component (rad).
        iterations: at most this many Levenberg-Marquardt iterations.
        fit_neck, fit_jaw: estimate these joints (else they stay at zero).
        camera: the camera model (scaled orthographic when None); a perspective camera
            starts from OpenCV's PnP on the rest-pose landmarks.
    """
    emb = flame_embedding(flame)
    m = flame.model
    n_j = int(np.asarray(flame.parents).size)
    pts = np.asarray(points_px, np.float64).reshape(68, 2)
    w_all = np.ones(68) if weights is None else np.asarray(weights, np.float64)
    joints = [j for j, on in ((NECK, fit_neck), (JAW, fit_jaw)) if on and j < n_j]
    sig = np.array([neck_sigma if j == NECK else jaw_sigma for j in joints for _ in range(3)])
    corner_sets = [emb.corners.ravel()]
    if emb.dynamic_corners is not None:
        corner_sets.append(emb.dynamic_corners.ravel())
    sel, inverse = np.unique(np.concatenate(corner_sets), return_inverse=True)
    skin = FlameSkinner(flame, sel)
    static_local = inverse[: emb.corners.size].reshape(-1, 3)
    dyn_local = (inverse[emb.corners.size:].reshape(_NUM_YAW_BINS, 17, 3)
                 if emb.dynamic_corners is not None else None)
    n_c = m.num_shape + m.num_expression
    n_p = 3 * len(joints)

    dynamic_on = [False]  # the contour joins once the inner points have set the head's yaw

    def layout(rotation: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
        """(local corner ids (L, 3), bary (L, 3), iBUG rows (L,)) for the current head pose."""
        if dyn_local is None or not dynamic_on[0]:
            return static_local, emb.bary, emb.ibug_index
        head = rotation @ rodrigues(pose[NECK])[0] if n_j > NECK else rotation
        b = dynamic_contour_bin(head)
        return (np.concatenate([dyn_local[b], static_local[-51:]]),
                np.concatenate([emb.dynamic_bary[b], emb.bary[-51:]]),
                np.r_[np.arange(17), emb.ibug_index[-51:]])

    def landmarks(x: np.ndarray, loc: np.ndarray, bary: np.ndarray) -> np.ndarray:
        return np.einsum("lk,lk...->l...", bary, x[loc])

    c = np.zeros(n_c)
    pose = np.zeros((n_j, 3))
    loc, bary, rows = layout(np.eye(3), pose)
    x0, _ = skin.points(c, pose)
    camera = Camera() if camera is None else camera
    if camera.kind == "perspective":
        cam: CameraPose = estimate_perspective(landmarks(x0, loc, bary), pts[rows],
                                               camera.focal_px,
                                               np.asarray(camera.principal_point_px))
    else:
        cam = estimate_scaled_orthographic(landmarks(x0, loc, bary), pts[rows], w_all[rows])
    inv_var = 1.0 / landmark_sigma_px**2
    coeff_prior = GaussianPrior.standard(n_c)
    joint_prior = GaussianPrior(np.zeros(n_p), sig)
    i_c = slice(NUM_POSE_PARAMS, NUM_POSE_PARAMS + n_c)
    i_j = slice(NUM_POSE_PARAMS + n_c, None)

    def rows_of(state: _State, jac: bool) -> tuple[np.ndarray, np.ndarray | None, float]:
        """Weighted landmark residual, its Jacobian (or None) and the MAP cost at ``state``."""
        cam, c, pose = state
        loc, bary, rows = layout(cam.rotation, pose)
        x, blend = skin.points(c, pose)
        lm = landmarks(x, loc, bary)
        prior_cost = coeff_prior.cost(c) + joint_prior.cost(pose[joints].ravel())
        if not jac:
            proj, _ = cam.project(lm)
            r = (pts[rows] - proj) * np.sqrt(w_all[rows] * inv_var)[:, None]
            return r.ravel(), None, float(r.ravel() @ r.ravel() + prior_cost)
        d_pts = np.concatenate([skin.coeff_jacobian(pose, blend),
                                skin.joint_jacobian(c, pose, joints)], axis=2)
        d_lm = np.einsum("lk,lkam->lam", bary, d_pts[loc])
        j_m, r = landmark_rows(cam, lm, d_lm, pts[rows], w_all[rows] * inv_var)
        return r, j_m, float(r @ r + prior_cost)

    def linearize(state: _State) -> tuple[NormalEquations, float]:
        r, j_m, cost = rows_of(state, True)
        eq = NormalEquations.from_rows(j_m, r)
        eq.add_prior(coeff_prior, state[1], i_c)
        eq.add_prior(joint_prior, state[2][joints].ravel(), i_j)
        return eq, cost

    def update(state: _State, d: np.ndarray) -> _State:
        cam, c, pose = state
        new_pose = pose.copy()
        new_pose[joints] += d[i_j].reshape(-1, 3)
        return cam.updated(d[:NUM_POSE_PARAMS]), c + d[i_c], new_pose

    state: _State = (cam, c, pose)
    done = 0
    for phase in ([False, True] if dyn_local is not None else [False]):
        dynamic_on[0] = phase
        out = levenberg_marquardt(linearize, lambda st: rows_of(st, False)[2], update, state,
                                  iterations)
        state, done = out.state, done + out.iterations
    cam, c, pose = state
    res, _, _ = rows_of(state, False)
    _, _, rows = layout(cam.rotation, pose)
    unweighted = res.reshape(-1, 2) / np.sqrt(w_all[rows] * inv_var)[:, None]
    rms = float(np.sqrt((unweighted**2).sum(1).mean()))
    notes = (*emb.unavailable, EYES_NOTE)
    ks = m.num_shape
    return FlameFit(c[:ks].copy(), c[ks:].copy(), pose, cam.rotation, cam.scale,
                    np.asarray(cam.translation, np.float64), rms, len(rows), done, notes, camera)


def flame_vertices(flame: FlameModel, fit: FlameFit) -> np.ndarray:
    """(V, 3) float32 posed model-frame vertices (mm) of a fit (camera not applied)."""
    rest = flame.model.vertices(fit.shape_coeffs, fit.expression_coeffs)
    return linear_blend_skinning(rest, fit.pose, flame.posedirs, flame.j_regressor,
                                 flame.weights, flame.parents)


def flame_result(flame: FlameModel, fit: FlameFit) -> FitResult:
    """A `FitResult` of a FLAME fit: posed dense vertices and the 68 landmarks in pixels.

    Landmarks the embedding lacks (the contour of a static-only embedding) are NaN.
    """
    verts = flame_vertices(flame, fit).astype(np.float64)
    camera = fit.camera_pose()
    verts_px = image_vertices(camera, verts)
    emb = flame_embedding(flame)
    lm3 = np.full((68, 3), np.nan, np.float32)
    lm3[emb.ibug_index] = np.einsum("lk,lka->la", emb.bary, verts_px[emb.corners])
    contour = lm3[:, :2].copy()
    if emb.dynamic_corners is not None:
        head = fit.rotation @ rodrigues(fit.pose[NECK])[0]
        b = dynamic_contour_bin(head)
        dyn = np.einsum("lk,lka->la", emb.dynamic_bary[b], verts_px[emb.dynamic_corners[b]])
        contour[:17] = dyn[:, :2]
        if emb.ibug_index[0] > 0:
            lm3[:17] = dyn
    return assemble_result(
        camera, fit.camera, verts_px, lm3, contour, fit.shape_coeffs, fit.expression_coeffs,
        fit.residual_px, fit.num_landmarks, fit.iterations, vertices_mm=verts,
        extras={"flame_pose": fit.pose.astype(np.float32),
                "flame_jaw_pose": fit.pose[JAW].astype(np.float32) if len(fit.pose) > JAW
                else np.zeros(3, np.float32)})


def fit_flame_landmarks(
    flame: FlameModel,
    face: FaceLandmarks,
    image_size: tuple[int, int],
    landmark_sigma: float = 0.02,
    iterations: int = 30,
    camera: Camera | None = None,
) -> FitResult:
    """Fit ``flame`` to one detected face (iBUG-68 landmarks, or MediaPipe's 468 mapped to
    iBUG-68); the `fit_landmarks` counterpart for FLAME.

    ``image_size`` (width, height) is accepted for symmetry with `fit_landmarks`;
    ``landmark_sigma`` is the landmark noise as a fraction of the face size; ``camera`` the
    camera model (scaled orthographic when None).
    """
    points, size = ibug68_points(face, "FLAME")
    fit = fit_flame_points(flame, points, landmark_sigma_px=landmark_sigma * size,
                           iterations=iterations, camera=camera)
    return flame_result(flame, fit)
