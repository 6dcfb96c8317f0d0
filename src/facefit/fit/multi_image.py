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
from facefit.fit.bilinear_fit import BilinearFit2D, bilinear_result
from facefit.fit.camera import Camera
from facefit.fit.core.camera import NUM_POSE_PARAMS, CameraPose, camera_pose
from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.solver import BlockArrowNormalEquations, NormalEquations, gauss_newton
from facefit.fit.flame_fit import EYES_NOTE, FlameFit, flame_result
from facefit.fit.landmark_fit import (
    KindContour,
    LandmarkBlocks,
    contour_residual,
    face_points,
    fit_points,
    make_result,
    model_contour,
    prepare_model,
    silhouette_contour,
)
from facefit.fit.result import FitResult, assemble_result, image_vertices
from facefit.model.face_model import FaceModel
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel

# Landmark noise (fraction of the face size) per model kind, the same for single photos
# (`facefit.fit.face_fit.fit_face`), same-person sets and video frames (`view_from_face`).
# Linear 0.05, measured against 0.02 (same-person and video used 0.02 before): on the shape
# benchmark (`facefit.eval.shape`, default-model renders, MediaPipe landmarks, 16 subjects)
# the landmark fit's NoW median is 0.588 vs 0.642 mm with 1 photo and 0.634 vs 0.685 mm with
# 3 (vertex error 3.18 vs 3.72 and 3.80 vs 4.58 mm); on AFLW2000-3D dev (first 300 images)
# the balanced 2D NME is 9.247 vs 9.253 %. Only with exact correspondences and 2 px Gaussian
# noise (`facefit.synthetic.views`, whose benchmarks set their own 0.02) is 0.02 better
# (joint fit of 3 views 1.77 vs 2.25 mm): real detectors' errors are larger and biased. The
# FLAME and bilinear fitters were tuned at 0.02; ICT's bounded blendshapes at 0.01.
DEFAULT_LANDMARK_SIGMA = {"linear": 0.05, "flame": 0.02, "bilinear": 0.02, "ict": 0.01}


def default_landmark_sigma(kind: str) -> float:
    """The landmark noise (fraction of the face size) that photos and video frames of a model
    of ``kind`` are fitted with (`DEFAULT_LANDMARK_SIGMA`)."""
    return DEFAULT_LANDMARK_SIGMA.get(kind, 0.02)


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


def view_blocks(model: MorphableModel, view: ViewPoints, kind: FaceModel | None = None
                ) -> LandmarkBlocks:
    """The residual blocks of one view over all shape and expression columns (over the whole
    parameter vector of ``kind`` when it is a non-linear model kind)."""
    use_depth = view.depth_px is not None and view.depth_weight > 0
    if kind is not None and kind.kind != "linear":
        cont = model_contour(model)
        has_contour = view.contour_px is not None and len(view.contour_px) > 0
        contour = (KindContour(np.asarray(view.contour_px, np.float64), view.contour_weight,
                               kind, np.asarray(cont.vertex_ids, np.int64), cont.centre_id)
                   if has_contour else None)
        k = len(view.vertex_ids)
        return LandmarkBlocks(
            np.zeros((k, 3)), np.zeros((k, 3, 0)), np.asarray(view.points_px, np.float64),
            np.asarray(view.weights, np.float64), contour,
            np.asarray(view.depth_px, np.float64) if use_depth else None,
            view.depth_weight * np.asarray(view.weights, np.float64) if use_depth else None,
            kind, np.asarray(view.vertex_ids, np.int64))
    prep = prepare_model(model)
    return LandmarkBlocks(
        model.mean[view.vertex_ids].astype(np.float64),
        prep.basis[view.vertex_ids].astype(np.float64), np.asarray(view.points_px, np.float64),
        np.asarray(view.weights, np.float64),
        contour_residual(model, view.contour_px, view.contour_weight),
        np.asarray(view.depth_px, np.float64) if use_depth else None,
        view.depth_weight * np.asarray(view.weights, np.float64) if use_depth else None)


_State = tuple[np.ndarray, list[tuple[CameraPose, np.ndarray]]]


def fit_views(
    model: MorphableModel,
    views: Sequence[ViewPoints],
    iterations: int = 6,
    shape: np.ndarray | None = None,
    fix_shape: bool = False,
    init: Sequence[tuple[CameraPose, np.ndarray]] | None = None,
    kind: FaceModel | None = None,
    shape_prior_weight: float = 1.0,
) -> tuple[np.ndarray, list[np.ndarray], list[CameraPose], list[float], list[int]]:
    """Joint Gauss-Newton fit of one shared shape and per-view pose and expression.

    Args:
        model: the morphable model.
        views: the images' landmarks.
        iterations: Gauss-Newton steps.
        shape: initial (or, with ``fix_shape``, fixed) shape coefficients (default 0).
        fix_shape: keep the shape fixed (per-frame pose + expression tracking).
        init: optional initial (camera, expression) per view (warm start; scaled orthographic
            or perspective cameras); else each view's camera starts from a linear scaled
            orthographic estimate on the current shape.
        kind: fit this `FaceModel` kind of ``model`` (`facefit.model.kinds.face_model`)
            instead of its linear form: a view's own parameters are then all of the kind's
            parameters after the shape (FLAME: expression, then neck and jaw rotations).
        shape_prior_weight: how many times the shape's Gaussian prior is counted (1: once,
            as for independent landmark errors in every view).

    Returns:
        (shape, per-view parameters (expressions, or the kind's non-shape parameters),
        cameras, rms residual px per view, landmark count per view).
    """
    ks = model.num_shape
    prior = GaussianPrior.standard(ks + model.num_expression) if kind is None else kind.prior()
    ke = prior.size - ks
    a = np.zeros(ks) if shape is None else np.asarray(shape, np.float64).copy()
    blocks = [view_blocks(model, v, kind) for v in views]
    per_view = []
    for i, bl in enumerate(blocks):
        if init is not None:
            per_view.append((init[i][0], np.asarray(init[i][1], np.float64).copy()))
        else:
            per_view.append((bl.initial_camera(np.r_[a, np.zeros(ke)]), np.zeros(ke)))
    shape_prior = GaussianPrior(prior.mean[:ks], prior.sigma[:ks])
    expr_prior = GaussianPrior(prior.mean[ks:], prior.sigma[ks:])
    nb = NUM_POSE_PARAMS + ke

    def linearize(state: _State) -> BlockArrowNormalEquations:
        a, cams = state
        eq = BlockArrowNormalEquations(shape_prior_weight * np.diag(shape_prior.precision),
                                       shape_prior_weight * shape_prior.gradient(a),
                                       fix_shared=fix_shape)
        for bl, v, (cam, expr) in zip(blocks, views, cams, strict=True):
            jac, r = bl.rows(np.r_[a, expr], cam)
            jac, r = jac / v.sigma_px, r / v.sigma_px
            jp = np.concatenate([jac[:, :NUM_POSE_PARAMS], jac[:, NUM_POSE_PARAMS + ks:]], 1)
            js = jac[:, NUM_POSE_PARAMS:NUM_POSE_PARAMS + ks]
            view_eq = NormalEquations.from_rows(jp, r).add_prior(
                expr_prior, expr, slice(NUM_POSE_PARAMS, None))
            eq.blocks.append((view_eq.lhs, view_eq.rhs, js.T @ jp))
            if not fix_shape:
                eq.shared_lhs += js.T @ js
                eq.shared_rhs += js.T @ r
        return eq

    def update(state: _State, step: np.ndarray) -> _State:
        a, cams = state
        steps = step[ks:].reshape(len(cams), nb)
        return a + step[:ks], [(cam.updated(d[:NUM_POSE_PARAMS]), e + d[NUM_POSE_PARAMS:])
                               for (cam, e), d in zip(cams, steps, strict=True)]

    a, per_view = gauss_newton(linearize, update, (a, per_view), iterations)
    errs = [bl.squared_errors(np.r_[a, e], cam) for bl, (cam, e) in zip(blocks, per_view,
                                                                      strict=True)]
    return (a.astype(np.float32), [e.astype(np.float32) for _, e in per_view],
            [cam for cam, _ in per_view], [float(np.sqrt(x.mean())) for x in errs],
            [len(x) for x in errs])


def view_from_face(model: MorphableModel, face: FaceLandmarks,
                   landmark_sigma: float | None = None, depth_weight: float = 1.0) -> ViewPoints:
    """`ViewPoints` of one detection, with the correspondence that
    `facefit.fit.landmark_fit.fit_landmarks` uses and the noise level ``landmark_sigma``
    (fraction of the face size; default that of the model's kind, `default_landmark_sigma`)."""
    if landmark_sigma is None:
        landmark_sigma = default_landmark_sigma(model.kind)
    points, depth_all, corr = face_points(model, face)
    size = float(np.sqrt(np.prod(points.max(0) - points.min(0))))
    depth = None if depth_all is None else np.asarray(depth_all, np.float64)[corr.landmark_index]
    return ViewPoints(points[corr.landmark_index], corr.vertex_ids,
                      np.asarray(corr.weights, np.float64), landmark_sigma * size,
                      points[corr.contour_index] if len(corr.contour_index) else None,
                      corr.contour_weight, depth, depth_weight if depth is not None else 0.0)


def fit_single(model: MorphableModel, view: ViewPoints, iterations: int = 5,
               camera: Camera | None = None) -> FitResult:
    """Independent fit of one view (`landmark_fit.fit_points`), as a `FitResult`
    (``camera``: the camera model, scaled orthographic when None)."""
    camera = Camera() if camera is None else camera
    shape, expr, pose, rms, n = fit_points(
        model, view.points_px, view.vertex_ids, view.weights, view.contour_px,
        view.contour_weight, landmark_sigma_px=view.sigma_px, iterations=iterations,
        camera=camera, depth_px=view.depth_px, depth_weight=view.depth_weight)
    return make_result(model, shape, expr, pose, camera, rms, n, iterations)


def fit_pose(fit: FitResult) -> CameraPose:
    """The camera of a `FitResult` (`facefit.fit.core.camera`)."""
    cam = fit.camera
    return camera_pose(fit.rotation, fit.scale, fit.translation, cam.focal_px,
                       None if cam.principal_point_px is None
                       else np.asarray(cam.principal_point_px, np.float64))


def _px_per_mm(fit: FitResult) -> float:
    """Image scale of a fit at its model origin: the scale (scaled orthographic), or focal
    length over depth (perspective)."""
    if fit.camera.focal_px is None:
        return float(fit.scale)
    return float(fit.camera.focal_px / max(abs(float(fit.translation[-1])), 1e-9))


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
                  / (1.0 + (f.residual_px / max(_px_per_mm(f), 1e-9)) ** 2) for f in fits])
    w = w / w.sum()
    shape = np.einsum("n,nk->k", w, np.stack([f.shape_coeffs for f in fits]))
    return shape.astype(np.float32), w


LANDMARK_BIAS_RATIO = 1.1
"""Variance of a detector's landmark error that every photo of a face shares (its landmark
convention against the model's vertices) over the variance that differs from photo to photo:
MediaPipe's points against the true projections of their correspondence vertices on 40
rendered faces of the default model, 2.64 % and 2.52 % of the face size RMS
(``python scripts/measure_landmark_bias.py``)."""


def shared_bias_weight(n_views: int, bias_ratio: float = LANDMARK_BIAS_RATIO) -> float:
    """How many times a joint fit of ``n_views`` photos counts the shape prior so that the
    identity is as sure as the landmarks allow when part of their error is shared by all the
    photos: with error variance ``b`` shared and ``e`` independent (``bias_ratio`` = b / e),
    the mean of N photos' errors has variance ``b + e / N`` instead of ``(b + e) / N``, so the
    data term's weight on the identity is over-counted by ``(N b + e) / (b + e)``. 1 for one
    photo. On the shape benchmark (6 in-model subjects x 6 MediaPipe-landmarked photos, seed
    0) the joint landmark fit's mean vertex error is 3.57 mm at weight 1 and 2.66 mm at
    this weight (3.62; the mean face: 2.08 mm); with unbiased synthetic landmarks the joint
    fit still beats pooling single-photo fits (`tests/fit/test_multi_image.py`)."""
    return (n_views * bias_ratio + 1.0) / (bias_ratio + 1.0)


def fit_same_person(
    model: MorphableModel,
    views: Sequence[ViewPoints],
    method: str = "joint",
    iterations: int = 6,
    joint_depth_scale: float = 0.25,
    kind: FaceModel | None = None,
    camera: Camera | Sequence[Camera] | None = None,
    landmark_bias_ratio: float = LANDMARK_BIAS_RATIO,
) -> MultiFit:
    """Fit one identity to several views of the same person.

    ``method="joint"``: per-view fits start a joint Gauss-Newton fit (`fit_views`).
    ``method="confidence"``: per-view fits pooled by `pool_confidence`, then each view's pose
    and expression re-fitted with the pooled shape fixed.
    The model's kind (``kind``, default `facefit.model.kinds.face_model`) is fitted: FLAME
    views get their own neck and jaw rotations (skinned results), bilinear models their exact
    tensor; the per-view linear fits that start the joint fit use the model's linear form.
    The joint stage weights the shape prior by `shared_bias_weight` (with
    ``landmark_bias_ratio``; 0 for landmarks without a shared error): a detector's landmarks
    are off the model's landmark vertices by much the same amount in every photo of a face
    (its own landmark convention), so N photos do not hold N times the evidence on the
    identity that one photo holds.
    ``joint_depth_scale`` scales the detector-depth weight in the joint stage: several views
    already pin the 3D shape down, and detector depth is much noisier than image positions
    (on synthetic data with 6 px depth noise, full weight made the joint fit worse).
    ``camera`` is the camera model of every view, or one per view (scaled orthographic when
    None; a perspective camera ignores detector depth, as `landmark_fit.fit_points` does).
    """
    if method not in ("joint", "confidence"):
        raise ValueError(f"method must be 'joint' or 'confidence', got {method!r}")
    if not views:
        raise ValueError("fit_same_person: no views")
    fm = face_model(model) if kind is None else kind
    kind = None if fm.kind == "linear" else fm
    cams = ([Camera()] * len(views) if camera is None else [camera] * len(views)
            if isinstance(camera, Camera) else list(camera))
    if len(cams) != len(views):
        raise ValueError(f"fit_same_person: {len(cams)} cameras for {len(views)} views")
    views = [replace(v, depth_px=None, depth_weight=0.0) if c.kind == "perspective" else v
             for v, c in zip(views, cams, strict=True)]
    if fm.kind == "ict":  # blendshape weights: bounded and sparse, not a Gaussian ridge
        return _fit_blendshape_same_person(model, fm, views, cams, method, iterations,
                                           shared_bias_weight(len(views), landmark_bias_ratio))
    singles = [fit_single(model, v, camera=c) for v, c in zip(views, cams, strict=True)]
    pooled, w = pool_confidence(singles)
    extra = 0 if kind is None else kind.num_params - model.num_shape - model.num_expression
    init = [(fit_pose(f), np.r_[f.expression_coeffs, np.zeros(extra)]) for f in singles]
    if method == "joint":
        scaled = [replace(v, depth_weight=v.depth_weight * joint_depth_scale) for v in views]
        shape, exprs, poses, rms, ns = fit_views(model, scaled, iterations, shape=pooled,
                                                 init=init, kind=kind,
                                                 shape_prior_weight=shared_bias_weight(
                                                     len(views), landmark_bias_ratio))
        w = np.ones(len(views))
    else:
        shape, exprs, poses, rms, ns = fit_views(model, views, 3, shape=pooled,
                                                 fix_shape=True, init=init, kind=kind)
    fits = [kind_result(model, fm, shape, e, p, r, n, iterations, c)
            for e, p, r, n, c in zip(exprs, poses, rms, ns, cams, strict=True)]
    neutral = model.vertices(shape) if kind is None else fm.vertices(fm.with_vector(
        fm.zero_params(), np.r_[shape, np.zeros(fm.num_params - len(shape))])).astype(np.float32)
    return MultiFit(shape, fits, neutral, method, w)


def _fit_blendshape_same_person(model: MorphableModel, fm: FaceModel,
                                views: Sequence[ViewPoints], cams: Sequence[Camera], method: str,
                                iterations: int, shape_prior_weight: float) -> MultiFit:
    """`fit_same_person` of a blendshape (ICT) kind: one identity, per-view cameras and
    weights in [0, 1] with the sparsity prior (`facefit.fit.blendshape.fit_blendshape_views`;
    both methods: the identity step already weighs every view by its residuals). Detector
    depth is not used, as in single-photo blendshape fits."""
    from facefit.fit.blendshape import fit_blendshape_views

    shape, bfits = fit_blendshape_views(fm, views, iterations,  # type: ignore[arg-type]
                                        shape_prior_weight=shape_prior_weight, cameras=cams)
    fits = []
    for v, b, c in zip(views, bfits, cams, strict=True):
        fit = kind_result(model, fm, shape.astype(np.float32), b.weights.astype(np.float32),
                          b.camera, b.rms_px, len(v.vertex_ids), b.iterations, c)
        fit.extras["blendshape_weights"] = b.weights.astype(np.float32)
        fits.append(fit)
    neutral = fm.vertices(fm.with_vector(fm.zero_params(), np.r_[
        shape, np.zeros(fm.num_params - len(shape))])).astype(np.float32)
    return MultiFit(shape.astype(np.float32), fits, neutral, method, np.ones(len(views)))


def kind_result(model: MorphableModel, fm: FaceModel, shape: np.ndarray, view_params: np.ndarray,
                pose: CameraPose, rms: float, n: int, iterations: int,
                camera: Camera | None = None) -> FitResult:
    """`FitResult` of one view of a joint fit: shape and the view's parameters of the kind
    ``fm`` (linear: expression; FLAME: expression, neck and jaw; bilinear: expression; other
    kinds: their non-shape parameters, also in ``extras["<kind>_params"]``), seen by
    ``pose`` through the camera model ``camera`` (scaled orthographic when None)."""
    camera = Camera() if camera is None else camera
    if fm.kind == "linear":
        return make_result(model, shape, np.asarray(view_params, np.float32), pose, camera,
                           rms, n, iterations)
    params = fm.with_vector(fm.zero_params(), np.r_[shape, view_params])
    if fm.kind == "flame":
        flame = fm.flame  # type: ignore[attr-defined]
        fit = FlameFit(params.shape, params.expression, params.joints, pose.rotation,
                       float(pose.scale),
                       np.asarray(pose.translation, np.float64), rms, n, iterations,
                       (EYES_NOTE,), camera)
        return flame_result(flame, fit)
    if fm.kind == "bilinear":
        bm = fm.bm  # type: ignore[attr-defined]
        w, e = fm.weights(params)  # type: ignore[attr-defined]
        fit2d = BilinearFit2D(w, e, params.shape, params.expression, pose.rotation,
                              float(pose.scale),
                              np.asarray(pose.translation, np.float64), [rms], camera)
        return bilinear_result(model, bm, fit2d, n)
    # any other kind: its own vertices, the model's 68 landmark vertices and silhouette
    verts = fm.vertices(params)
    verts_px = image_vertices(pose, verts)
    lm3 = verts_px[model.landmark_ids["ibug68"]]
    return assemble_result(pose, camera, verts_px, lm3,
                           silhouette_contour(model, verts_px, lm3), params.shape,
                           params.expression, rms, n, iterations, vertices_mm=verts,
                           extras={f"{fm.kind}_params": np.asarray(view_params, np.float32)})
