"""The fast video overlay renderer draws the same picture as `render_overlay`."""

import numpy as np

from facefit.fit.camera import rotation_from_euler
from facefit.fit.landmark_fit import _Pose
from facefit.io.export import render_overlay
from facefit.model import load_default_model
from facefit.video.overlay import OverlayRenderer


def test_overlay_matches_reference_render() -> None:
    m = load_default_model()
    r = OverlayRenderer(m.mean, m.triangles)
    assert len(r.levels[-1].triangles) < 0.3 * len(m.triangles)
    img = np.full((240, 320, 3), 90, np.uint8)
    pose = _Pose(rotation_from_euler(20, 5, 0), 0.6, np.array([160.0, 120.0]))
    xy, d = pose.project(m.vertices(np.zeros(m.num_shape)).astype(np.float64))
    v = np.column_stack([xy, d]).astype(np.float32)
    assert r.level_for(0.6).cell_mm == 3.0 and r.level_for(5.0).cell_mm == 0.0
    a = render_overlay(img, v, m.triangles).astype(int)
    b = r.render(img, v, 0.6).astype(int)
    assert ((a != 90).any(2) == (b != 90).any(2)).mean() > 0.995  # same silhouette
    assert np.abs(a - b).mean() < 0.5 and (np.abs(a - b).max(2) > 10).mean() < 0.01
