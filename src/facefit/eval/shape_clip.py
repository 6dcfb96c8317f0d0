"""Shape from a video clip of one person: the identity `facefit video` fits, scored NoW-style.

The clip rows of the shape benchmark (`facefit.eval.shape`). A subject is a neutral scan and
a rendered clip of it: one light, background and framing for the whole clip, the head
turning smoothly (yaw a sine through ±``max_yaw`` over the clip, pitch a slower ±8° sine)
while the face talks (the mouth opening and closing, one more expression coming and going),
pixel noise on every frame (``focal_px``: a close-up, a webcam's, by a pinhole camera of
that focal length, `facefit.synthetic.photos.close_up`). The identity is what ``facefit
video`` takes as the clip's identity before it tracks the frames
(`facefit.video.identity.clip_identity`): a joint landmark fit of frames spread over the
clip, and with ``--refine photometric`` a joint photometric refinement of a few of them
(``camera``: with the camera ``facefit video --camera`` names). Data: ``ict`` (identities
of the ICT Face Model, a different model and topology from the fitted one) or ``in-model``
(random faces of the fitted model).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from facefit.eval.shape import (
    ShapeReport,
    ShapeRow,
    ShapeSubject,
    ict_albedo,
    ict_render_setup,
    now_landmarks,
)
from facefit.model.morphable_model import MorphableModel

CLIP_METHODS = ("mean face", "clip identity", "clip photometric")
ICT_TALK = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "mouthFunnel")


def clip_poses(frames: int, max_yaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames,) yaw, pitch and roll in degrees: yaw one full sine period through
    ±``max_yaw``, pitch half a period of ±8°, roll ±3°."""
    t = np.linspace(0.0, 1.0, frames, endpoint=False)
    return (max_yaw * np.sin(2 * np.pi * t), 8.0 * np.sin(np.pi * t + 0.5),
            3.0 * np.sin(2 * np.pi * t + 1.0))


def render_clip(vertices: Callable[[int], np.ndarray], triangles: np.ndarray,
                albedo: np.ndarray, landmark_ids: np.ndarray, rng: np.random.Generator,
                frames: int = 50, size: int = 256, max_yaw: float = 30.0,
                noise: float = 0.01, focal_px: float | None = None
                ) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """Render ``frames`` uint8 (size, size, 3) frames of the model-frame head
    ``vertices(i)`` (V, 3, mm) with ``triangles`` and per-vertex ``albedo`` (V, 3): one
    SH light, background and framing (`facefit.synthetic.photos.frame_face` at the frontal
    pose), the pose of `clip_poses`, scaled orthographic or (``focal_px``) by the pinhole
    camera of that focal length that sees the model origin where the scaled orthographic
    one does, at its scale (`facefit.synthetic.photos.close_up`). Returns the frames and
    their yaws (degrees)."""
    import cv2
    import torch

    from facefit.fit.camera import rotation_from_euler
    from facefit.fit.core.camera import ScaledOrthographicCamera
    from facefit.fit.result import image_vertices
    from facefit.render import differentiable as dr
    from facefit.synthetic.photos import close_up, frame_face, random_light

    first = np.asarray(vertices(0), np.float64)
    cam0 = frame_face(first, landmark_ids, np.eye(3), size, 0.6, rng)
    sh, _ = random_light(rng)
    bg = cv2.resize(rng.uniform(0.1, 0.9, (6, 6, 3)).astype(np.float32), (size, size),
                    interpolation=cv2.INTER_CUBIC)
    tri = np.asarray(triangles)
    alb, light = torch.as_tensor(albedo, dtype=torch.float32), torch.as_tensor(sh)
    out = []
    yaws, pitches, rolls = clip_poses(frames, max_yaw)
    for i in range(frames):
        x = np.asarray(vertices(i), np.float64)
        rot = rotation_from_euler(yaws[i], pitches[i], rolls[i])
        cam = ScaledOrthographicCamera(rot, cam0.scale, cam0.translation)
        verts, view = cam.image_points(x), None
        if focal_px is not None:  # shaded by view-frame normals, as the refinement does
            verts = image_vertices(close_up(cam, focal_px, size), x)
            view = torch.as_tensor(x @ rot.T, dtype=torch.float32)
        color, cover = dr.render(torch.as_tensor(verts, dtype=torch.float32), tri, size, size,
                                 alb, light, view_vertices=view)
        img = np.where(cover.numpy()[..., None], color.numpy(), bg)
        img = img + rng.normal(0, noise, img.shape)
        out.append(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
    return out, tuple(float(y) for y in yaws)


def _talk(frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frames,) mouth opening in [0, 1] (a 3-5 Hz syllable rhythm at 25 fps, raised to
    stay mostly small) and (frames,) a second expression's bump in [0, 1]."""
    t = np.arange(frames) / 25.0
    f = rng.uniform(3.0, 5.0)
    mouth = np.clip(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)), 0, 1) ** 2
    centre = rng.uniform(0.3, 0.7) * frames
    bump = np.exp(-0.5 * ((np.arange(frames) - centre) / (0.15 * frames)) ** 2)
    return mouth, bump


def ict_clip_subject(ict: object, rng: np.random.Generator, frames: int = 50,
                     max_yaw: float = 30.0, size: int = 256, focal_px: float | None = None,
                     textured: bool = True) -> ShapeSubject:
    """A random ICT identity (N(0, 1) on every identity mode): its neutral face region as
    the scan and a talking, head-turning clip of it (`render_clip`; ``focal_px``: close-ups
    by a pinhole camera; ``textured`` False: in one grey, `facefit.eval.shape.ict_albedo`)."""
    setup = ict_render_setup(ict)
    ident = rng.normal(0, 1, ict.num_identity).clip(-3, 3)  # type: ignore[attr-defined]
    neutral = ict.vertices(ident).astype(np.float64)  # type: ignore[attr-defined]
    albedo = ict_albedo(ict, rng, textured)
    names = list(ict.expression_names)  # type: ignore[attr-defined]
    mouth, bump = _talk(frames, rng)
    jaw = names.index("jawOpen") if "jawOpen" in names else None
    pool = [names.index(n) for n in ICT_TALK[1:] if n in names]
    other = int(rng.choice(pool)) if pool else None
    amp = rng.uniform(0.2, 0.4)

    def vertices(i: int) -> np.ndarray:
        w = np.zeros(len(names))
        if jaw is not None:
            w[jaw] = 0.35 * mouth[i]
        if other is not None:
            w[other] = amp * bump[i]
        return ict.vertices(ident, w)  # type: ignore[attr-defined]

    lm = ict.landmark_ids["ibug68"]  # type: ignore[attr-defined]
    images, yaws = render_clip(vertices, setup["triangles"], albedo, lm, rng, frames, size,
                               max_yaw, focal_px=focal_px)
    return ShapeSubject(neutral[setup["face_ids"]], now_landmarks(neutral, lm), images, None,
                        yaws)


def in_model_clip_subject(model: MorphableModel, rng: np.random.Generator, frames: int = 50,
                          max_yaw: float = 30.0, size: int = 256, features: bool = True,
                          focal_px: float | None = None) -> ShapeSubject:
    """A random face of ``model`` (shape N(0, 1)) and a talking, head-turning clip of it:
    the first expression mode follows the mouth rhythm, one more mode comes and goes. With
    ``features`` its smooth albedo has brows, lips and eyes painted on
    (`facefit.synthetic.photos.paint_features`, as the photo subjects; the same random draws
    either way); ``focal_px``: close-ups by a pinhole camera (`render_clip`)."""
    from facefit.synthetic.photos import paint_features, smooth_albedo

    shape = rng.normal(0, 1, model.num_shape).clip(-3, 3).astype(np.float32)
    albedo = smooth_albedo(model, rng)
    if features:
        albedo = paint_features(model, albedo)
    mouth, bump = _talk(frames, rng)
    other = int(rng.integers(1, max(model.num_expression, 2)))
    sign = rng.choice([-1.0, 1.0], 2)

    def vertices(i: int) -> np.ndarray:
        e = np.zeros(model.num_expression, np.float32)
        if model.num_expression:
            e[0] = sign[0] * 1.2 * mouth[i]
        if model.num_expression > 1:
            e[other] = sign[1] * 0.8 * bump[i]
        return model.vertices(shape, e)

    truth = model.vertices(shape).astype(np.float64)
    lm = model.landmark_ids["ibug68"]
    images, yaws = render_clip(vertices, model.triangles, albedo, lm, rng, frames, size,
                               max_yaw, focal_px=focal_px)
    return ShapeSubject(truth, now_landmarks(truth, lm), images, truth, yaws)


def evaluate_clip_shape(model: MorphableModel, subjects: Callable[[int], ShapeSubject], n: int,
                        data: str, frames: int, identity_frames: int = 24, keyframes: int = 6,
                        iterations: int | None = None, detector: object | None = None,
                        progress: bool = True, seed: int = 0, max_yaw: float = 30.0,
                        camera: str = "scaled_orthographic", focal_px: float | None = None,
                        renders: str = "") -> ShapeReport:
    """The mean-face, clip-identity and (``keyframes`` > 0) clip-photometric rows on ``n``
    clips (``subjects(i)`` makes clip i): the identity ``facefit video`` fits
    (`facefit.video.identity.clip_identity` on ``identity_frames`` frames spread over the
    clip, as `facefit.video.pipeline.track_video` samples them), landmarks only and refined
    photometrically on ``keyframes`` of them (``facefit video --refine photometric``).
    ``camera``, ``focal_px``: the fits' camera (``facefit video --camera --focal-px``; the
    focal length defaults to the frame diagonal); ``renders``: how the clips were taken, for
    the table."""
    from facefit.fit.landmark_fit import camera_sets
    from facefit.video.identity import clip_identity

    if detector is None:
        from facefit.detect.mediapipe import MediaPipeDetector

        detector = MediaPipeDetector()
    methods = CLIP_METHODS if keyframes > 0 else CLIP_METHODS[:2]
    rows = {m: ShapeRow(m) for m in methods}
    for i in range(n):
        subject = subjects(i)
        step = max(1, len(subject.images) // max(identity_frames, 1))
        t0 = time.perf_counter()
        # as `track_video` does: auto without a focal length tries both cameras when refining
        lenses = [s[0] for s in camera_sets(camera, [focal_px],
                                            [subject.images[0].shape[1::-1]], keyframes > 0)]
        ident = clip_identity(model, detector, subject.images[::step], identity_frames,
                              "photometric" if keyframes > 0 else "none", keyframes, iterations,
                              camera=lenses)
        dt = time.perf_counter() - t0
        used = ident.views if ident is not None else 0
        lm_shape = ident.landmark_shape_coeffs if ident is not None else None
        ph_shape = ident.shape_coeffs if ident is not None and ident.keyframes else None
        shapes = {"mean face": None, "clip identity": lm_shape, "clip photometric": ph_shape}
        for m in methods:
            if m != "mean face" and not used:
                rows[m].failures += 1
            rows[m].record(model, shapes[m], subject)
        rows[methods[-1]].seconds += dt
        if ident is not None and ident.keyframes:
            rows["clip photometric"].cameras.append(ident.camera.kind)
        if progress:
            cells = " ".join(f"{m} {rows[m].median_mm[-1]:.3f}" for m in methods)
            print(f"[{i + 1}/{n}] {data} clip of {len(subject.images)} frames, {used} used: "
                  f"{cells} ({dt:.1f} s)", file=sys.stderr, flush=True)
    return ShapeReport(data, 1, n, rows, seed, max_yaw, clip_frames=frames, camera=camera,
                       renders=renders)
