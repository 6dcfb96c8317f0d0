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
