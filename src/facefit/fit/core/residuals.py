"""Residual blocks: whitened Jacobian rows and residuals of landmark observations.

Each block maps model points with a known derivative with respect to the model parameters
(``d_points``: (N, 3, M), e.g. a linear model's basis rows, or FLAME's skinned coefficient
Jacobian) through a camera (`facefit.fit.core.camera`) and returns the rows of the joint
Jacobian with respect to (camera pose (6), model parameters (M)) and the residuals
``observed - predicted``, each multiplied by the square root of its weight. Blocks:

* `landmark_rows`: 2D landmarks in pixels;
* `depth_rows`: relative landmark depth (as MediaPipe estimates it), up to an unknown offset
  that is eliminated by weighted centring;
* `ContourResidual`: face-outline landmarks matched, at the current parameters, to the
  model's silhouette (`facefit.fit.contour.match_contour`), then treated as 2D landmarks;
* multi-view fits combine one block set per view in
  `facefit.fit.core.solver.BlockArrowNormalEquations`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.fit.contour import head_turn, match_contour
from facefit.fit.core.camera import CameraPose

Linearization = tuple[np.ndarray, np.ndarray]  # image points (N, 3), Jacobian (N, 3, 6 + M)


def linearize_points(camera: CameraPose, points: np.ndarray, d_points: np.ndarray
                     ) -> Linearization:
    """Image points (N, 3) of model points (N, 3) and their Jacobian (N, 3, 6 + M) with
    respect to (camera pose, model parameters), ``d_points`` (N, 3, M) being the points'
    parameter derivative: computed once, shared by the blocks of the same points."""
    d_pose, d_point = camera.jacobians(points)
    return camera.image_points(points), np.concatenate([d_pose, d_point @ d_points], axis=2)


def landmark_rows(camera: CameraPose, points: np.ndarray, d_points: np.ndarray,
                  targets_px: np.ndarray, weights: np.ndarray | None = None,
                  linearized: Linearization | None = None) -> tuple[np.ndarray, np.ndarray]:
    """2D landmark block.

    Args:
        camera: the current camera.
        points: (N, 3) model-frame points; d_points: (N, 3, M) their parameter derivative.
        targets_px: (N, 2) observed pixels; weights: (N,) (default 1).
        linearized: `linearize_points` of these points, when already computed.

    Returns:
        Jacobian (2N, 6 + M) (all x rows, then all y rows) and residual (2N,), weighted.
    """
    img, jac = linearize_points(camera, points, d_points) if linearized is None else linearized
    jac = jac[:, :2]
    sw = np.ones(len(points)) if weights is None else np.sqrt(np.asarray(weights, np.float64))
    res = (np.asarray(targets_px, np.float64) - img[:, :2]) * sw[:, None]
    jac = jac * sw[:, None, None]
    return jac.transpose(1, 0, 2).reshape(-1, jac.shape[2]), res.T.ravel()


def depth_rows(camera: CameraPose, points: np.ndarray, d_points: np.ndarray,
               depth: np.ndarray, weights: np.ndarray, linearized: Linearization | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Relative depth block: observed depth (N,) (larger = farther, camera units) known up to
    a common offset, which is removed by centring rows and residuals with the weights (N,).
    ``linearized``: `linearize_points` of these points, when already computed.

    Returns:
        Jacobian (N, 6 + M) and residual (N,), weighted.
    """
    img, jac = linearize_points(camera, points, d_points) if linearized is None else linearized
    jac = jac[:, 2]
    w = np.asarray(weights, np.float64)
    res = np.asarray(depth, np.float64) - img[:, 2]
    wz = w / w.sum()
    sw = np.sqrt(w)
    return (jac - wz @ jac) * sw[:, None], (res - wz @ res) * sw


@dataclass(frozen=True, eq=False)
class ContourResidual:
    """Face-outline landmarks that follow the silhouette of a linear model part.

    Attributes:
        targets_px: (Kc, 2) outline landmarks.
        weight: weight of each.
        cand_mean: (C, 3) candidate vertices at zero parameters; cand_basis: (C, 3, M).
        centre_mean: (3,) ray centre vertex; centre_basis: (3, M).
        search_basis: (3C, M) float32 ``cand_basis`` (when its values are float32 numbers)
            for the silhouette search, or None to search with ``cand_basis``.
    """

    targets_px: np.ndarray
    weight: float
    cand_mean: np.ndarray
    cand_basis: np.ndarray
    centre_mean: np.ndarray
    centre_basis: np.ndarray
    search_basis: np.ndarray | None = None

    def match(self, params: np.ndarray, camera: CameraPose
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Current pairs: (points (n, 3), d_points (n, 3, M), targets (n, 2), weights (n,),
        projected points (n, 2)) of the outline landmarks that found a silhouette vertex.

        With ``search_basis`` the candidates are placed for the search by a float32 product
        (half the memory traffic of the (3C, M) rows, the fit's largest array; within about
        1e-5 px of the float64 positions, so only a near-tie that close could be decided
        otherwise: the MediaPipe fits of 1,018 AFLW2000-3D dev faces, 6 searches each, came
        out the same bit for bit) and the matched points are evaluated again in float64."""
        basis = self.cand_basis
        if self.search_basis is None:  # one (3C, M) product: numpy's batched one is slower
            cand = self.cand_mean + (basis.reshape(-1, basis.shape[2]) @ params).reshape(-1, 3)
        else:
            cand = self.cand_mean + (self.search_basis @ params.astype(np.float32)).reshape(-1, 3)
        cand_px, _ = camera.project(cand)
        centre = self.centre_mean + self.centre_basis @ params
        centre_px, _ = camera.project(centre[None])
        idx = match_contour(self.targets_px, cand_px, centre_px[0],
                            turn=head_turn(camera, centre))
        ok = idx >= 0
        i = idx[ok]
        if self.search_basis is None:
            points, points_px = cand[i], cand_px[i]
        else:
            points = self.cand_mean[i] + (basis[i].reshape(-1, basis.shape[2]) @ params
                                          ).reshape(-1, 3)
            points_px, _ = camera.project(points)
        return (points, basis[i], self.targets_px[ok], np.full(ok.sum(), self.weight),
                points_px)
