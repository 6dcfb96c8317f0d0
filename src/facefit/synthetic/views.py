"""Synthetic landmark data with known ground truth, for tests and benchmarks: one identity
seen under several poses and expressions (photos), or moving smoothly over time (video)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from facefit.fit.camera import rotation_from_euler
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.fit.multi_image import ViewPoints
from facefit.model.morphable_model import MorphableModel


@dataclass(frozen=True, eq=False)
class SyntheticView:
    """One synthetic image's landmarks plus the truth behind them."""

    view: ViewPoints
    pose: ScaledOrthographicCamera
    expression: np.ndarray
    clean_px: np.ndarray  # (K, 2) noiseless landmark projections


def landmark_vertices(model: MorphableModel) -> np.ndarray:
    """The vertices that carry landmarks: the dense MediaPipe ones when the model has them,
    else its 68 iBUG ids."""
    from facefit.fit.correspondence import correspondence_for

    try:
        return correspondence_for(model, "mediapipe468").vertex_ids
    except ValueError:
        return np.asarray(model.landmark_ids["ibug68"], np.int64)


def make_view(model: MorphableModel, shape: np.ndarray, expression: np.ndarray,
              yaw: float, pitch: float, roll: float, rng: np.random.Generator,
              noise_px: float = 2.0, scale: float = 1.5, centre: tuple[float, float] = (320, 240),
              depth_noise_px: float = 6.0, ids: np.ndarray | None = None) -> SyntheticView:
    """Project the model's landmark vertices under a pose, with Gaussian pixel noise (and a
    noisier relative depth, as a detector like MediaPipe gives)."""
    ids = landmark_vertices(model) if ids is None else ids
    pose = ScaledOrthographicCamera(rotation_from_euler(yaw, pitch, roll), scale,
                                    np.asarray(centre, np.float64))
    xy, depth = pose.project(model.vertices(shape, expression, ids=ids).astype(np.float64))
    noisy = xy + rng.normal(scale=noise_px, size=xy.shape)
    d = depth + rng.normal(scale=depth_noise_px, size=depth.shape) + 500.0
    size = float(np.sqrt(np.prod(noisy.max(0) - noisy.min(0))))
    view = ViewPoints(noisy, ids, np.ones(len(ids)), 0.02 * size, depth_px=d, depth_weight=1.0)
    return SyntheticView(view, pose, np.asarray(expression, np.float32), xy)


def make_photo_set(model: MorphableModel, n_views: int = 6, seed: int = 0,
                   noise_px: float = 2.0, expression_scale: float = 1.0
                   ) -> tuple[np.ndarray, list[SyntheticView]]:
    """(true shape, views): one random identity under ``n_views`` random poses (yaw within
    ±60°, pitch ±20°, roll ±15°) and random expressions."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=model.num_shape).astype(np.float32)
    views = []
    for _ in range(n_views):
        expr = (expression_scale * rng.normal(size=model.num_expression)).astype(np.float32)
        views.append(make_view(model, shape, expr, rng.uniform(-60, 60), rng.uniform(-20, 20),
                               rng.uniform(-15, 15), rng, noise_px=noise_px,
                               scale=rng.uniform(1.2, 2.0)))
    return shape, views


def neutral_error_mm(model: MorphableModel, shape: np.ndarray, truth: np.ndarray) -> float:
    """Dense RMS distance (mm) between two neutral identities, centroids aligned."""
    a = model.vertices(shape).astype(np.float64)
    b = model.vertices(truth).astype(np.float64)
    d = (a - a.mean(0)) - (b - b.mean(0))
    return float(np.sqrt((d**2).sum(1).mean()))


def make_motion(model: MorphableModel, n_frames: int = 200, seed: int = 0,
                noise_px: float = 1.5, fps: float = 25.0, common_noise_px: float = 1.0,
                amplitude: float = 1.0
                ) -> tuple[np.ndarray, list[SyntheticView]]:
    """(true shape, frames): a known head moving smoothly (sinusoids of 0.05-0.3 Hz in yaw,
    pitch, roll, translation and expression) seen through noisy landmarks, like a tracked
    video: independent noise per landmark (``noise_px``) plus a shift common to all
    landmarks of a frame (``common_noise_px``), as a tracker's moving crop gives.
    ``amplitude`` 1 sweeps the head (yaw ±35°, translation ±40 px); 0.3 is a talking head."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=model.num_shape).astype(np.float32)
    ke = model.num_expression
    freq = rng.uniform(0.05, 0.3, size=ke + 5)
    phase = rng.uniform(0, 2 * np.pi, size=ke + 5)
    frames = []
    for t in range(n_frames):
        s = t / fps
        wave = np.sin(2 * np.pi * freq * s + phase)
        expr = (1.2 * wave[:ke]).astype(np.float32)
        yaw, pitch, roll = amplitude * np.array([35, 12, 8]) * wave[ke:ke + 3]
        centre = (320 + amplitude * 40 * wave[ke + 3], 240 + amplitude * 25 * wave[ke + 4])
        v = make_view(model, shape, expr, yaw, pitch, roll, rng, noise_px=noise_px,
                      scale=1.6, centre=centre)
        shift = rng.normal(scale=common_noise_px, size=2)
        frames.append(SyntheticView(replace(v.view, points_px=v.view.points_px + shift),
                                    v.pose, v.expression, v.clean_px))
    return shape, frames
