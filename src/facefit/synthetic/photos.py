"""Synthetic photos of random model faces with known pose, SH lighting and albedo.

Ground truth for the photometric refinement (`facefit.fit.photometric`): a random face of a
morphable model rendered with `facefit.render.differentiable.render` under a scaled
orthographic camera (or, with a focal length, a pinhole camera) and second-order SH lighting,
over a random smooth background with pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from facefit.fit.camera import rotation_from_euler
from facefit.fit.core.camera import PerspectiveCamera, ScaledOrthographicCamera
from facefit.fit.result import image_vertices
from facefit.model.morphable_model import MorphableModel
from facefit.render import differentiable as dr


def frame_face(vertices: np.ndarray, landmark_ids: np.ndarray, rotation: np.ndarray, size: int,
               face_fraction: float, rng: np.random.Generator) -> ScaledOrthographicCamera:
    """Scaled orthographic camera that shows a face (model-frame ``vertices`` (V, 3), turned by
    ``rotation``) about ``face_fraction`` of a ``size`` px square image wide, its landmarks'
    centre within 5 % of the image centre (one uniform draw from ``rng``)."""
    x = np.asarray(vertices, np.float64)
    width = np.ptp(x[landmark_ids][:, 0])
    scale = face_fraction * size / width / 1.3
    t = np.array([size / 2, size / 2]) + rng.uniform(-0.05, 0.05, 2) * size
    centred = ScaledOrthographicCamera(rotation, scale, np.zeros(2))
    t -= centred.project(x[landmark_ids])[0].mean(axis=0)
    return ScaledOrthographicCamera(rotation, scale, t)


def close_up(camera: ScaledOrthographicCamera, focal_px: float, size: int
             ) -> PerspectiveCamera:
    """The pinhole camera of focal length ``focal_px`` (principal point at the centre of a
    ``size`` px square image) that sees the model origin where ``camera`` does, at the same
    scale: at the distance ``focal_px / scale`` mm."""
    return PerspectiveCamera.at_scale(camera.rotation, camera.scale, camera.translation,
                                      focal_px, np.full(2, (size - 1) / 2.0))


@dataclass(frozen=True, eq=False)
class SyntheticPhoto:
    """A rendered face and its ground truth.

    Attributes:
        image: (H, W, 3) uint8 photo.
        verts_px: (V, 3) float32 true image-space vertices (x, y px, depth px;
            `facefit.fit.result.image_vertices`).
        shape_coeffs, expression_coeffs: the true coefficients.
        rotation: (3, 3) model → view; scale px/mm; translation (2,) px (perspective: scale
            is focal length over the model origin's distance, translation (3,) mm, the model
            origin in the view frame, `facefit.fit.core.camera.PerspectiveCamera`).
        sh_coeffs: (9, 3) true lighting; light_dir: (3,) its dominant direction (view frame).
        albedo: (V, 3) float32 true per-vertex albedo.
        landmarks: (68, 2) float32 projections of the model's ibug68 vertices.
        focal_px: the pinhole camera's focal length (principal point at the image centre),
            or None: scaled orthographic.
    """

    image: np.ndarray
    verts_px: np.ndarray
    shape_coeffs: np.ndarray
    expression_coeffs: np.ndarray
    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    sh_coeffs: np.ndarray
    light_dir: np.ndarray
    albedo: np.ndarray
    landmarks: np.ndarray
    focal_px: float | None = None


def smooth_albedo(model: MorphableModel, rng: np.random.Generator, base=(0.72, 0.53, 0.44),
                  amplitude: float = 0.12, blobs: int = 12) -> np.ndarray:
    """(V, 3) smooth, nearly symmetric random albedo: ``base`` times a sum of Gaussian blobs
    (radius 15-40 mm) on the mean face, mirrored left/right, plus a 20 % asymmetric part."""
    x = model.mean.astype(np.float64)
    mirror = np.asarray(model.mirror_ids)
    field = np.zeros((len(x), 3))
    for _ in range(blobs):
        c = x[rng.integers(len(x))]
        r = rng.uniform(15, 40)
        amp = rng.normal(0, 1, 3) * np.array([1.0, 0.8, 0.8]) + rng.normal(0, 1)
        field += np.exp(-((x - c) ** 2).sum(1) / (2 * r * r))[:, None] * amp
    field = 0.8 * (field + field[mirror]) / 2 + 0.2 * field
    field /= max(np.abs(field).max(), 1e-9)
    return np.clip(np.asarray(base) * (1 + amplitude * field), 0, 1).astype(np.float32)


def near_polyline(points: np.ndarray, line: np.ndarray, radius: float) -> np.ndarray:
    """(N,) soft mask in [0, 1] of (N, 3) ``points`` near the polyline through (M, 3)
    ``line`` (mm): 1 within ``radius`` / 2, falling linearly to 0 at 1.5 ``radius``."""
    from scipy.spatial import cKDTree

    p = np.asarray(line, np.float64)
    t = np.linspace(0, 1, 8, endpoint=False)[:, None, None]  # 8 points per segment
    dense = (p[:-1][None] * (1 - t) + p[1:][None] * t).reshape(-1, 3)
    d, _ = cKDTree(np.concatenate([dense, p[-1:]])).query(np.asarray(points, np.float64))
    return np.clip(1.5 - d / radius, 0.0, 1.0)


def paint_features(model: MorphableModel, albedo: np.ndarray) -> np.ndarray:
    """(V, 3) float32 ``albedo`` with the features a landmark detector looks for, painted on
    the mean face (the default model has no eyeballs, and a smooth skin albedo has no
    brows): darker brows, reddish lips, whitish sclera inside each eye's lid contour and a
    dark iris (radius 5.5 mm) at its centre. Deterministic, so subjects keep their random
    draws. Without them MediaPipe put the eyes and brows 7-15 px too low on 5 of 8 in-model
    renders (seed 0), and the landmark fit's pitch 8-12° and scale 5-12 % off."""
    x = model.mean.astype(np.float64)
    lm = np.asarray(model.landmark_ids["ibug68"])
    alb = np.asarray(albedo, np.float64).copy()
    tone = alb.mean(0)
    brow = np.maximum(near_polyline(x, x[lm[17:22]], 4.0), near_polyline(x, x[lm[22:27]], 4.0))
    alb *= 1 - 0.55 * brow[:, None]
    lip = np.maximum(near_polyline(x, x[lm[np.r_[48:60, 48]]], 3.0),
                     near_polyline(x, x[lm[np.r_[60:68, 60]]], 3.0))[:, None] * 0.35
    alb = alb * (1 - lip) + lip * np.array([0.55, 0.25, 0.25]) * tone / tone.mean()
    for ids in (np.arange(36, 42), np.arange(42, 48)):
        c = x[lm[ids]]
        centre = c.mean(0)
        a = np.linalg.norm(c[3, :2] - c[0, :2]) / 2  # half the corner distance
        b = (abs(c[1, 1] - c[5, 1]) + abs(c[2, 1] - c[4, 1])) / 4  # half the lid opening
        d = x[:, :2] - centre[:2]
        front = np.abs(x[:, 2] - centre[2]) < 8.0
        eye = front & ((d[:, 0] / a) ** 2 + (d[:, 1] / b) ** 2 < 1.0)
        alb[eye] = 0.8
        alb[eye & (np.linalg.norm(d, axis=1) < 5.5)] = np.array([0.25, 0.2, 0.15])
    return np.clip(alb, 0, 1).astype(np.float32)


def random_light(rng: np.random.Generator, min_deg: float = 20.0, max_deg: float = 50.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(9, 3) SH coefficients of an ambient + directional light (slightly tinted, with small
    second-order terms) whose direction is ``min_deg``-``max_deg`` off the viewing axis;
    and that unit direction (view frame)."""
    theta = np.deg2rad(rng.uniform(min_deg, max_deg))
    phi = rng.uniform(0, 2 * np.pi)
    d = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    tint = 1 + rng.uniform(-0.08, 0.08, 3)
    sh = np.zeros((9, 3))
    sh[0] = dr.AMBIENT_L00 * 0.55 * tint
    sh[1:4] = 1.6 * np.array([d[1], d[2], d[0]])[:, None] * tint
    sh[4:] = rng.normal(0, 0.05, (5, 1)) * tint
    return sh.astype(np.float32), d


def render_turned_face(model: MorphableModel, vertices: np.ndarray, rotation: np.ndarray,
                       size: int, face_fraction: float, rng: np.random.Generator,
                       background: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """((size, size, 3) uint8 photo, (V, 3) image-space vertices) of model-frame ``vertices``
    (mm) turned by ``rotation`` (`frame_face`), lit by `random_light` with a `smooth_albedo`,
    over a flat grey ``background`` (intensity in [0, 1]): a quick test face."""
    x = np.asarray(vertices, np.float64)
    camera = frame_face(x, model.landmark_ids["ibug68"], rotation, size, face_fraction, rng)
    verts = camera.image_points(x)
    sh, _ = random_light(rng)
    color, cover = dr.render(torch.as_tensor(verts, dtype=torch.float32), model.triangles,
                             size, size, torch.as_tensor(smooth_albedo(model, rng)),
                             torch.as_tensor(sh))
    img = np.where(cover.numpy()[..., None], color.numpy(), background)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), verts


def render_photo(verts: np.ndarray, triangles: np.ndarray, albedo: np.ndarray, size: int,
                 rng: np.random.Generator, noise: float,
                 view_vertices: torch.Tensor | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((size, size, 3) uint8 photo, (9, 3) SH light, (3,) light direction): image-space
    ``verts`` (V, 3) with per-vertex ``albedo`` (V, 3) lit by `random_light`, over a smooth
    random background, plus Gaussian noise of ``noise`` (intensity units). ``view_vertices``:
    camera-frame vertices for a pinhole camera's normals (`facefit.render.differentiable`)."""
    sh, d = random_light(rng)
    color, cover = dr.render(torch.as_tensor(verts, dtype=torch.float32), triangles,
                             size, size, torch.as_tensor(albedo), torch.as_tensor(sh),
                             view_vertices=view_vertices)
    bg = cv2.resize(rng.uniform(0.1, 0.9, (6, 6, 3)).astype(np.float32), (size, size),
                    interpolation=cv2.INTER_CUBIC)
    img = np.where(cover.numpy()[..., None], color.numpy(), bg)
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), sh, d


def make_synthetic_face(model: MorphableModel, rng: np.random.Generator, size: int = 256,
                        max_yaw: float = 30.0, noise: float = 0.01,
                        face_fraction: float = 0.6, shape: np.ndarray | None = None,
                        albedo: np.ndarray | None = None, focal_px: float | None = None
                        ) -> SyntheticPhoto:
    """Render one random face (shape N(0, 0.8²), expression N(0, 0.5²), yaw within
    ±``max_yaw`` degrees) of width ``face_fraction`` × ``size`` with Gaussian noise of
    ``noise`` (intensity units) over a smooth random background. ``shape`` and ``albedo``
    fix the identity (several photos of one person). ``focal_px``: a pinhole camera of that
    focal length instead, the model origin at the distance that gives it the orthographic
    camera's scale (``focal_px`` = ``size``, a face 0.6 of the photo wide: the default
    model's origin, inside the head, 31 cm from the lens, its nose tip 18 cm, a close
    selfie)."""
    alpha = (rng.normal(0, 0.8, model.num_shape).astype(np.float32) if shape is None
             else np.asarray(shape, np.float32))
    beta = rng.normal(0, 0.5, model.num_expression).astype(np.float32)
    rot = rotation_from_euler(rng.uniform(-max_yaw, max_yaw), rng.uniform(-10, 10),
                              rng.uniform(-5, 5))
    x = model.vertices(alpha, beta).astype(np.float64)
    lm = model.landmark_ids["ibug68"]
    camera = frame_face(x, lm, rot, size, face_fraction, rng)
    scale, t = camera.scale, camera.translation
    verts, view = camera.image_points(x), None
    if focal_px is not None:
        pinhole = close_up(camera, focal_px, size)
        t, verts = pinhole.translation, image_vertices(pinhole, x).astype(np.float64)
        view = torch.as_tensor(x @ rot.T, dtype=torch.float32)
    albedo = smooth_albedo(model, rng) if albedo is None else np.asarray(albedo, np.float32)
    image, sh, d = render_photo(verts, model.triangles, albedo, size, rng, noise, view)
    return SyntheticPhoto(image, verts.astype(np.float32), alpha, beta, rot, float(scale), t,
                         sh, d, albedo, verts[lm, :2].astype(np.float32),
                         None if focal_px is None else float(focal_px))


def make_synthetic_photo_set(model: MorphableModel, n_photos: int, seed: int = 0,
                             size: int = 224, max_yaw: float = 45.0
                             ) -> tuple[np.ndarray, list[SyntheticPhoto]]:
    """(true shape, photos): one random identity (shape N(0, 0.8²), one smooth albedo)
    rendered ``n_photos`` times with random pose, expression and lighting."""
    rng = np.random.default_rng(seed)
    shape = rng.normal(0, 0.8, model.num_shape).astype(np.float32)
    albedo = smooth_albedo(model, rng)
    return shape, [make_synthetic_face(model, rng, size=size, max_yaw=max_yaw, shape=shape,
                                       albedo=albedo) for _ in range(n_photos)]


def dense_error_px(verts_a: np.ndarray, verts_b: np.ndarray,
                   ids: np.ndarray | None = None) -> float:
    """Mean 3D distance (px) of two image-space vertex sets (V, 3), depth offsets removed."""
    a = np.asarray(verts_a, np.float64)
    b = np.asarray(verts_b, np.float64)
    if ids is not None:
        a, b = a[ids], b[ids]
    d = a - b
    d[:, 2] -= np.median(d[:, 2])
    return float(np.linalg.norm(d, axis=1).mean())
