"""One identity from several images: shared shape, per-image pose and expression.

Joint fit: all images' landmark residuals and a single N(0, 1) shape prior form one
regularised least-squares problem, solved by Gauss-Newton on the block-structured normal
equations (shared shape block, one pose + expression block per image; the per-image blocks
are eliminated with a Schur complement). This is the multi-image fitting of eos (Huber et
al., "A Multiresolution 3D Morphable Face Model and Fitting Framework", VISAPP 2016,
``fit_shape_and_pose`` over several frames). The fast alternative, `pool_confidence`,
averages independent per-image fits with confidence weights, as 3DMM-CNN pools per-image
estimates (Tran et al., "Regressing Robust and Discriminative 3D Morphable Models with a
very Deep Neural Network", CVPR 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera
from facefit.fit.contour import match_contour
from facefit.fit.correspondence import correspondence_for, mediapipe_to_ibug68
from facefit.fit.landmark_fit import (
    _apply_pose_step,
    _Pose,
    _prepare,
    _similarity_pose,
    estimate_scaled_orthographic,
    fit_points,
    make_result,
)
from facefit.fit.result import FitResult
from facefit.model.morphable_model import MorphableModel


@dataclass(frozen=True, eq=False)
class ViewPoints:
    """The landmarks of one image, already mapped to model vertices.

    Attributes:
        points_px: (K, 2) landmarks with a fixed vertex, pixels.
        vertex_ids: (K,) model vertex of each.
        weights: (K,) relative confidence.
        sigma_px: landmark noise (pixels) of this image; sets its weight against the prior.
        contour_px: (Kc, 2) face-outline landmarks (silhouette-matched) or None.
        contour_weight: weight of each outline landmark.
        depth_px: (K,) relative landmark depth (larger = farther) or None.
        depth_weight: weight of a depth residual relative to an image-plane one.
    """

    points_px: np.ndarray
    vertex_ids: np.ndarray
    weights: np.ndarray
    sigma_px: float
    contour_px: np.ndarray | None = None
    contour_weight: float = 1.0
    depth_px: np.ndarray | None = None
    depth_weight: float = 0.0


@dataclass(frozen=True, eq=False)
class MultiFit:
    """A shared-identity fit of several images.

    Attributes:
        shape_coeffs: (Ks,) float32 identity coefficients shared by every image.
        fits: one `FitResult` per image (its ``shape_coeffs`` are the shared ones).
        neutral_vertices: (V, 3) float32 identity mesh in mm, model frame, expression 0.
        method: ``"joint"`` or ``"confidence"``.
        weights: (N,) pooling weights (``"confidence"``) or ones (``"joint"``).
    """

    shape_coeffs: np.ndarray
    fits: list[FitResult]
    neutral_vertices: np.ndarray
    method: str
    weights: np.ndarray


def _ortho_rows(pose: _Pose, pts: np.ndarray, basis: np.ndarray, px: np.ndarray,
                w: np.ndarray, depth: np.ndarray | None, depth_w: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Jacobian (R, 6 + M) and residual (R,) of the scaled orthographic landmark
    model (same parametrisation as `landmark_fit._orthographic_step`)."""
    n = len(pts)
    v = pts @ pose.rotation.T
    s = pose.scale
    rb = np.matmul(pose.rotation, basis)
    zero, one = np.zeros(n), np.ones(n)
    jx = np.column_stack([zero, s * v[:, 2], -s * v[:, 1], s * v[:, 0], one, zero,
                          s * rb[:, 0]])
    jy = np.column_stack([s * v[:, 2], zero, -s * v[:, 0], -s * v[:, 1], zero, one,
                          -s * rb[:, 1]])
    sw = np.sqrt(w)
    rows = [jx * sw[:, None], jy * sw[:, None]]
    res = [(px[:, 0] - s * v[:, 0] - pose.translation[0]) * sw,
           (px[:, 1] + s * v[:, 1] - pose.translation[1]) * sw]
    if depth is not None and depth_w is not None:
        k = len(depth)
        jz = np.column_stack([-s * v[:k, 1], s * v[:k, 0], zero[:k], -s * v[:k, 2], zero[:k],
                              zero[:k], -s * rb[:k, 2]])
        rz = depth + s * v[:k, 2]
        wz = depth_w / depth_w.sum()
        dw = np.sqrt(depth_w)
        rows.append((jz - wz @ jz) * dw[:, None])
        res.append((rz - wz @ rz) * dw)
    return np.vstack(rows), np.concatenate(res)


class _ViewState:
    """Per-image arrays and the current pose / expression during the joint fit."""

    def __init__(self, model: MorphableModel, view: ViewPoints, ks: int) -> None:
        prep = _prepare(model)
        self.view = view
        self.ks = ks
        self.basis = prep.basis[view.vertex_ids].astype(np.float64)  # (K, 3, Ks + Ke)
        self.mean = model.mean[view.vertex_ids].astype(np.float64)
        self.has_contour = view.contour_px is not None and len(view.contour_px) > 0
        if self.has_contour:
            self.cand_basis, self.cand_mean = prep.contour_basis, prep.contour_mean
            self.centre_basis = prep.basis[prep.contour.centre_id].astype(np.float64)
            self.centre_mean = model.mean[prep.contour.centre_id].astype(np.float64)
        self.pose: _Pose | None = None
        self.expr = np.zeros(model.num_expression)

    def points(self, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Current model points (N, 3), their basis (N, 3, M), targets (N, 2), weights (N,)."""
        c = np.concatenate([shape, self.expr])
        pts, basis = self.mean + self.basis @ c, self.basis
        px, w = self.view.points_px, self.view.weights
        if self.has_contour and self.pose is not None:
            cand = self.cand_mean + self.cand_basis @ c
            cand_px, _ = self.pose.project(cand)
            centre_px, _ = self.pose.project((self.centre_mean + self.centre_basis @ c)[None])
            idx = match_contour(self.view.contour_px, cand_px, centre_px[0])
            ok = idx >= 0
            pts = np.concatenate([pts, cand[idx[ok]]])
            basis = np.concatenate([basis, self.cand_basis[idx[ok]]])
            px = np.concatenate([px, self.view.contour_px[ok]])
            w = np.concatenate([w, np.full(ok.sum(), self.view.contour_weight)])
        return pts, basis, px, w

    def rms(self, shape: np.ndarray) -> tuple[float, int]:
        pts, _, px, _ = self.points(shape)
        proj, _ = self.pose.project(pts)
        res = np.sum((proj - px) ** 2, axis=1)
        return float(np.sqrt(res.mean())), len(res)


def fit_views(
    model: MorphableModel,
    views: Sequence[ViewPoints],
    iterations: int = 6,
    shape: np.ndarray | None = None,
    fix_shape: bool = False,
    init: Sequence[tuple[_Pose, np.ndarray]] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], list[_Pose], list[float], list[int]]:
    """Joint Gauss-Newton fit of one shared shape and per-view pose and expression.

    Args:
        model: the morphable model.
        views: the images' landmarks.
        iterations: Gauss-Newton steps.
        shape: initial (or, with ``fix_shape``, fixed) shape coefficients (default 0).
        fix_shape: keep the shape fixed (per-frame pose + expression tracking).
        init: optional initial (pose, expression) per view (warm start); else each view's
            pose starts from a linear camera estimate on the current shape.

    Returns:
        (shape, expressions, poses, rms residual px per view, landmark count per view).
    """
    ks, ke = model.num_shape, model.num_expression
    a = np.zeros(ks) if shape is None else np.asarray(shape, np.float64).copy()
    states = [_ViewState(model, v, ks) for v in views]
    for i, st in enumerate(states):
        if init is not None:
            st.pose, st.expr = init[i][0], np.asarray(init[i][1], np.float64).copy()
            continue
        pts, _, px, w = st.points(a)
        v = st.view
        st.pose = (_similarity_pose(pts, np.column_stack([px, v.depth_px]))
                   if v.depth_px is not None and v.depth_weight > 0
                   else estimate_scaled_orthographic(pts, px, w))
    nb = 6 + ke
    for _ in range(iterations):
        s_lhs = np.eye(ks)  # shape prior N(0, 1), once for all views
        s_rhs = -a.copy()
        blocks = []
        for st in states:
            pts, basis, px, w = st.points(a)
            v = st.view
            use_depth = v.depth_px is not None and v.depth_weight > 0
            jac, r = _ortho_rows(st.pose, pts, basis, px, w,
                                 v.depth_px if use_depth else None,
                                 v.depth_weight * v.weights if use_depth else None)
            jac = jac / v.sigma_px
            r = r / v.sigma_px
            jp = np.concatenate([jac[:, :6], jac[:, 6 + ks:]], axis=1)  # pose + expression
            js = jac[:, 6:6 + ks]
            b = jp.T @ jp
            b[6:, 6:] += np.eye(ke)
            rb = jp.T @ r
            rb[6:] -= st.expr
            b += 1e-9 * np.eye(nb)
            c = js.T @ jp  # (Ks, 6 + Ke)
            blocks.append((b, rb, c))
            if not fix_shape:
                s_lhs += js.T @ js
                s_rhs += js.T @ r
        if fix_shape:
            da = np.zeros(ks)
        else:
            red_lhs, red_rhs = s_lhs.copy(), s_rhs.copy()
            for b, rb, c in blocks:
                binv_ct = np.linalg.solve(b, np.column_stack([c.T, rb]))
                red_lhs -= c @ binv_ct[:, :ks]
                red_rhs -= c @ binv_ct[:, ks]
            da = np.linalg.solve(red_lhs + 1e-9 * np.eye(ks), red_rhs)
        for st, (b, rb, c) in zip(states, blocks, strict=True):
            step = np.linalg.solve(b, rb - (c.T @ da if not fix_shape else 0.0))
            st.pose = _apply_pose_step(st.pose, step[:6])
            st.expr = st.expr + step[6:]
        a = a + da
    rms_n = [st.rms(a) for st in states]
    return (a.astype(np.float32), [st.expr.astype(np.float32) for st in states],
            [st.pose for st in states], [r for r, _ in rms_n], [n for _, n in rms_n])


def view_from_face(model: MorphableModel, face: FaceLandmarks, landmark_sigma: float = 0.02,
                   depth_weight: float = 1.0) -> ViewPoints:
    """`ViewPoints` of one detection, with the correspondence and noise level that
    `facefit.fit.landmark_fit.fit_landmarks` uses."""
    points = np.asarray(face.points_px, np.float64)
    depth_all = face.depth_px
    try:
        corr = correspondence_for(model, face.scheme)
    except ValueError:
        if face.scheme != "mediapipe468":
            raise
        points = mediapipe_to_ibug68(points)
        corr = correspondence_for(model, "ibug68")
        depth_all = None
    size = float(np.sqrt(np.prod(points.max(0) - points.min(0))))
    depth = None if depth_all is None else np.asarray(depth_all, np.float64)[corr.landmark_index]
    return ViewPoints(points[corr.landmark_index], corr.vertex_ids,
                      np.asarray(corr.weights, np.float64), landmark_sigma * size,
                      points[corr.contour_index] if len(corr.contour_index) else None,
                      corr.contour_weight, depth, depth_weight if depth is not None else 0.0)


def fit_single(model: MorphableModel, view: ViewPoints, iterations: int = 5) -> FitResult:
    """Independent fit of one view (`landmark_fit.fit_points`), as a `FitResult`."""
    shape, expr, pose, rms, n = fit_points(
        model, view.points_px, view.vertex_ids, view.weights, view.contour_px,
        view.contour_weight, landmark_sigma_px=view.sigma_px, iterations=iterations,
        depth_px=view.depth_px, depth_weight=view.depth_weight)
    return make_result(model, shape, expr, pose, Camera(), rms, n, iterations)


def pool_confidence(fits: Sequence[FitResult]) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted mean of per-image shape coefficients (3DMM-CNN-style pooling).

    An image's weight is ``cos(yaw) / (1 + (residual_mm)^2)``, with the fit residual
    converted to mm by the fit's scale: frontal, well-fitted images count most.

    Returns:
        (pooled shape coefficients (Ks,) float32, normalised weights (N,)).
    """
    if not fits:
        raise ValueError("pool_confidence: no fits")
    w = np.array([max(np.cos(np.deg2rad(f.yaw_deg)), 0.05)
                  / (1.0 + (f.residual_px / max(f.scale, 1e-9)) ** 2) for f in fits])
    w = w / w.sum()
    shape = np.einsum("n,nk->k", w, np.stack([f.shape_coeffs for f in fits]))
    return shape.astype(np.float32), w


def fit_same_person(
    model: MorphableModel,
    views: Sequence[ViewPoints],
    method: str = "joint",
    iterations: int = 6,
    joint_depth_scale: float = 0.25,
) -> MultiFit:
    """Fit one identity to several views of the same person.

    ``method="joint"``: per-view fits start a joint Gauss-Newton fit (`fit_views`).
    ``method="confidence"``: per-view fits pooled by `pool_confidence`, then each view's pose
    and expression re-fitted with the pooled shape fixed.
    ``joint_depth_scale`` scales the detector-depth weight in the joint stage: several views
    already pin the 3D shape down, and detector depth is much noisier than image positions
    (on synthetic data with 6 px depth noise, full weight made the joint fit worse).
    """
    if method not in ("joint", "confidence"):
        raise ValueError(f"method must be 'joint' or 'confidence', got {method!r}")
    if not views:
        raise ValueError("fit_same_person: no views")
    singles = [fit_single(model, v) for v in views]
    pooled, w = pool_confidence(singles)
    init = [(_Pose(f.rotation, f.scale, f.translation), f.expression_coeffs) for f in singles]
    if method == "joint":
        scaled = [replace(v, depth_weight=v.depth_weight * joint_depth_scale) for v in views]
        shape, exprs, poses, rms, ns = fit_views(model, scaled, iterations, shape=pooled,
                                                 init=init)
        w = np.ones(len(views))
    else:
        shape, exprs, poses, rms, ns = fit_views(model, views, 3, shape=pooled,
                                                 fix_shape=True, init=init)
    fits = [make_result(model, shape, e, p, Camera(), r, n, iterations)
            for e, p, r, n in zip(exprs, poses, rms, ns, strict=True)]
    return MultiFit(shape, fits, model.vertices(shape), method, w)
