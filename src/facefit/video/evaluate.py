"""Jitter and accuracy of video fits on a synthetic moving face with known truth."""

from __future__ import annotations

import numpy as np

from facefit.fit.multi_image import fit_same_person
from facefit.metrics.geometry import jitter_metrics
from facefit.model.morphable_model import MorphableModel
from facefit.synthetic.views import make_motion
from facefit.video.fitter import FrameFitter
from facefit.video.smooth import PoseExpressionSmoother


def run_synthetic_video(model: MorphableModel, n_frames: int = 150, seed: int = 0,
                        noise_px: float = 1.5, fps: float = 25.0,
                        smoother: PoseExpressionSmoother | None = None,
                        identity_views: int = 10, amplitude: float = 1.0
                        ) -> dict[str, float]:
    """Fit a synthetic clip frame by frame (identity from a joint fit of evenly spaced
    frames, as ``facefit video`` does) and report jitter and error, raw and smoothed."""
    _, frames = make_motion(model, n_frames, seed, noise_px, fps, amplitude=amplitude)
    step = max(1, n_frames // identity_views)
    identity = fit_same_person(model, [f.view for f in frames[::step]]).shape_coeffs
    ids = frames[0].view.vertex_ids
    if smoother is None:
        smoother = PoseExpressionSmoother(pivot=model.vertices(identity, ids=ids).mean(0))
    fitter = FrameFitter(model, identity, smoother)
    raw, smooth, truth, observed = [], [], [], []
    for i, f in enumerate(frames):
        r = fitter.fit(f.view, i / fps)
        for pose, expr, out in ((r.raw_pose, r.raw_expression, raw),
                                (r.pose, r.expression, smooth)):
            out.append(pose.project(model.vertices(identity, expr, ids=ids))[0])
        truth.append(f.clean_px)
        observed.append(f.view.points_px)
    t = np.array(truth)
    out: dict[str, float] = {}
    for name, tracks in (("input", observed), ("raw", raw), ("smoothed", smooth)):
        out[f"{name}_accel_px"], out[f"{name}_error_px"] = jitter_metrics(np.array(tracks), t)
    out["truth_accel_px"] = jitter_metrics(t, t)[0]
    return out
