"""Fit an identity x expression bilinear model (FaceScape, Yang et al., CVPR 2020; multilinear
face models after Vlasic et al., "Face Transfer with Multilinear Models", SIGGRAPH 2005) to 2D
landmarks with a scaled orthographic camera (`fit_bilinear_points`), or to 3D landmarks
(`fit_bilinear_landmarks`).

With one factor fixed the model is linear in the other, so each half-step is an ordinary
landmark fit (`facefit.fit.landmark_fit.fit_points`: camera pose plus N(0, 1) coefficients):

1. expression weights fixed: identity weights ``w = id_mean + id_sigma * a`` (prior N(0, 1) on
   ``a``, i.e. the file's identity statistics);
2. identity fixed: expression weights ``e = exp_neutral + directions @ b`` (directions span the
   complement of the neutral weights, scaled by ``exp_sigma``; as `to_morphable_model`).

Under a scaled orthographic camera the overall size of the identity weights trades against the
camera scale; the identity prior settles it.
"""

from __future__ import annotations

__all__ = ["BilinearFit", "BilinearFit2D", "bilinear_from_model", "bilinear_result",
           "expression_directions", "fit_bilinear_landmarks", "fit_bilinear_landmarks_2d",
           "fit_bilinear_points"]

from dataclasses import dataclass

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera
from facefit.fit.core.camera import CameraPose, camera_pose
from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.rotation import Similarity, umeyama
from facefit.fit.core.solver import solve_linear_map
from facefit.fit.correspondence import ibug68_points
from facefit.fit.landmark_fit import fit_points, silhouette_contour
from facefit.fit.result import FitResult, assemble_result, image_vertices
from facefit.model.bilinear import bilinear_from_model, expression_directions
from facefit.model.io_facescape import BilinearModel
from facefit.model.morphable_model import MorphableModel


@dataclass(frozen=True, eq=False)
class BilinearFit2D:
    """Result of `fit_bilinear_points`.

    Attributes:
        id_weights: (I,) identity weights; exp_weights: (E,) expression weights.
        id_coeffs: (I,) ``(id_weights - id_mean) / id_sigma``; exp_coeffs: expression
            coefficients along the non-neutral directions (N(0, 1) units).
        rotation: (3, 3) model to view; scale: px per mm; translation: (2,) px (perspective:
            scale 1, translation (3,) mm).
        rms_history: RMS landmark residual (px) after each alternation.
        camera: the camera model.
    """

    id_weights: np.ndarray
    exp_weights: np.ndarray
    id_coeffs: np.ndarray
    exp_coeffs: np.ndarray
    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    rms_history: list[float]
    camera: Camera = Camera()

    def camera_pose(self) -> CameraPose:
        """The fitted camera (`facefit.fit.core.camera`)."""
        return camera_pose(self.rotation, self.scale, self.translation, self.camera.focal_px,
                           self.camera.principal_point_px)


def _linear(name: str, mean: np.ndarray, basis: np.ndarray, identity: bool) -> MorphableModel:
    """A landmark-only linear model (vertices = the landmark vertices) for `fit_points`."""
    v = len(mean)
    empty = np.zeros((v, 3, 0), np.float32)
    b = basis.astype(np.float32)
    return MorphableModel(
        name=name, mean=mean.astype(np.float32), shape_basis=b if identity else empty,
        expression_basis=empty if identity else b, triangles=np.zeros((0, 3), np.int32),
        uv=np.zeros((v, 2), np.float32),
        landmark_ids={"ibug68": np.resize(np.arange(v, dtype=np.int64), 68)},  # unused here
        mirror_ids=np.arange(v, dtype=np.int64))


def fit_bilinear_points(
    bm: BilinearModel,
    points_px: np.ndarray,
    vertex_ids: np.ndarray,
    weights: np.ndarray | None = None,
    landmark_sigma_px: float = 2.0,
    alternations: int = 20,
    iterations: int = 5,
    tol_px: float = 1e-7,
    camera: Camera | None = None,
) -> BilinearFit2D:
    """Fit identity and expression weights and a scaled orthographic camera to 2D landmarks.

    Args:
        bm: the bilinear model.
        points_px: (K, 2) landmarks in pixels; vertex_ids: (K,) their model vertices.
        weights: (K,) relative confidence (default 1).
        landmark_sigma_px: landmark noise in pixels (balance against the priors).
        alternations: at most this many identity / expression alternations.
        iterations: Gauss-Newton steps of `fit_points` per half-step.
        tol_px: stop when the RMS residual changes less than this.
        camera: the camera model (scaled orthographic when None).
    """
    ids = np.asarray(vertex_ids, np.int64)
    pts = np.asarray(points_px, np.float64)
    local = np.arange(len(ids))
    dirs = expression_directions(bm)
    core = bm.core[ids].astype(np.float64)  # (K, 3, I, E)
    w, e = bm.id_mean.astype(np.float64), bm.exp_neutral.astype(np.float64)
    a = np.zeros(bm.num_identity)
    b = np.zeros(dirs.shape[1])
    history: list[float] = []
    pose = None
    for _ in range(max(1, alternations)):
        id_basis = np.einsum("kcie,e->kci", core, e)
        lin = _linear(bm.name, id_basis @ bm.id_mean, id_basis * bm.id_sigma, True)
        a, _, pose, _, _ = fit_points(lin, pts, local, weights,
                                      landmark_sigma_px=landmark_sigma_px, iterations=iterations,
                                      camera=camera)
        w = bm.id_mean + bm.id_sigma * a.astype(np.float64)
        exp_basis = np.einsum("kcie,i->kce", core, w)
        lin = _linear(bm.name, exp_basis @ bm.exp_neutral, exp_basis @ dirs, False)
        _, b, pose, rms, _ = fit_points(lin, pts, local, weights,
                                        landmark_sigma_px=landmark_sigma_px,
                                        iterations=iterations, camera=camera)
        e = bm.exp_neutral + dirs @ b.astype(np.float64)
        history.append(rms)
        if len(history) > 1 and abs(history[-2] - history[-1]) < tol_px:
            break
    assert pose is not None
    return BilinearFit2D(w, e, a.astype(np.float64), b.astype(np.float64), pose.rotation.copy(),
                         float(pose.scale), np.asarray(pose.translation, np.float64).copy(),
                         history, Camera() if camera is None else camera)


def bilinear_result(model: MorphableModel, bm: BilinearModel, fit: BilinearFit2D,
                    num_landmarks: int) -> FitResult:
    """A `FitResult` of a bilinear fit; coefficients are in the units of the linearised
    ``model`` (identity offsets from ``id_mean``, expression along `expression_directions`),
    ``vertices_mm`` the exact bilinear face."""
    verts = bm.vertices(fit.id_weights, fit.exp_weights).astype(np.float64)
    camera = fit.camera_pose()
    verts_px = image_vertices(camera, verts)
    lm = verts_px[model.landmark_ids["ibug68"]]
    return assemble_result(
        camera, fit.camera, verts_px, lm, silhouette_contour(model, verts_px, lm), fit.id_coeffs,
        fit.exp_coeffs, fit.rms_history[-1], num_landmarks, len(fit.rms_history),
        vertices_mm=verts,
        extras={"bilinear_id_weights": fit.id_weights.astype(np.float32),
                "bilinear_exp_weights": fit.exp_weights.astype(np.float32)})


def fit_bilinear_landmarks_2d(
    model: MorphableModel,
    face: FaceLandmarks,
    image_size: tuple[int, int],
    landmark_sigma: float = 0.02,
    alternations: int = 10,
    camera: Camera | None = None,
) -> FitResult:
    """Fit the bilinear model behind ``model`` to one detected face (iBUG-68 or MediaPipe-468
    mapped to iBUG-68); the `fit_landmarks` counterpart for FaceScape models."""
    bm = bilinear_from_model(model)
    if bm is None:
        raise ValueError(f"model {model.name}: no bilinear core in extras (not a FaceScape "
                         "bilinear model)")
    if "ibug68" not in model.landmark_ids:
        raise ValueError(f"model {model.name}: no ibug68 landmark ids: landmark fitting is "
                         "unavailable")
    points, size = ibug68_points(face, "bilinear")
    fit = fit_bilinear_points(bm, points, model.landmark_ids["ibug68"],
                              landmark_sigma_px=landmark_sigma * size, alternations=alternations,
                              camera=camera)
    return bilinear_result(model, bm, fit, len(points))


@dataclass
class BilinearFit:
    """Result of `fit_bilinear_landmarks`: weights, similarity transform and residuals (mm)."""

    id_weights: np.ndarray
    exp_weights: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    rms_history: list[float]


def fit_bilinear_landmarks(
    bm: BilinearModel,
    target: np.ndarray,
    landmark_ids: np.ndarray | None = None,
    iterations: int = 10,
    id_reg: float = 1e-3,
    exp_reg: float = 1e-3,
    align: bool = True,
) -> BilinearFit:
    """Fit identity and expression weights to 3D landmarks ``target`` (L, 3) mm.

    Alternates: similarity alignment (`facefit.fit.core.umeyama`, if ``align``), then the MAP
    identity weights at the current expression (Gaussian prior ``id_mean``,
    ``id_sigma / sqrt(id_reg)``), then the MAP expression weights at the current identity
    (prior ``exp_neutral``, ``exp_sigma / sqrt(exp_reg)``): each a linear least-squares
    problem (`facefit.fit.core.solve_linear_map`). ``landmark_ids`` default to
    ``bm.landmark_ids["ibug68"]``.
    """
    ids = np.asarray(bm.landmark_ids["ibug68"] if landmark_ids is None else landmark_ids)
    y = np.asarray(target, np.float64)
    w = bm.id_mean.copy()
    e = bm.exp_neutral.copy()
    sim = Similarity(1.0, np.eye(3), np.zeros(3))
    history: list[float] = []
    id_prior = GaussianPrior(np.asarray(bm.id_mean, np.float64),
                             np.maximum(bm.id_sigma, 1e-12) / np.sqrt(id_reg))
    exp_prior = GaussianPrior(np.asarray(bm.exp_neutral, np.float64),
                              np.maximum(bm.exp_sigma, 1e-12) / np.sqrt(exp_reg))
    for _ in range(max(1, iterations)):
        cur = bm.vertices(w, e, ids).astype(np.float64)
        if align:
            sim = umeyama(cur, y)
        local = sim.inverse_apply(y)  # target in the model frame
        basis = bm.identity_basis(e, ids)
        w = solve_linear_map(basis.reshape(-1, basis.shape[2]), local, id_prior)
        basis = bm.expression_basis(w, ids)
        e = solve_linear_map(basis.reshape(-1, basis.shape[2]), local, exp_prior)
        fitted = sim.apply(bm.vertices(w, e, ids))
        history.append(float(np.sqrt(((fitted - y) ** 2).sum(1).mean())))
        if len(history) > 1 and abs(history[-2] - history[-1]) < 1e-9 * max(history[0], 1):
            break
    return BilinearFit(id_weights=w, exp_weights=e, scale=sim.scale, rotation=sim.rotation,
                       translation=sim.translation, rms_history=history)
