"""Normal equations of a linear model's fixed landmarks from precomputed moments.

For a linear model each fixed landmark is ``p_k = mean_k + basis_k c``, so under a scaled
orthographic camera (`facefit.fit.core.camera.ScaledOrthographicCamera`) every row of the
landmark and relative-depth blocks of `facefit.fit.core.residuals` is a fixed linear function
of the point's features ``phi_k = [vec([basis_k | mean_k]), 1]`` (3 (M + 1) + 1 numbers)
whose coefficients depend only on the camera and ``c``. The Gauss-Newton normal equations
``J^T W J`` and ``J^T W r`` are then sums over the landmarks of ``phi_k phi_k^T`` and
``target_k phi_k``, computed once (`PointMoments`: per landmark set and weights; the target
moments per fit) and rotated into the view frame at each iteration: no Jacobian rows are
formed, and an iteration costs the same for 68 landmarks as for 468. This is the
"precomputed products" form of linear least squares (the normal equations accumulate
sufficient statistics; Golub & Van Loan, "Matrix Computations", 4th ed., section 5.3) applied
per coordinate pair of the rotated points.

The sums are the same as those of `landmark_rows` / `depth_rows` with `NormalEquations.from_rows`
taken in another order, so the equations agree to rounding (tests/fit/core/test_core_moments.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.fit.core.camera import NUM_POSE_PARAMS, ScaledOrthographicCamera
from facefit.fit.core.rotation import skew

# _CROSS[a, j, b]: derivative of row a of -[v]x (d(R p)/d omega) column j by v_b
_CROSS = -np.transpose(skew(np.eye(3)), (1, 2, 0))


def point_features(mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(K, 3 (M + 1) + 1) features ``[vec([basis_k | mean_k]), 1]`` of points with (K, 3)
    ``mean`` and (K, 3, M) ``basis``: coordinate a of point k is ``phi_k[a (M + 1) :
    (a + 1) (M + 1)] @ [c, 1]``."""
    k = len(mean)
    aug = np.concatenate([np.asarray(basis, np.float64),
                          np.asarray(mean, np.float64)[:, :, None]], axis=2)
    return np.concatenate([aug.reshape(k, -1), np.ones((k, 1))], axis=1)


@dataclass(frozen=True, eq=False)
class PointMoments:
    """Weighted second moments of fixed linear-model points' features (`point_features`).

    Attributes:
        second: (D, D) ``sum_k w_k phi_k phi_k^T`` in the model frame, D = 3 (M + 1) + 1
            (its last row holds the first moments, its corner the total weight).
        coeff_blocks: (9, M * M) its (a, b) coordinate blocks' coefficient parts
            ``sum_k w_k basis_k[a]^T basis_k[b]``, flattened, a and b in 0..2.
        by_coord: (3 D, M + 1) its columns but the last, one row per (row, coordinate) pair
            (contiguous, for the product with ``[c, 1]``).
        num_params: M, the model columns.
    """

    second: np.ndarray
    coeff_blocks: np.ndarray
    by_coord: np.ndarray
    num_params: int

    @classmethod
    def of(cls, mean: np.ndarray, basis: np.ndarray, weights: np.ndarray) -> PointMoments:
        """Moments of points with (K, 3) ``mean``, (K, 3, M) ``basis`` and (K,) ``weights``."""
        m = basis.shape[2]
        phi = point_features(mean, basis)
        second = phi.T @ (phi * np.asarray(weights, np.float64)[:, None])
        blocks = second[:-1, :-1].reshape(3, m + 1, 3, m + 1)[:, :m, :, :m]
        return cls(second, blocks.transpose(0, 2, 1, 3).reshape(9, m * m).copy(),
                   np.ascontiguousarray(second[:, :-1]).reshape(-1, m + 1), m)


def target_moments(features: np.ndarray, weights: np.ndarray, values: np.ndarray
                   ) -> np.ndarray:
    """(n, D) ``sum_k w_k values_k[i] phi_k`` (model frame) of per-point observations
    (K, n), e.g. the target pixels (x, y) and the relative depth of each landmark, from the
    points' (K, D) `point_features` and (K,) weights."""
    wv = np.asarray(values, np.float64) * np.asarray(weights, np.float64)[:, None]
    return wv.T @ features


# pose rows of an image row as maps of h = [v, 1]: L_a = sign_a _L_SCALED[a] + _L_FIXED[a]
_L_SCALED = np.zeros((3, NUM_POSE_PARAMS, 4))
_L_SCALED[:, :3, :3] = _CROSS  # d / d omega
_L_SCALED[[0, 1, 2], 3, [0, 1, 2]] = 1.0  # d / d log scale
_L_FIXED = np.zeros((3, NUM_POSE_PARAMS, 4))
_L_FIXED[0, 4, 3] = _L_FIXED[1, 5, 3] = 1.0  # d / d tx, d / d ty


def orthographic_equations(moments: PointMoments, targets: np.ndarray,
                           camera: ScaledOrthographicCamera, params: np.ndarray,
                           depth_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations ``(J^T W J (P, P), J^T W r (P,))``, P = 6 + M, of the 2D landmark
    block (`facefit.fit.core.residuals.landmark_rows`) and, with ``depth_weight`` > 0, the
    relative-depth block with weights ``depth_weight`` times the landmark weights
    (`depth_rows`), at ``camera`` and model parameters ``params`` (M,).

    With the view-frame point ``v_k = R p_k`` and ``h_k = [v_k, 1]``, row a (x, y, depth) of
    a point's pose Jacobian is ``L_a h_k`` ((6, 4) ``L_a`` from the camera alone), its
    coefficient Jacobian ``sign_a dv_k[a] / dc`` and its image coordinate ``g_a . h_k``. The
    equations need only ``sum_k w_k h_k h_k^T`` (4, 4), ``sum_k w_k (dv_k[a]/dc) h_k^T``
    (3, M, 4), the same sums with the targets and the coefficient blocks, all read off the
    moments contracted with ``[params, 1]`` and rotated by R: D x 3 (M + 1) work an
    iteration, whatever the number of landmarks.

    Args:
        moments: the landmarks' `PointMoments` (with their weights).
        targets: (2, D) or (3, D) `target_moments` of the (x px, y px[, depth px]) targets.
    """
    m = moments.num_params
    m1, npp = m + 1, NUM_POSE_PARAMS
    rot = np.asarray(camera.rotation, np.float64)
    s, t = camera.scale, camera.translation
    n = 3 if depth_weight > 0 else 2
    sign = np.array([s, -s, -s])[:n]
    row_w = np.array([1.0, 1.0, depth_weight])[:n]
    wr = row_w * sign
    c1 = np.empty(m1)
    c1[:m], c1[m] = params, 1.0
    phi = moments.second
    tg = np.asarray(targets, np.float64)[:n]
    # z[row] = sum_k w_k phi_k[row] h_k (rows: model-frame features; h: view frame)
    z = np.empty((len(phi), 4))
    z[:, :3] = (moments.by_coord @ c1).reshape(-1, 3) @ rot.T
    z[:, 3] = phi[:, -1]
    zb = z[:-1].reshape(3, m1, 4)
    hh = np.empty((4, 4))  # sum_k w_k h_k h_k^T
    hh[:3] = rot @ (c1 @ zb)
    hh[3] = z[-1]
    dv = (rot[:n] @ zb[:, :m].reshape(3, -1)).reshape(n, m, 4)  # sum_k w_k dv_k[a]/dc h_k^T
    tb = tg[:, :-1].reshape(n, 3, m1)
    th = np.empty((n, 4))  # sum_k w_k target_k[a] h_k
    th[:, :3] = (tb @ c1) @ rot.T
    th[:, 3] = tg[:, -1]
    tc = (rot[:n, :, None] * tb[:, :, :m]).sum(1)  # (n, M) sum_k w_k target_k[a] dv_k[a]/dc
    lmap = sign[:, None, None] * _L_SCALED[:n] + _L_FIXED[:n]  # (n, 6, 4)
    g = sign[:, None] * np.eye(3, 4)[:n]  # image coordinate a = g_a . h
    g[:2, 3] = t[0], t[1]
    lh = lmap @ hh  # (n, 6, 4)
    wl = row_w[:, None, None] * lmap
    res_h = th - g @ hh  # (n, 4) sum_k w_k r_k[a] h_k
    res_c = tc - (dv @ g[:, :, None])[:, :, 0]  # (n, M) sum_k w_k r_k[a] dv_k[a] / dc
    lhs = np.empty((npp + m, npp + m))
    lhs[:npp, :npp] = (wl @ lh.transpose(0, 2, 1)).sum(0)
    lhs[npp:, :npp] = (dv.transpose(1, 0, 2).reshape(m, -1)
                       @ (wr[:, None, None] * lmap.transpose(0, 2, 1)).reshape(-1, npp))
    mix = (rot[:n].T * (wr * sign)) @ rot[:n]  # sum_a w_a sign_a^2 R[a] R[a]^T
    lhs[npp:, npp:] = (mix.ravel() @ moments.coeff_blocks).reshape(m, m)
    lhs[:npp, npp:] = lhs[npp:, :npp].T
    rhs = np.empty(npp + m)
    rhs[:npp] = wl.transpose(1, 0, 2).reshape(npp, -1) @ res_h.ravel()
    rhs[npp:] = wr @ res_c
    if n == 3:  # depth centred with the weights: remove the mean row and the mean residual
        total = hh[3, 3]
        mean_row = np.concatenate([lh[2, :, 3], sign[2] * dv[2, :, 3]])  # sum_k w_k J_k
        lhs -= depth_weight / total * np.outer(mean_row, mean_row)
        rhs -= depth_weight * res_h[2, 3] / total * mean_row
    return lhs, rhs
