"""Contour correspondence: outline landmarks follow the model's current silhouette.

Face-outline landmarks (the jaw line of 300-W, MediaPipe's face oval) lie on the visible
silhouette of the face, which slides over the surface as the head turns; matching them to
fixed vertices biases pose and shape. Following Bas et al., "Fitting a 3D Morphable Model
to Edges: A Comparison Between Hard and Soft Correspondences", ACCV-W 2016 (and the
contour fitting of eos, Huber et al., VISAPP 2016), each outline landmark is matched, at every
iteration, to a model vertex on the current silhouette: the silhouette is the outermost
candidate vertex in each direction from the face centre (as the "landmark marching" of
Zhu et al., "High-Fidelity Pose and Expression Normalization", CVPR 2015, moves outline
points outwards), and each landmark takes its closest silhouette vertex (Bas et al.'s hard
correspondence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from facefit.fit.core.camera import CameraPose
    from facefit.model.morphable_model import MorphableModel


@dataclass(frozen=True, eq=False)
class ContourCandidates:
    """Vertices that may form the lower face outline of a model.

    Attributes:
        vertex_ids: (C,) int64 candidate vertex ids (cheeks, jaw, chin; no nose or mouth).
        centre_id: vertex id whose projection is the centre of the rays (between the eyes).
    """

    vertex_ids: np.ndarray
    centre_id: int


def contour_candidates(model: MorphableModel, max_candidates: int = 2500) -> ContourCandidates:
    """Candidate outline vertices of ``model``, found from its 68 iBUG landmark vertices.

    Candidates lie below the eyes, inside the jaw line seen from the front,
    outside a central band as wide as the nose (half the outer eye-corner distance) or below
    the lower lip; at most ``max_candidates``, taken evenly (deterministically).
    """
    lm = model.landmark_ids["ibug68"]
    mean = model.mean
    p = mean[lm]
    centre = p[27, :2]
    eye_y = p[36:48, 1].mean()
    lip_y = p[57, 1]
    half_band = 0.25 * abs(p[45, 0] - p[36, 0])
    x, y = mean[:, 0] - p[[27, 28, 29, 30, 33, 51, 57, 8], 0].mean(), mean[:, 1]
    # only the face inside its jaw line (seen from the front, a little margin): the mask of a
    # model may reach over the ears and under the chin, which the photo's outline never shows
    jaw = p[:17, :2] - centre
    jaw_ang, jaw_rad = np.arctan2(jaw[:, 1], jaw[:, 0]), np.hypot(jaw[:, 0], jaw[:, 1])
    order = np.argsort(jaw_ang)
    d = mean[:, :2] - centre
    ang, rad = np.arctan2(d[:, 1], d[:, 0]), np.hypot(d[:, 0], d[:, 1])
    limit = np.interp(ang, jaw_ang[order], jaw_rad[order], left=0.0, right=0.0)
    inside = rad <= 1.0 * limit
    region = inside & (y < eye_y) & ((np.abs(x) > half_band) | (y < lip_y))
    ids = np.flatnonzero(region)
    if len(ids) > max_candidates:
        ids = ids[np.linspace(0, len(ids) - 1, max_candidates).astype(np.int64)]
    centre = int(lm[27])  # top of the nose bridge, between the eyes
    return ContourCandidates(ids.astype(np.int64), centre)


def _outermost_along_rays(directions: np.ndarray, d_c: np.ndarray, max_angle_deg: float
                          ) -> np.ndarray:
    """For each ray angle (R,), the candidate (rows of ``d_c`` (C, 2), relative to the centre)
    farthest out along the ray within +-``max_angle_deg`` of it; -1 where none is.

    The candidates within reach of a ray are a run of the angle-sorted candidates (found by
    binary search, the sorted list repeated at -2 pi and +2 pi for rays that wrap), so the
    work is R times the widest run, not R times C."""
    ang_c = np.arctan2(d_c[:, 1], d_c[:, 0])
    rad_c = np.hypot(d_c[:, 0], d_c[:, 1])
    order = np.argsort(ang_c, kind="stable")
    a = ang_c[order]
    a3 = np.concatenate([a - 2 * np.pi, a, a + 2 * np.pi])
    o3 = np.tile(order, 3)
    half = np.deg2rad(max_angle_deg)
    lo = np.searchsorted(a3, directions - half - 1e-9, side="left")
    hi = np.searchsorted(a3, directions + half + 1e-9, side="right")
    width = max(int((hi - lo).max(initial=0)), 1)
    cols = lo[:, None] + np.arange(width)[None, :]  # (R, width)
    inside = cols < hi[:, None]
    cand = o3[np.minimum(cols, len(a3) - 1)]
    diff = np.mod(ang_c[cand] - directions[:, None] + np.pi, 2 * np.pi) - np.pi
    radial = np.where(inside & (np.abs(diff) <= half), rad_c[cand] * np.cos(diff), -np.inf)
    best = np.argmax(radial, axis=1)
    rows = np.arange(len(best))
    found = np.isfinite(radial[rows, best])
    return np.where(found, cand[rows, best], -1).astype(np.int64)


_BINS = 720  # angular bins of the silhouette's first pass (0.5 degrees)


def _outermost_by_bin(directions: np.ndarray, z_c: np.ndarray, ang_c: np.ndarray,
                      rad_c: np.ndarray, bin_cand: np.ndarray, max_angle_deg: float
                      ) -> np.ndarray:
    """`_outermost_along_rays` when each angular bin holds at most one candidate
    (``bin_cand`` (_BINS,): its index into ``z_c`` (C,) (positions relative to the centre as
    complex numbers x + iy), ``ang_c`` and ``rad_c`` (C,), -1 for none). The candidates
    within reach of a ray are among the bins its sector overlaps (one more each side),
    gathered as a fixed-width (R, W) block in angle order. A candidate's distance along the
    ray is ``d . u`` (``rad cos(angle)``, the real part of a complex product) and it is
    inside the sector when that is at least ``rad cos(max_angle)``; within rounding of that
    bound (the first candidate is exactly ``max_angle`` from the fifth ray) the angle
    difference decides, as in `_outermost_along_rays`."""
    half = np.deg2rad(max_angle_deg)
    width = int(np.ceil(2 * half / (2 * np.pi) * _BINS)) + 3
    lo = np.floor((directions - half + np.pi) * (_BINS / (2 * np.pi))).astype(np.int64) - 1
    cand = bin_cand[(lo[:, None] + np.arange(width)) % _BINS]  # (R, W)
    unit = np.cos(directions) - 1j * np.sin(directions)
    radial = (z_c[cand] * unit[:, None]).real
    slack = radial - rad_c[cand] * np.cos(half)
    inside = slack >= 0
    r, w = np.nonzero(np.abs(slack) <= 1e-9 * rad_c.max())
    if len(r):
        diff = np.mod(ang_c[cand[r, w]] - directions[r] + np.pi, 2 * np.pi) - np.pi
        inside[r, w] = np.abs(diff) <= half
    radial = np.where((cand >= 0) & inside, radial, -np.inf)
    best = np.argmax(radial, axis=1)
    rows = np.arange(len(best))
    return np.where(radial[rows, best] > -np.inf, cand[rows, best], -1)


def _silhouette(dx: np.ndarray, dy: np.ndarray, ang_all: np.ndarray, rad_all: np.ndarray,
                step_deg: float, max_angle_deg: float) -> np.ndarray:
    """`silhouette_ids` of candidates at (dx, dy) (C,) each from the centre, with their
    angles and radii (C,) already computed."""
    if len(dx) == 0:
        return np.zeros(0, np.int64)
    # first the outermost candidate of each 0.5-degree bin (cheap, keeps the fan small)
    b = np.floor((ang_all + np.pi) / (2 * np.pi) * _BINS).astype(np.int64) % _BINS
    top = np.full(_BINS, -np.inf)
    np.maximum.at(top, b, rad_all)
    keep = np.flatnonzero(rad_all >= top[b])
    ang = np.sort(ang_all[keep])
    # the angular range, starting after the largest gap (the candidates may wrap around pi)
    gaps = np.diff(np.r_[ang, ang[0] + 2 * np.pi])
    k = int(np.argmax(gaps))
    start, span = ang[(k + 1) % len(ang)], 2 * np.pi - gaps[k]
    rays = start + np.arange(0.0, span + 1e-9, np.deg2rad(step_deg))
    bin_cand = np.full(_BINS, -1, np.int64)
    bin_cand[b[keep]] = np.arange(len(keep))
    if (bin_cand >= 0).sum() == len(keep):  # one candidate a bin (no equal radii)
        idx = _outermost_by_bin(rays, dx[keep] + 1j * dy[keep], ang_all[keep], rad_all[keep],
                                bin_cand, max_angle_deg)
    else:
        idx = _outermost_along_rays(rays, np.column_stack([dx[keep], dy[keep]]), max_angle_deg)
    return keep[np.unique(idx[idx >= 0])]


RAY_STEP_DEG = 1.0
"""Angle between the silhouette's rays (`silhouette_ids`)."""
RAY_HALF_WIDTH_DEG = 4.0
"""Half-width of each ray's sector (`silhouette_ids`)."""


def silhouette_ids(candidates_px: np.ndarray, centre_px: np.ndarray,
                   step_deg: float = RAY_STEP_DEG,
                   max_angle_deg: float = RAY_HALF_WIDTH_DEG) -> np.ndarray:
    """Indices of the silhouette among projected candidates: for rays from ``centre_px``
    every ``step_deg`` over the candidates' angular range, the candidate farthest out along
    the ray within +-``max_angle_deg`` of it (sorted, unique).

    Args:
        candidates_px: (C, 2) projected candidate vertices, pixels.
        centre_px: (2,) the rays' origin (projected face centre), pixels.
    """
    cand = np.asarray(candidates_px, np.float64)
    dx, dy = cand[:, 0] - centre_px[0], cand[:, 1] - centre_px[1]  # contiguous: faster
    return _silhouette(dx, dy, np.arctan2(dy, dx), np.hypot(dx, dy), step_deg, max_angle_deg)


OCCLUDING_SIDE_TURN_DEG = 20.0
"""Head turn past which only outline landmarks on the side the face turns towards are
silhouette-matched (`match_contour`'s ``turn``); measured on AFLW2000-3D dev (MediaPipe + fit,
the face oval as outline): 20 degrees lowered every yaw bucket's NME against no gating."""


_AXES_MM = np.vstack([np.zeros(3), 50.0 * np.eye(3)])  # a point and 50 mm along each axis


def head_turn(camera: CameraPose, centre_mm: np.ndarray) -> float:
    """Signed sine of the head's turn in the image: the image x of the model's forward axis
    (+z, out of the face) at ``centre_mm`` (3,), in units of the image length of a model
    axis parallel to the image (the projections of three orthonormal axes have squared
    lengths summing to twice that, squared); positive when the face turns towards image +x."""
    px, _ = camera.project(np.asarray(centre_mm, np.float64) + _AXES_MM)
    d = px[1:] - px[0]
    unit = float(np.sqrt(0.5 * (d**2).sum()))
    return float(d[2, 0] / max(unit, 1e-9))


def match_contour(
    landmarks_px: np.ndarray,
    candidates_px: np.ndarray,
    centre_px: np.ndarray,
    max_angle_deg: float = 20.0,
    turn: float = 0.0,
) -> np.ndarray:
    """Index into ``candidates_px`` of the silhouette point for each outline landmark.

    The silhouette is `silhouette_ids` (the outermost candidate per angle about the centre);
    each landmark takes the closest silhouette point (Bas et al.'s hard correspondence)
    among those within ``max_angle_deg`` of its own direction from the centre. Taking the
    outermost point along the landmark's ray instead slides the match along an outline that
    is oblique to the ray (on HELEN it doubled the jaw error of the 300-W outline).
    Once the head turns past `OCCLUDING_SIDE_TURN_DEG` (``turn``, see `head_turn`), only the
    landmarks on the side the face turns towards are matched: there the outline is the
    occluding contour; on the side facing the camera a detector's outline (MediaPipe's face
    oval, 300-W's jaw before the ear) marks where the face surface ends, not a silhouette
    (the one-sided contour of eos, Huber et al., VISAPP 2016).

    Args:
        landmarks_px: (K, 2) outline landmarks, pixels.
        candidates_px: (C, 2) projected candidate vertices, pixels.
        centre_px: (2,) the projected face centre, pixels.
        max_angle_deg: half-width of the angular sector around each landmark's direction.
        turn: signed sine of the head turn (`head_turn`); 0 matches both sides.

    Returns:
        (K,) int64 candidate index per landmark; -1 where no silhouette point lies in the
        sector or the landmark is on the side facing the camera of a turned head.
    """
    cand = np.asarray(candidates_px, np.float64)
    lms = np.asarray(landmarks_px, np.float64)
    dx, dy = cand[:, 0] - centre_px[0], cand[:, 1] - centre_px[1]  # contiguous: faster
    rad_all = np.hypot(dx, dy)
    sil = _silhouette(dx, dy, np.arctan2(dy, dx), rad_all, RAY_STEP_DEG,
                      RAY_HALF_WIDTH_DEG)
    s = cand[sil]
    d_l = lms - centre_px
    # within the sector: the angle between the landmark's and the point's directions (from
    # the centre) is at most max_angle_deg, i.e. their dot product is at least
    # |d_l| |d_c| cos(max_angle)
    dot = d_l @ np.column_stack([dx[sil], dy[sil]]).T  # (K, S)
    inside = dot >= np.hypot(d_l[:, 0], d_l[:, 1])[:, None] * rad_all[sil] * np.cos(
        np.deg2rad(max_angle_deg))
    dx, dy = s[None, :, 0] - lms[:, None, 0], s[None, :, 1] - lms[:, None, 1]
    dist = np.where(inside, np.sqrt(dx * dx + dy * dy), np.inf)
    best = np.argmin(dist, axis=1) if len(s) else np.zeros(len(lms), np.int64)
    found = np.isfinite(dist[np.arange(len(best)), best]) if len(s) else np.zeros(len(lms), bool)
    if abs(turn) > np.sin(np.radians(OCCLUDING_SIDE_TURN_DEG)):
        found &= np.sign(turn) * d_l[:, 0] > 0
    return np.where(found, sil[best] if len(s) else -1, -1).astype(np.int64)
