"""Fit a blendshape model (identity N(0, 1), expression weights in [0, 1]) to 2D points:
bounded Levenberg-Marquardt through the fitting core.

Each iteration linearises the 2D point residuals (`facefit.fit.core.residuals.landmark_rows`,
camera pose and model parameters together) and solves the step as a bounded linear least
squares problem (`BoundedNormalRows.solve`: the active-set solver
`facefit.fit.core.solver.box_quadratic`), so the weights never leave their box
(`facefit.fit.core.priors.BoxPrior`). Priors: N(0, 1) on identity, and on the weights an
elastic net, the sparsity cost ``lam * sum(w)`` (L1 on nonnegative weights is linear) plus
a small ridge ``eps * |w|^2``, written as least-squares rows by completing the square:
``eps w^2 + lam w = (sqrt(eps) w + lam / (2 sqrt(eps)))^2 - const``.
`facefit.fit.core.solver.levenberg_marquardt` drives the iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.contour import OCCLUDING_SIDE_TURN_DEG
from facefit.fit.core.camera import (
    NUM_POSE_PARAMS,
    CameraPose,
    estimate_perspective,
    estimate_scaled_orthographic,
)
from facefit.fit.core.residuals import landmark_rows
from facefit.fit.core.solver import box_quadratic, levenberg_marquardt
from facefit.fit.result import FitResult, assemble_result, image_vertices
from facefit.model.face_model import FaceParams
from facefit.model.ict import ICTFaceModel

if TYPE_CHECKING:
    from facefit.fit.camera import Camera
    from facefit.fit.multi_image import ViewPoints

DEFAULT_SPARSITY = 10.0  # cost of a weight of 1, in squared point sigmas (chi^2 units)
DEFAULT_RIDGE = 0.05  # eps of the elastic net on the weights
JAW_WEIGHT = 0.5  # weight of the chin points (iBUG 7-9) of the outline


def ibug68_weights() -> np.ndarray:
    """(68,) weights of the iBUG landmarks for fixed-vertex blendshape fits: detectors put
    the outline (0-16) on the silhouette, not on fixed vertices, so it is left out but for
    the chin (7-9, `JAW_WEIGHT`), which ``jawOpen`` moves."""
    w = np.ones(68)
    w[:17] = 0.0
    w[7:10] = JAW_WEIGHT
    return w


def view_blendshape_points(model: ICTFaceModel, points_px: np.ndarray, vertex_ids: np.ndarray,
                           weights: np.ndarray, contour_px: np.ndarray | None = None,
                           turn: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (N, 2) px, vertex ids (N,), weights (N,)) a blendshape fit uses from one view
    (`facefit.fit.multi_image.ViewPoints` fields): its fixed-vertex points, plus the chin
    (iBUG 7-9 at the model's ``ibug68`` vertices, weight `JAW_WEIGHT`) taken from a
    17-point iBUG outline ``contour_px`` (silhouette points, otherwise left out, as in
    `ibug68_weights`): the same points single-photo blendshape fits use. ``jawOpen`` moves
    the chin ~25 mm at weight 1, the lip shapes hardly at all, so the chin separates them
    when the inner lips alone do not (a detector's lips against the model's lip vertices).

    The chin is left out when the head is turned past
    `facefit.fit.contour.OCCLUDING_SIDE_TURN_DEG` (``turn``: the signed sine of the turn,
    `facefit.fit.contour.head_turn`, at the view's current or previous camera): the outline
    is then the face's visible edge, not the chin's fixed vertices. On the LRS3 clip of
    ``scripts/arkit_real_clips.py`` (45-54 degrees of yaw) MediaPipe's chin lay 7-13 mm
    sideways off those vertices (std 1 mm over the clip, after a fit without it), which
    the weights took up (cheekPuff_R 0.45, noseSneer_L 0.35 on average; jawForward
    following the mouth, r 0.85): ``--model ict`` jawOpen against the tracked inner-lip gap
    r 0.58 with the chin, 0.90 without; the frontal MEAD clip keeps it (0.86; 0.94 without;
    all at the photos' sparsity, `DEFAULT_SPARSITY`; video frames now use
    `facefit.video.fitter.VIDEO_SPARSITY`).
    """
    pts = np.asarray(points_px, np.float64)
    ids = np.asarray(vertex_ids, np.int64)
    w = np.asarray(weights, np.float64)
    lm = model.base.landmark_ids.get("ibug68")
    if (contour_px is None or len(contour_px) != 17 or lm is None or len(lm) != 68
            or abs(turn) > np.sin(np.radians(OCCLUDING_SIDE_TURN_DEG))):
        return pts, ids, w
    chin = np.arange(7, 10)
    return (np.vstack([pts, np.asarray(contour_px, np.float64)[chin]]),
            np.r_[ids, np.asarray(lm, np.int64)[chin]], np.r_[w, np.full(3, JAW_WEIGHT)])


@dataclass(eq=False)
class BoundedNormalRows:
    """A linearised least-squares problem ``min |A d - b|^2`` over ``lower <= d <= upper``,
    with `solve` matching `facefit.fit.core.solver.Solvable`."""

    jac: np.ndarray
    res: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def solve(self, damping: float = 0.0, ridge: float = 1e-9) -> np.ndarray:
        """Bounded step with Marquardt damping rows ``sqrt(damping diag(A^T A) + ridge)``."""
        # column-scaled (e = c d, unit columns) normal equations with the damping terms
        n2 = np.einsum("ij,ij->j", self.jac, self.jac)
        c = np.sqrt(np.maximum(n2, 1e-24))
        a = self.jac / c
        lhs = a.T @ a + np.diag((damping * n2 + ridge) / c**2)
        e = box_quadratic(lhs, a.T @ self.res, self.lower * c, self.upper * c)
        return e / c


@dataclass(frozen=True, eq=False)
class BlendshapeFit:
    """Result of `fit_blendshape_points`.

    Attributes:
        identity: (Ks,) identity coefficients, N(0, 1) units.
        weights: (Ke,) blendshape weights in [0, 1].
        camera: the fitted `CameraPose`.
        rms_px: RMS point residual, pixels.
        iterations: Levenberg-Marquardt iterations run.
    """

    identity: np.ndarray
    weights: np.ndarray
    camera: CameraPose
    rms_px: float
    iterations: int


@dataclass(frozen=True, eq=False)
class _State:
    camera: CameraPose
    x: np.ndarray


def fit_blendshape_points(
    model: ICTFaceModel,
    targets_px: np.ndarray,
    vertex_ids: np.ndarray,
    sigma_px: float,
    point_weights: np.ndarray | None = None,
    num_identity: int | None = None,
    sparsity: float = DEFAULT_SPARSITY,
    ridge: float = DEFAULT_RIDGE,
    iterations: int = 30,
    focal_px: float | None = None,
    principal_px: np.ndarray | None = None,
    identity: np.ndarray | None = None,
    init: tuple[CameraPose, np.ndarray] | None = None,
) -> BlendshapeFit:
    """Fit identity, blendshape weights and camera to 2D points on known vertices.

    Args:
        model: the blendshape model.
        targets_px: (N, 2) observed pixels of the vertices ``vertex_ids`` (N,).
        sigma_px: point noise, pixels (the weight of the points against the priors).
        point_weights: (N,) relative weights (default 1).
        num_identity: fit only the leading identity modes (default all).
        sparsity: L1 cost of the weights (``lam``), squared-sigma units; ridge: ``eps``.
        iterations: Levenberg-Marquardt iterations at most.
        focal_px, principal_px: a perspective camera; default scaled orthographic.
        identity: (Ks,) a fixed identity (a video's): only the camera and the weights are
            fitted (``num_identity`` is then ignored).
        init: (camera, (Ke,) weights) to start from (the previous video frame); default the
            camera estimated at zero weights.
    """
    ks_all, ke = model.num_shape, model.num_expression
    ks = ks_all if num_identity is None else min(int(num_identity), ks_all)
    if identity is not None:
        ks = 0
    cols = np.r_[np.arange(ks), ks_all + np.arange(ke)]
    ids = np.asarray(vertex_ids, np.int64)
    targets = np.asarray(targets_px, np.float64)
    pw = np.ones(len(ids)) if point_weights is None else np.asarray(point_weights, np.float64)
    pw = pw / sigma_px**2
    box = model.box()
    lo_w, hi_w = box.lower[ks_all:], box.upper[ks_all:]
    base_jac = model.vertex_jacobian(model.zero_params(), ids)[:, :, cols]  # linear model
    fixed = np.zeros(ks_all) if identity is None else np.asarray(identity, np.float64)
    mean = model.vertices(FaceParams(fixed, np.zeros(ke)), ids)
    se = np.sqrt(ridge)
    lam_row = sparsity / (2.0 * se)

    def points(x: np.ndarray) -> np.ndarray:
        return mean + base_jac @ x

    def prior_res(x: np.ndarray) -> np.ndarray:
        return np.r_[x[:ks], se * x[ks:] + lam_row]

    def cost(s: _State) -> float:
        img, _ = s.camera.project(points(s.x))
        r = ((targets - img) ** 2).sum(1) @ pw
        p = prior_res(s.x)
        return float(r + p @ p)

    def linearize(s: _State) -> tuple[BoundedNormalRows, float]:
        jac, res = landmark_rows(s.camera, points(s.x), base_jac, targets, pw)
        npar = len(cols)
        prior_jac = np.zeros((npar, NUM_POSE_PARAMS + npar))
        prior_jac[:, NUM_POSE_PARAMS:] = np.diag(np.r_[np.ones(ks), np.full(ke, se)])
        a = np.vstack([jac, prior_jac])
        b = np.r_[res, -prior_res(s.x)]
        lower = np.r_[np.full(NUM_POSE_PARAMS + ks, -np.inf), lo_w - s.x[ks:]]
        upper = np.r_[np.full(NUM_POSE_PARAMS + ks, np.inf), hi_w - s.x[ks:]]
        return BoundedNormalRows(a, b, np.minimum(lower, 0.0), np.maximum(upper, 0.0)), cost(s)

    def update(s: _State, d: np.ndarray) -> _State:
        x = s.x + d[NUM_POSE_PARAMS:]
        x[ks:] = np.clip(x[ks:], lo_w, hi_w)
        return _State(s.camera.updated(d[:NUM_POSE_PARAMS]), x)

    x0 = np.zeros(len(cols))
    x0[ks:] = np.clip(0.0 if init is None else init[1], lo_w, hi_w)
    if init is not None:
        cam = init[0]
    elif focal_px is None:
        cam: CameraPose = estimate_scaled_orthographic(points(x0), targets)
    else:
        cam = estimate_perspective(points(x0), targets, float(focal_px),
                                   np.asarray(principal_px, np.float64))
    out = levenberg_marquardt(linearize, cost, update, _State(cam, x0), iterations)
    st: _State = out.state  # type: ignore[assignment]
    img, _ = st.camera.project(points(st.x))
    rms = float(np.sqrt(((targets - img) ** 2).sum(1).mean()))
    shape = fixed.copy()
    shape[:ks] = st.x[:ks]
    return BlendshapeFit(shape, st.x[ks:].copy(), st.camera, rms, out.iterations)


def fit_blendshape_face(model: ICTFaceModel, face: FaceLandmarks, image_size: tuple[int, int],
                        camera: str = "orthographic", focal_px: float | None = None,
                        landmark_sigma: float = 0.01, num_identity: int | None = 40,
                        sparsity: float = DEFAULT_SPARSITY) -> FitResult:
    """Fit a blendshape model to one detection's 68 iBUG landmarks (MediaPipe points go
    through their iBUG-68 subset), weighted by `ibug68_weights` (outline left out but the chin).

    ``landmark_sigma`` is the landmark noise as a fraction of the face size (square root of
    the landmark box area); with the default sparsity, 0.01 recovered a 0.9 blink within 0.07
    from landmarks with 0 to 2 px noise where 0.02 gave 0.5 to 0.65. The result's
    ``expression_coeffs`` are the weights in [0, 1], also in ``extras["blendshape_weights"]``.
    """
    from facefit.fit.correspondence import mediapipe_to_ibug68
    from facefit.fit.landmark_fit import camera_model

    base = model.base
    ids68 = base.landmark_ids.get("ibug68")
    if ids68 is None or len(ids68) != 68:
        raise ValueError(f"model {base.name} has no 68-point iBUG landmark ids")
    pts = np.asarray(face.points_px, np.float64)
    if face.scheme == "mediapipe468":
        pts = mediapipe_to_ibug68(pts)
    elif face.scheme not in ("ibug68", "ibug68_fixed"):
        raise ValueError(f"no {face.scheme} correspondence for the blendshape model {base.name}")
    span = np.ptp(pts, axis=0)
    sigma = landmark_sigma * float(np.sqrt(max(span[0] * span[1], 1.0)))
    cam_model = camera_model(camera, image_size, focal_px)
    w = ibug68_weights()
    fit = fit_blendshape_points(
        model, pts, np.asarray(ids68, np.int64), sigma, w, num_identity=num_identity,
        sparsity=sparsity, focal_px=cam_model.focal_px,
        principal_px=None if cam_model.principal_point_px is None
        else np.asarray(cam_model.principal_point_px))
    params = FaceParams(fit.identity, fit.weights)
    verts_px = image_vertices(fit.camera, model.vertices(params))
    lm3 = verts_px[np.asarray(ids68)]
    return assemble_result(fit.camera, cam_model, verts_px, lm3, lm3[:, :2], fit.identity,
                           fit.weights, fit.rms_px, 68, fit.iterations,
                           extras={"blendshape_weights": fit.weights.astype(np.float32)})


def fit_blendshape_views(
    model: ICTFaceModel,
    views: Sequence[ViewPoints],
    iterations: int = 30,
    shape_prior_weight: float = 1.0,
    num_identity: int | None = None,
    sparsity: float = DEFAULT_SPARSITY,
    ridge: float = DEFAULT_RIDGE,
    cameras: Sequence[Camera] | None = None,
) -> tuple[np.ndarray, list[BlendshapeFit]]:
    """Fit one identity and per-view cameras and bounded blendshape weights to several views
    of the same face (photos of one person, video frames).

    Each view starts from its own bounded fit at the mean identity (`fit_blendshape_points`);
    then one bounded Levenberg-Marquardt over everything at once: the shared identity
    (N(0, 1) prior counted ``shape_prior_weight`` times, `facefit.fit.multi_image
    .shared_bias_weight`), each view's camera and its weights (box [0, 1], the elastic-net
    sparsity rows of `fit_blendshape_points`). A joint step, not alternation: identity and
    lip or brow shapes move the same landmarks, and alternating between them crawled (on
    four synthetic photos the identity was still 3 prior units off after 20 rounds). The
    views' points go through `view_blendshape_points` (the chin from a silhouette outline).

    Args:
        model: the blendshape model.
        views: `facefit.fit.multi_image.ViewPoints` of each image.
        iterations: joint Levenberg-Marquardt iterations at most.
        num_identity: fit only the leading identity modes (default all).
        cameras: each view's camera model (`facefit.fit.camera.Camera`; default scaled
            orthographic).

    Returns:
        (identity (Ks,), one `BlendshapeFit` per view at that identity).
    """
    if not views:
        raise ValueError("fit_blendshape_views: no views")
    ks_all, ke = model.num_shape, model.num_expression
    ks = ks_all if num_identity is None else min(int(num_identity), ks_all)
    cams = [None] * len(views) if cameras is None else list(cameras)
    if len(cams) != len(views):
        raise ValueError(f"fit_blendshape_views: {len(cams)} cameras for {len(views)} views")
    data = [(*view_blendshape_points(model, v.points_px, v.vertex_ids, v.weights,
                                     v.contour_px), float(v.sigma_px)) for v in views]
    box = model.box()
    lo_w, hi_w = box.lower[ks_all:], box.upper[ks_all:]
    zero = np.zeros(ke)
    jacs = [model.vertex_jacobian(model.zero_params(), ids)[:, :, np.r_[np.arange(ks),
                                                                          ks_all + np.arange(ke)]]
            for _, ids, _, _ in data]
    means = [model.vertices(FaceParams(np.zeros(ks_all), zero), ids) for _, ids, _, _ in data]
    se = np.sqrt(ridge)
    lam_row = sparsity / (2.0 * se)
    nv, nb = len(views), NUM_POSE_PARAMS + ke
    npar = ks + nv * nb

    def starts() -> list[BlendshapeFit]:
        out = []
        for (pts, ids, w, sigma), cam in zip(data, cams, strict=True):
            persp = cam is not None and cam.kind == "perspective"
            pp = cam.principal_point_px if persp else None
            out.append(fit_blendshape_points(
                model, pts, ids, sigma, w, sparsity=sparsity, ridge=ridge,
                identity=np.zeros(ks_all), focal_px=cam.focal_px if persp else None,
                principal_px=None if pp is None else np.asarray(pp, np.float64)))
        return out

    def view_x(a: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.r_[a, w]

    def cost(st: tuple[np.ndarray, list[CameraPose], np.ndarray]) -> float:
        a, cs, ws = st
        total = shape_prior_weight * float(a @ a)
        for (pts, _, w, sigma), jac, mean, c, wv in zip(data, jacs, means, cs, ws,
                                                        strict=True):
            img, _ = c.project(mean + jac @ view_x(a, wv))
            total += float(((pts - img) ** 2).sum(1) @ (w / sigma**2))
            total += float(((se * wv + lam_row) ** 2).sum())
        return total

    def linearize(st: tuple[np.ndarray, list[CameraPose], np.ndarray]
                  ) -> tuple[BoundedNormalRows, float]:
        a, cs, ws = st
        rows, rhs = [], []
        for k, ((pts, _, w, sigma), jac, mean, c, wv) in enumerate(
                zip(data, jacs, means, cs, ws, strict=True)):
            j, r = landmark_rows(c, mean + jac @ view_x(a, wv), jac, pts, w / sigma**2)
            block = np.zeros((len(r) + ke, npar))
            block[:len(r), :ks] = j[:, NUM_POSE_PARAMS:NUM_POSE_PARAMS + ks]
            o = ks + k * nb
            block[:len(r), o:o + NUM_POSE_PARAMS] = j[:, :NUM_POSE_PARAMS]
            block[:len(r), o + NUM_POSE_PARAMS:o + nb] = j[:, NUM_POSE_PARAMS + ks:]
            block[len(r):, o + NUM_POSE_PARAMS:o + nb] = se * np.eye(ke)
            rows.append(block)
            rhs.append(np.r_[r, -(se * wv + lam_row)])
        prior = np.zeros((ks, npar))
        prior[:, :ks] = np.sqrt(shape_prior_weight) * np.eye(ks)
        rows.append(prior)
        rhs.append(-np.sqrt(shape_prior_weight) * a)
        lower = np.full(npar, -np.inf)
        upper = np.full(npar, np.inf)
        for k in range(nv):
            o = ks + k * nb + NUM_POSE_PARAMS
            lower[o:o + ke] = np.minimum(lo_w - ws[k], 0.0)
            upper[o:o + ke] = np.maximum(hi_w - ws[k], 0.0)
        return BoundedNormalRows(np.vstack(rows), np.concatenate(rhs), lower, upper), cost(st)

    def update(st: tuple[np.ndarray, list[CameraPose], np.ndarray], d: np.ndarray
               ) -> tuple[np.ndarray, list[CameraPose], np.ndarray]:
        a, cs, ws = st
        steps = d[ks:].reshape(nv, nb)
        new_ws = np.clip(ws + steps[:, NUM_POSE_PARAMS:], lo_w, hi_w)
        return (a + d[:ks], [c.updated(s[:NUM_POSE_PARAMS]) for c, s in zip(cs, steps,
                                                                           strict=True)],
                new_ws)

    first = starts()
    state = (np.zeros(ks), [f.camera for f in first], np.stack([f.weights for f in first]))
    out = levenberg_marquardt(linearize, cost, update, state, iterations)
    a, cs, ws = out.state  # type: ignore[misc]
    identity = np.zeros(ks_all)
    identity[:ks] = a
    fits = []
    for (pts, _, _, _), jac, mean, c, wv in zip(data, jacs, means, cs, ws, strict=True):
        img, _ = c.project(mean + jac @ view_x(a, wv))
        fits.append(BlendshapeFit(identity.copy(), wv.copy(), c,
                                  float(np.sqrt(((pts - img) ** 2).sum(1).mean())),
                                  out.iterations))
    return identity, fits
