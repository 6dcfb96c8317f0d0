"""Contour matching: each outline landmark takes its closest silhouette point."""

from __future__ import annotations

import numpy as np

from facefit.fit.contour import match_contour


def test_outermost_candidate_along_ray_is_chosen() -> None:
    angles = np.deg2rad(np.arange(0, 360, 2.0))
    inner = np.column_stack([np.cos(angles), np.sin(angles)]) * 50
    outer = np.column_stack([np.cos(angles), np.sin(angles)]) * 80
    cands = np.vstack([inner, outer]) + [100, 100]
    lms = np.array([[200.0, 100.0], [100.0, 0.0], [30.0, 30.0]])
    idx = match_contour(lms, cands, np.array([100.0, 100.0]), max_angle_deg=1.5)
    assert (idx >= len(inner)).all()
    got = cands[idx] - 100
    want = (lms - 100) / np.linalg.norm(lms - 100, axis=1, keepdims=True) * 80
    np.testing.assert_allclose(got, want, atol=80 * np.deg2rad(1.5))


def test_no_candidate_in_sector_gives_minus_one() -> None:
    cands = np.array([[10.0, 0.0]])
    idx = match_contour(np.array([[0.0, 10.0]]), cands, np.zeros(2))
    assert idx.tolist() == [-1]


def test_oblique_outline_gives_the_foot_point_not_the_sector_edge() -> None:
    # a straight outline x + y = 100 (oblique to the rays from the origin) with interior
    # candidates behind it; the landmark lies 3 px outside the line
    t = np.linspace(0.0, 100.0, 401)
    line = np.column_stack([t, 100.0 - t])
    cands = np.vstack([line, line * 0.7, line * 0.4])
    lm = np.array([[80.0, 20.0]]) + 3.0 / np.sqrt(2.0)
    idx = match_contour(lm, cands, np.zeros(2))
    foot = np.array([80.0, 20.0])
    assert idx[0] < len(line)  # on the outline, not an interior candidate
    np.testing.assert_allclose(cands[idx[0]], foot, atol=1.0)  # rays every degree at r ~ 85


def test_head_turn_is_the_sine_of_yaw_towards_the_nose() -> None:
    """`head_turn` of a camera turned by a rotation about the vertical axis: |sin(yaw)|, with
    the sign of the image direction in which the nose tip (model +z) moves."""
    from facefit.fit.contour import head_turn
    from facefit.fit.core.camera import ScaledOrthographicCamera

    for yaw in (-50.0, -10.0, 0.0, 35.0):
        a = np.radians(yaw)
        rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
        cam = ScaledOrthographicCamera(rot, 2.0, np.array([100.0, 100.0]))
        centre = np.array([1.0, 5.0, 80.0])
        turn = head_turn(cam, centre)
        tip, _ = cam.project(np.array([centre, centre + [0.0, 0.0, 90.0]]))
        assert abs(abs(turn) - abs(np.sin(a))) < 1e-9
        assert np.sign(turn) == np.sign(round(tip[1, 0] - tip[0, 0], 9))


def test_turned_head_matches_outline_only_on_the_side_it_turns_to() -> None:
    angles = np.deg2rad(np.arange(0, 360, 2.0))
    cands = np.column_stack([np.cos(angles), np.sin(angles)]) * 80 + [100, 100]
    lms = np.array([[185.0, 100.0], [15.0, 100.0], [100.0, 185.0]])  # right, left, below
    centre = np.array([100.0, 100.0])
    assert (match_contour(lms, cands, centre, turn=0.2) >= 0).all()  # under 20 degrees
    right = match_contour(lms, cands, centre, turn=0.5)
    left = match_contour(lms, cands, centre, turn=-0.5)
    assert right[0] >= 0 and right[1] == -1
    assert left[1] >= 0 and left[0] == -1
    assert right[2] == -1 and left[2] == -1  # on the centre's vertical: neither side


def _silhouette_brute_force(cands: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """`silhouette_ids` as its docstring says it, every ray against every candidate:
    outermost per 0.5-degree bin, then for rays every degree over the kept candidates'
    range, the one farthest along the ray within 4 degrees of it."""
    d = cands - centre
    ang, rad = np.arctan2(d[:, 1], d[:, 0]), np.hypot(d[:, 0], d[:, 1])
    b = np.floor((ang + np.pi) / (2 * np.pi) * 720).astype(int) % 720
    keep = np.array([i for i in range(len(d)) if rad[i] >= rad[b == b[i]].max()])
    a = np.sort(ang[keep])
    gaps = np.diff(np.r_[a, a[0] + 2 * np.pi])
    k = int(np.argmax(gaps))
    rays = a[(k + 1) % len(a)] + np.arange(0.0, 2 * np.pi - gaps[k] + 1e-9, np.deg2rad(1.0))
    out = set()
    for r in rays:
        diff = np.mod(ang[keep] - r + np.pi, 2 * np.pi) - np.pi
        radial = np.where(np.abs(diff) <= np.deg2rad(4.0), rad[keep] * np.cos(diff), -np.inf)
        if np.isfinite(radial.max()):
            out.add(int(keep[np.argmax(radial)]))
    return np.array(sorted(out), np.int64)


def test_silhouette_matches_brute_force_on_random_fans() -> None:
    """The binned ray search (and its fall-back when a bin holds equal radii) picks what
    comparing every ray with every candidate picks, on fans and arcs that wrap around pi."""
    from facefit.fit.contour import silhouette_ids

    rng = np.random.default_rng(5)
    for trial in range(60):
        n = int(rng.integers(20, 600))
        lo = rng.uniform(-np.pi, np.pi)
        ang = lo + rng.uniform(0.0, rng.uniform(0.5, 2 * np.pi), n)
        rad = rng.uniform(20.0, 100.0, n) * (1.0 + 0.2 * np.sin(3 * ang))
        cands = np.column_stack([np.cos(ang), np.sin(ang)]) * rad[:, None] + [200.0, 150.0]
        if trial % 4 == 0:  # exact duplicates: equal radii in one bin
            cands = np.vstack([cands, cands[rng.integers(0, n, 10)]])
        centre = np.array([200.0, 150.0])
        np.testing.assert_array_equal(silhouette_ids(cands, centre),
                                      _silhouette_brute_force(cands, centre))


def test_float32_search_gives_the_float64_pairs() -> None:
    """`ContourResidual.match` with a float32 ``search_basis`` (same numbers as the float64
    basis) returns the pairs of the float64 search: matched points re-evaluated in float64."""
    from facefit.fit.core.camera import ScaledOrthographicCamera
    from facefit.fit.core.residuals import ContourResidual
    from facefit.fit.core.rotation import rotation_from_euler

    rng = np.random.default_rng(7)
    theta = rng.uniform(-2.6, -0.5, 1500)  # a lower-face fan of candidates around the centre
    rad = rng.uniform(20.0, 70.0, 1500)
    mean = np.column_stack([rad * np.cos(theta), rad * np.sin(theta),
                            rng.uniform(0.0, 40.0, 1500)])
    basis32 = rng.normal(0.0, 2.0, (1500, 3, 12)).astype(np.float32)
    targets = np.column_stack([np.linspace(130.0, 270.0, 15), np.full(15, 300.0)])
    args = (targets, 1.0, mean, basis32.astype(np.float64), np.zeros(3), np.zeros((3, 12)))
    plain = ContourResidual(*args)
    fast = ContourResidual(*args, basis32.reshape(-1, 12))
    for yaw in (-30.0, 0.0, 25.0):
        cam = ScaledOrthographicCamera(rotation_from_euler(yaw, 5.0, 3.0), 1.6,
                                       np.array([200.0, 200.0]))
        params = rng.normal(size=12)
        want, got = plain.match(params, cam), fast.match(params, cam)
        assert len(want[0]) > 5
        for w, g in zip(want, got, strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-9)
