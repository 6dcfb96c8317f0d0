"""Fit a morphable model to 2D landmarks: camera pose, shape and expression.

The camera starts from a linear estimate (Aldrian & Smith, "Inverse Rendering of Faces with a
3D Morphable Model", PAMI 2013; the fitting loop of eos, Huber et al., VISAPP 2016): an
affine camera fitted to the 3D-2D pairs by linear least squares and projected to the nearest
scaled orthographic one (a 3D similarity when the detector gives landmark depth; OpenCV's PnP
for a perspective camera). Pose, shape and expression are then refined jointly by
Gauss-Newton on the landmark reprojection error plus the N(0, 1) coefficient prior, composed
from the fitting core (`facefit.fit.core`: camera, residual blocks, prior, solver).
Face-outline landmarks are re-matched to the model's current silhouette at each iteration
(`facefit.fit.contour`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera, camera_candidates, camera_kind
from facefit.fit.contour import ContourCandidates, contour_candidates, head_turn, match_contour
from facefit.fit.core.camera import (
    NUM_POSE_PARAMS,
    CameraPose,
    ScaledOrthographicCamera,
    camera_pose,
    estimate_perspective,
    estimate_scaled_orthographic,
    similarity_camera,
)
from facefit.fit.core.moments import (
    PointMoments,
    orthographic_equations,
    point_features,
    target_moments,
)
from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.residuals import (
    ContourResidual,
    depth_rows,
    landmark_rows,
    linearize_points,
)
from facefit.fit.core.solver import NormalEquations, gauss_newton, stack_rows
from facefit.fit.correspondence import (
    LandmarkCorrespondence,
    correspondence_for,
    ibug300w_vertex_ids,
    mediapipe_to_ibug68,
)
from facefit.fit.result import Deferred, FitResult, assemble_result, image_vertices
from facefit.model.face_model import FaceModel
from facefit.model.morphable_model import MorphableModel

__all__ = ["KindContour", "LandmarkBlocks", "LandmarkSet", "PreparedModel", "camera_model",
           "camera_pose", "contour_residual", "estimate_scaled_orthographic", "face_points",
           "fit_landmarks", "fit_points", "kind_points", "landmark_set", "make_result",
           "model_contour", "prepare_model", "silhouette_contour"]

@dataclass(frozen=True, eq=False)
class PreparedModel:
    """Per-model arrays reused by every fit (cached per model object by `prepare_model`)."""

    basis: np.ndarray  # (V, 3, M) shape then expression columns
    flat_basis: np.ndarray  # (3V, M) for fast dense evaluation
    contour: ContourCandidates
    contour_basis: np.ndarray  # (C, 3, M) float64
    contour_mean: np.ndarray  # (C, 3) float64
    contour_search: np.ndarray  # (3C, M) float32 the same numbers (the silhouette search)
    result_ids: np.ndarray  # (R,) the vertices `make_result`'s landmark sets read
    result_basis: np.ndarray  # (3R, M) their rows of ``flat_basis``
    result_mean: np.ndarray  # (3R,) and of the flat mean
    landmark_sets: dict = field(default_factory=dict)  # `landmark_set` per landmark set


_PREPARED: weakref.WeakKeyDictionary[MorphableModel, PreparedModel] = weakref.WeakKeyDictionary()


_CONTOURS: weakref.WeakKeyDictionary[MorphableModel, ContourCandidates] = (
    weakref.WeakKeyDictionary())


def model_contour(model: MorphableModel) -> ContourCandidates:
    """`contour_candidates` of ``model`` (computed once per model object)."""
    cont = _CONTOURS.get(model)
    if cont is None:
        cont = _CONTOURS[model] = contour_candidates(model)
    return cont


def prepare_model(model: MorphableModel) -> PreparedModel:
    """The `PreparedModel` of ``model`` (computed once per model object)."""
    prep = _PREPARED.get(model)
    if prep is None:
        basis = np.concatenate([model.shape_basis, model.expression_basis], axis=2)
        basis = np.ascontiguousarray(basis, dtype=np.float32)
        cont = model_contour(model)
        ids300w = ibug300w_vertex_ids(model)
        ids = np.unique(np.concatenate([
            np.asarray(model.landmark_ids.get("ibug68", [])), cont.vertex_ids, [cont.centre_id],
            [] if ids300w is None else ids300w]).astype(np.int64))
        prep = PreparedModel(basis, basis.reshape(-1, basis.shape[2]), cont,
                             basis[cont.vertex_ids].astype(np.float64),
                             model.mean[cont.vertex_ids].astype(np.float64),
                             basis[cont.vertex_ids].reshape(-1, basis.shape[2]),
                             ids, basis[ids].reshape(-1, basis.shape[2]),
                             model.mean[ids].reshape(-1))
        _PREPARED[model] = prep
    return prep


_LANDMARK_CACHE_SIZE = 16


@dataclass(frozen=True, eq=False)
class LandmarkSet:
    """A model's fixed landmark vertices with their weights, for the parameter columns in
    use: their rows and the moments of the orthographic fit (`facefit.fit.core.moments`).

    Attributes:
        mean: (K, 3) float64 vertices at zero parameters; basis: (K, 3, M) float64.
        features: (K, D) `point_features`; moments: their `PointMoments` with the weights.
    """

    mean: np.ndarray
    basis: np.ndarray
    features: np.ndarray
    moments: PointMoments


def landmark_set(model: MorphableModel, vertex_ids: np.ndarray, weights: np.ndarray,
                 cols: np.ndarray) -> LandmarkSet:
    """The `LandmarkSet` of ``model``'s vertices ``vertex_ids`` (K,) with ``weights`` (K,)
    and the parameter columns ``cols``: computed once per model object and landmark set (a
    detector's correspondence), reused by every fit."""
    cache = prepare_model(model).landmark_sets
    ids = np.asarray(vertex_ids, np.int64)
    w = np.asarray(weights, np.float64)
    key = (ids.tobytes(), w.tobytes(), np.asarray(cols, np.int64).tobytes())
    hit = cache.get(key)
    if hit is None:
        mean = model.mean[ids].astype(np.float64)
        basis = prepare_model(model).basis[ids][:, :, cols].astype(np.float64)
        if len(cache) >= _LANDMARK_CACHE_SIZE:
            cache.clear()
        hit = LandmarkSet(mean, basis, point_features(mean, basis), PointMoments.of(mean, basis, w))
        for a in (hit.mean, hit.basis, hit.features):
            a.flags.writeable = False  # shared by every fit
        cache[key] = hit
    return hit


def contour_residual(model: MorphableModel, contour_px: np.ndarray | None, weight: float,
                     cols: np.ndarray | slice = slice(None)) -> ContourResidual | None:
    """The silhouette-matched outline block of ``model`` for the parameter columns ``cols``
    (shape then expression), or None without outline landmarks."""
    if contour_px is None or len(contour_px) == 0:
        return None
    prep = prepare_model(model)
    cid = prep.contour.centre_id
    if isinstance(cols, slice):
        every = cols == slice(None)
    else:  # all columns in order: the cached array itself, no (C, 3, M) copy
        every = len(cols) == prep.basis.shape[2] and bool(np.all(cols == np.arange(len(cols))))
    return ContourResidual(np.asarray(contour_px, np.float64), weight,
                           prep.contour_mean,
                           prep.contour_basis if every else prep.contour_basis[:, :, cols],
                           model.mean[cid].astype(np.float64),
                           prep.basis[cid][:, cols].astype(np.float64),
                           prep.contour_search if every else None)


def kind_points(kind: FaceModel, ids: np.ndarray, vector: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3), Jacobian (N, 3, P)) of a model kind's vertices ``ids`` at the
    parameter vector ``vector`` (joints not in the vector stay at zero)."""
    p = kind.with_vector(kind.zero_params(), np.asarray(vector, np.float64))
    return kind.vertices(p, ids), kind.vertex_jacobian(p, ids)


@dataclass(frozen=True, eq=False)
class KindContour:
    """`ContourResidual` for a non-linear model kind: candidates evaluated by the model.

    Attributes:
        targets_px: (Kc, 2) outline landmarks; weight: weight of each.
        kind: the model; cand_ids: (C,) candidate vertices; centre_id: ray centre vertex.
    """

    targets_px: np.ndarray
    weight: float
    kind: FaceModel
    cand_ids: np.ndarray
    centre_id: int

    def match(self, params: np.ndarray, camera: CameraPose
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """As `ContourResidual.match`."""
        p = self.kind.with_vector(self.kind.zero_params(), np.asarray(params, np.float64))
        x = self.kind.vertices(p, np.r_[self.cand_ids, self.centre_id])
        px, _ = camera.project(x)
        idx = match_contour(self.targets_px, px[:-1], px[-1], turn=head_turn(camera, x[-1]))
        ok = idx >= 0
        i = idx[ok]
        return (x[i], self.kind.vertex_jacobian(p, self.cand_ids[i]), self.targets_px[ok],
                np.full(ok.sum(), self.weight), px[i])


@dataclass(frozen=True, eq=False)
class LandmarkBlocks:
    """The residual blocks of one image: fixed-vertex landmarks, their optional relative
    depth and the silhouette-matched outline (parameters: the model columns in use).

    Attributes:
        mean: (K, 3) landmark vertices at zero parameters; basis: (K, 3, M) (linear models).
        targets_px: (K, 2); weights: (K,).
        contour: outline block or None.
        depth_px: (K,) relative depth or None; depth_weights: (K,) or None.
        kind: for a non-linear `FaceModel` kind, the model that gives the points and their
            Jacobian (``mean`` and ``basis`` are then unused); vertex_ids: (K,) its vertices.
    """

    mean: np.ndarray
    basis: np.ndarray
    targets_px: np.ndarray
    weights: np.ndarray
    contour: ContourResidual | KindContour | None = None
    depth_px: np.ndarray | None = None
    depth_weights: np.ndarray | None = None
    kind: FaceModel | None = None
    vertex_ids: np.ndarray | None = None

    def fixed(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fixed landmarks' 3D points (K, 3) and parameter Jacobian (K, 3, M)."""
        if self.kind is None:  # one (3K, M) product: numpy's batched one is slower
            flat = self.basis.reshape(-1, self.basis.shape[2])
            return self.mean + (flat @ params).reshape(-1, 3), self.basis
        return kind_points(self.kind, self.vertex_ids, params)

    def pairs(self, params: np.ndarray, camera: CameraPose | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Current 3D points (N, 3), their basis (N, 3, M), targets (N, 2) and weights (N,):
        the fixed landmarks, then the matched outline ones (when a camera is known)."""
        pts, basis = self.fixed(params)
        if self.contour is None or camera is None:
            return pts, basis, self.targets_px, self.weights
        cp, cb, ct, cw, _ = self.contour.match(params, camera)
        return (np.concatenate([pts, cp]), np.concatenate([basis, cb]),
                np.concatenate([self.targets_px, ct]), np.concatenate([self.weights, cw]))

    def rows(self, params: np.ndarray, camera: CameraPose) -> tuple[np.ndarray, np.ndarray]:
        """Weighted Jacobian (R, 6 + M) and residual (R,) of every block."""
        pts, basis, px, w = self.pairs(params, camera)
        img, jac = linearize_points(camera, pts, basis)
        blocks = [landmark_rows(camera, pts, basis, px, w, (img, jac))]
        if self.depth_px is not None and self.depth_weights is not None:
            k = len(self.depth_px)
            blocks.append(depth_rows(camera, pts[:k], basis[:k], self.depth_px,
                                     self.depth_weights, (img[:k], jac[:k])))
        return stack_rows(blocks)

    def initial_camera(self, params: np.ndarray) -> ScaledOrthographicCamera:
        """Linear scaled orthographic estimate (3D-3D similarity when depth is known)."""
        pts, _ = self.fixed(params)
        if self.depth_px is not None:
            return similarity_camera(pts, np.column_stack([self.targets_px, self.depth_px]))
        return estimate_scaled_orthographic(pts, self.targets_px, self.weights)

    def squared_errors(self, params: np.ndarray, camera: CameraPose) -> np.ndarray:
        """(N,) squared pixel distances of every landmark (outline included)."""
        proj, _ = camera.project(self.fixed(params)[0])
        err = np.sum((proj - self.targets_px) ** 2, axis=1)
        if self.contour is None:
            return err
        _, _, targets, _, matched_px = self.contour.match(params, camera)
        return np.concatenate([err, np.sum((matched_px - targets) ** 2, axis=1)])


def fit_points(
    model: MorphableModel,
    points_px: np.ndarray,
    vertex_ids: np.ndarray,
    weights: np.ndarray | None = None,
    contour_px: np.ndarray | None = None,
    contour_weight: float = 1.0,
    landmark_sigma_px: float = 2.0,
    iterations: int = 5,
    camera: Camera | None = None,
    depth_px: np.ndarray | None = None,
    depth_weight: float = 0.0,
    num_shape: int | None = None,
    num_expression: int | None = None,
) -> tuple[np.ndarray, np.ndarray, CameraPose, float, int]:
    """Fit pose, shape and expression to landmarks with known vertices plus outline points.

    Args:
        model: the morphable model.
        points_px: (K, 2) landmarks, pixels.
        vertex_ids: (K,) model vertex of each landmark.
        weights: (K,) relative confidence per landmark (default 1).
        contour_px: (Kc, 2) face-outline landmarks, matched to the silhouette, or None.
        contour_weight: weight of each outline landmark.
        landmark_sigma_px: standard deviation of the landmark noise in pixels (weights 1);
            it sets the balance between the data and the N(0, 1) coefficient prior.
        iterations: pose / shape alternations (Gauss-Newton steps for the orthographic camera).
        camera: the camera model (scaled orthographic when None).
        depth_px: (K,) relative depth of each landmark in pixels (larger = farther), from
            detectors that estimate it (MediaPipe); used by the orthographic camera with
            ``depth_weight`` > 0 to pin down the pose of turned heads.
        depth_weight: weight of a depth residual relative to an image-plane one.
        num_shape, num_expression: use only the first components (all when None).

    Returns:
        (shape_coeffs, expression_coeffs, pose, rms image residual px, number of landmarks).
    """
    ks, ke = model.num_shape, model.num_expression
    ns = ks if num_shape is None else min(num_shape, ks)
    ne = ke if num_expression is None else min(num_expression, ke)
    cols = np.r_[np.arange(ns), ks + np.arange(ne)]
    coeffs = np.zeros(ks + ke)
    w = np.ones(len(points_px)) if weights is None else np.asarray(weights, np.float64)
    perspective = camera is not None and camera.kind == "perspective"
    use_depth = depth_px is not None and depth_weight > 0 and not perspective
    lset = landmark_set(model, vertex_ids, w, cols)
    blocks = LandmarkBlocks(
        lset.mean, lset.basis, np.asarray(points_px, np.float64), w,
        contour_residual(model, contour_px, contour_weight, cols),
        np.asarray(depth_px, np.float64) if use_depth else None,
        depth_weight * w if use_depth else None)
    c = coeffs[cols]
    if perspective:
        start = estimate_perspective(blocks.mean, blocks.targets_px, camera.focal_px,
                                     np.asarray(camera.principal_point_px))
    else:
        start = blocks.initial_camera(c)
    prior = GaussianPrior.standard(len(c))
    inv_var = 1.0 / landmark_sigma_px**2

    if perspective:
        def linearize(state: tuple[CameraPose, np.ndarray]) -> NormalEquations:
            cam, c = state
            eq = NormalEquations.from_rows(*blocks.rows(c, cam), weight=inv_var)
            return eq.add_prior(prior, c, slice(NUM_POSE_PARAMS, None))
    else:  # the fixed landmarks' equations from their moments, the outline's from its rows
        obs = (np.column_stack([blocks.targets_px, blocks.depth_px]) if use_depth
               else blocks.targets_px)
        targets = target_moments(lset.features, w, obs)
        dw = depth_weight if use_depth else 0.0

        def linearize(state: tuple[CameraPose, np.ndarray]) -> NormalEquations:
            cam, c = state
            assert isinstance(cam, ScaledOrthographicCamera)
            lhs, rhs = orthographic_equations(lset.moments, targets, cam, c, dw)
            if blocks.contour is not None:
                cp, cb, ct, cw, _ = blocks.contour.match(c, cam)
                jac, res = landmark_rows(cam, cp, cb, ct, cw)
                lhs += jac.T @ jac
                rhs += jac.T @ res
            eq = NormalEquations(inv_var * lhs, inv_var * rhs)
            return eq.add_prior(prior, c, slice(NUM_POSE_PARAMS, None))

    def update(state: tuple[CameraPose, np.ndarray], step: np.ndarray
               ) -> tuple[CameraPose, np.ndarray]:
        return state[0].updated(step[:NUM_POSE_PARAMS]), state[1] + step[NUM_POSE_PARAMS:]

    pose, c = gauss_newton(linearize, update, (start, c), iterations)
    coeffs[cols] = c
    err = blocks.squared_errors(c, pose)
    rms, n = float(np.sqrt(err.mean())), len(err)
    return coeffs[:ks].astype(np.float32), coeffs[ks:].astype(np.float32), pose, rms, n


def camera_model(camera: str, image_size: tuple[int, int], focal_px: float | None = None
                 ) -> Camera:
    """The `Camera` of kind ``camera`` (``"scaled_orthographic"`` or ``"perspective"``,
    `facefit.fit.camera.camera_kind`) for an image of ``image_size`` (width, height): the
    perspective focal length defaults to the image diagonal and the principal point is the
    image centre."""
    w, h = image_size
    if camera_kind(camera) == "perspective":
        f = float(focal_px) if focal_px else float(np.hypot(w, h))
        return Camera("perspective", f, (w / 2.0, h / 2.0))
    return Camera()


def camera_sets(choice: str, focals: Sequence[float | None],
                image_sizes: Sequence[tuple[int, int]], refine: bool) -> list[list[Camera]]:
    """The camera models several photos (or a clip's frames, one size) are fitted with, one
    list per set tried: each photo's `facefit.fit.camera.camera_candidates` for the camera
    ``choice`` and its known focal length ``focals`` (None: unknown). A photo of known focal
    length has the same camera in every set; with ``"auto"``, a refinement and unknown focal
    lengths, those photos are scaled orthographic in the first set and pinhole at their
    image diagonal in the second, the joint refinement keeping one set
    (`facefit.fit.photometric.best_refinement`)."""
    options = [camera_candidates(choice, f, refine) for f in focals]
    return [[camera_model(kind, size, focal) for size, (kind, focal) in zip(
        image_sizes, [o[min(k, len(o) - 1)] for o in options], strict=True)]
            for k in range(max(len(o) for o in options))]


def face_points(model: MorphableModel, face: FaceLandmarks,
                correspondence: LandmarkCorrespondence | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, LandmarkCorrespondence]:
    """(points (P, 2) px, relative depth (P,) or None, correspondence) of a detection for
    ``model``: MediaPipe-468 points fall back to their iBUG-68 subset (without depth) when the
    model has no dense MediaPipe correspondence."""
    points = np.asarray(face.points_px, np.float64)
    depth = face.depth_px
    if correspondence is None:
        try:
            correspondence = correspondence_for(model, face.scheme)
        except ValueError:
            if face.scheme != "mediapipe468":
                raise
            points = mediapipe_to_ibug68(points)
            correspondence = correspondence_for(model, "ibug68")
            depth = None
    return points, depth, correspondence


def fit_landmarks(
    model: MorphableModel,
    face: FaceLandmarks,
    image_size: tuple[int, int],
    camera: str = "scaled_orthographic",
    focal_px: float | None = None,
    correspondence: LandmarkCorrespondence | None = None,
    landmark_sigma: float = 0.05,
    iterations: int = 5,
    depth_weight: float = 1.0,
) -> FitResult:
    """Fit ``model`` to one detected face's landmarks.

    Args:
        model: the morphable model.
        face: the detection with its landmarks (any layout with a correspondence).
        image_size: (width, height) of the image in pixels.
        camera: ``"scaled_orthographic"`` (default) or ``"perspective"`` (`camera_kind`).
        focal_px: perspective focal length in pixels; default the image diagonal.
        correspondence: override the landmark ↔ vertex correspondence.
        landmark_sigma: landmark noise as a fraction of the face size (square root of the
            landmark box area); sets the prior's strength. 0.05 gave the same AFLW2000-3D
            NME as 0.02 and an 11 % lower dense shape error on synthetic faces.
        iterations: pose / shape alternations.
        depth_weight: weight of the detector's relative depth per landmark (when it gives
            one), relative to an image-plane residual; 0 ignores depth.
    """
    points, depth_all, corr = face_points(model, face, correspondence)
    size = float(np.sqrt(np.prod(points.max(0) - points.min(0))))
    cam = camera_model(camera, image_size, focal_px)
    depth = None if depth_all is None else np.asarray(depth_all, np.float64)[corr.landmark_index]
    shape, expr, pose, rms, n = fit_points(
        model, points[corr.landmark_index], corr.vertex_ids, corr.weights,
        points[corr.contour_index], corr.contour_weight,
        landmark_sigma_px=landmark_sigma * size, iterations=iterations, camera=cam,
        depth_px=depth, depth_weight=depth_weight)
    return make_result(model, shape, expr, pose, cam, rms, n, iterations)


def make_result(model: MorphableModel, shape: np.ndarray, expr: np.ndarray, pose: CameraPose,
                camera: Camera, rms: float, n: int, iterations: int) -> FitResult:
    """Assemble a `FitResult`: the 68 landmark sets from the few vertices they need (rows of
    the same product, so the same numbers as the dense mesh's), the dense vertices in image
    space deferred to their first use (`facefit.fit.result.Deferred`)."""
    prep = prepare_model(model)
    c = np.concatenate([shape, expr]).astype(np.float32)

    def dense() -> np.ndarray:
        return image_vertices(pose, (model.mean.reshape(-1) + prep.flat_basis @ c
                                     ).reshape(-1, 3))

    if pose.focal is None:  # scaled orthographic: each vertex's image point is its own
        verts_px: np.ndarray | Deferred = Deferred(dense)
        part = np.empty((model.num_vertices, 3), np.float32)  # only these rows are set
        part[prep.result_ids] = image_vertices(
            pose, (prep.result_mean + prep.result_basis @ c).reshape(-1, 3))
    else:  # perspective depth is relative to the whole mesh's median
        verts_px = part = dense()
    lm3 = part[model.landmark_ids["ibug68"]]
    return assemble_result(pose, camera, verts_px, lm3, silhouette_contour(model, part, lm3),
                           shape, expr, rms, n, iterations)


def silhouette_contour(model: MorphableModel, verts_px: np.ndarray, landmarks_3d: np.ndarray
                       ) -> np.ndarray:
    """(68, 2) iBUG points in the 300-W convention: the points on the vertices where 300-W's
    annotators put them on near-frontal faces (`ibug300w_vertex_ids`, learned from the 300-W
    training photos; else ``landmarks_3d[:, :2]``), then the 17 jaw points moved to the
    nearest point of the visible silhouette of the image-space mesh ``verts_px`` (V, 3)."""
    cont = model_contour(model)
    contour2d = np.array(landmarks_3d[:, :2], np.float32)
    ids300w = ibug300w_vertex_ids(model)
    if ids300w is not None:
        contour2d = np.array(verts_px[ids300w, :2], np.float32)
    cand = verts_px[cont.vertex_ids, :2]
    idx = match_contour(contour2d[:17], cand, verts_px[cont.centre_id, :2])
    contour2d[:17][idx >= 0] = cand[idx[idx >= 0]]
    return contour2d


# Former private names, kept for callers that have not moved to the public ones yet.
_Pose = camera_pose
_prepare = prepare_model
