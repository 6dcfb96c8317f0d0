"""The identity of a clip: one shape for every frame of a video of one person.

`clip_identity` fits it from frames spread over the clip, the way `facefit.same_person` fits
several photos: a joint landmark fit (shared shape, per-frame pose and expression,
`facefit.fit.multi_image.fit_same_person`), then optionally a joint photometric refinement
of a few keyframes (shared shape and albedo, per-frame pose, expression and light;
`facefit.fit.photometric.refine_photometric_multi`). Landmarks alone move the shape little
from the mean face on cross-model renders (`facefit.eval.shape_clip`); the refinement is
where the shading of several head poses pins the identity down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera
from facefit.fit.multi_image import (
    ViewPoints,
    default_landmark_sigma,
    fit_same_person,
    view_from_face,
)
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel

IDENTITY_REFINES = ("none", "photometric")
"""How the clip's identity is fitted (``refine``, ``facefit video --refine``)."""


@dataclass(frozen=True, eq=False)
class ClipIdentity:
    """The identity of a clip.

    Attributes:
        shape_coeffs: (S,) float32 the identity (refined when ``keyframes`` > 0).
        landmark_shape_coeffs: (S,) float32 the joint landmark fit's identity.
        views: frames with a face used by the landmark fit.
        keyframes: frames used by the photometric refinement (0: not refined).
        camera: the camera model the identity was fitted with, the one the clip's frames
            are fitted with (of several candidates, the one whose refinement explained the
            keyframes best).
    """

    shape_coeffs: np.ndarray
    landmark_shape_coeffs: np.ndarray
    views: int
    keyframes: int = 0
    camera: Camera = field(default_factory=Camera)


def landmark_sigma_of(model: MorphableModel) -> float:
    """The landmark prior frames of ``model`` are fitted with (as single photos)."""
    return default_landmark_sigma(face_model(model).kind)


def clip_identity(model: MorphableModel, detector: object, frames: Iterable[np.ndarray],
                  max_views: int = 24, refine: str = "none", keyframes: int = 6,
                  iterations: int | None = None, camera: Camera | Sequence[Camera] | None = None
                  ) -> ClipIdentity | None:
    """The identity of ``frames`` (a subsample of the clip; at most ``max_views`` frames with
    a face are used, evenly spread), or None when no frame has a face. ``refine``
    ``"photometric"``: then a joint photometric refinement of ``keyframes`` of those frames,
    evenly spread, of ``iterations`` steps (None: the joint refinement's default,
    `facefit.fit.photometric.PhotometricConfig.iterations`).
    ``camera``: every frame's camera model (scaled orthographic when None; a perspective
    camera is fitted and refined with its focal length and principal point held), or several
    candidates (`facefit.fit.camera.camera_candidates`): the landmark identity is the first's,
    the photometric refinement is run with each and the one that explains the keyframes best
    is kept (`facefit.fit.photometric.best_refinement`; `ClipIdentity.camera`)."""
    if refine not in IDENTITY_REFINES:
        raise ValueError(f"refine must be one of {IDENTITY_REFINES}, got {refine!r}")
    keep_images = refine == "photometric"
    faces: list[FaceLandmarks | None] = []
    images: list[np.ndarray] = []
    for frame in frames:
        found = detector.detect(np.ascontiguousarray(frame), max_faces=1)  # type: ignore[attr-defined]
        faces.append(found[0] if found else None)
        if found and keep_images:
            images.append(np.ascontiguousarray(frame))
    return identity_of_faces(model, faces, max_views, images if keep_images else None,
                             keyframes, iterations, detector, camera)


def identity_of_faces(model: MorphableModel, faces: Iterable[FaceLandmarks | None],
                      max_views: int = 24, images: list[np.ndarray] | None = None,
                      keyframes: int = 6, iterations: int | None = None,
                      detector: object | None = None,
                      camera: Camera | Sequence[Camera] | None = None
                      ) -> ClipIdentity | None:
    """`clip_identity` of frames already detected: ``faces`` (each sampled frame's first face,
    None where it has none); ``images``, the frames with a face, for a photometric refinement
    (None: landmarks alone). The refinement starts, as a photo's (`facefit.same_person`),
    from the joint landmark fit of the keyframes' faces as
    `facefit.detect.network.refinement_face` gives them for ``detector`` (the network's
    reading of a face `auto` gave MediaPipe's points); without a ``detector``, or when no
    keyframe's face changes, from the landmark fit's own keyframe fits. ``camera``: as
    `clip_identity`'s."""
    sigma = landmark_sigma_of(model)
    kept = [f for f in faces if f is not None]
    if not kept:
        return None
    images = images or []
    keep_images = bool(images)
    if len(kept) > max_views:
        keep = np.linspace(0, len(kept) - 1, max_views).round().astype(int)
        kept = [kept[i] for i in keep]
        images = [images[i] for i in keep] if keep_images else images
    cams = ([Camera()] if camera is None else [camera] if isinstance(camera, Camera)
            else list(camera))
    views: list[ViewPoints] = [view_from_face(model, f, sigma) for f in kept]
    multi = fit_same_person(model, views, camera=cams[0])
    lm_shape = np.asarray(multi.shape_coeffs, np.float32)
    if not keep_images or keyframes <= 0:
        return ClipIdentity(lm_shape, lm_shape, len(views), camera=cams[0])
    from facefit.fit.photometric import PhotometricConfig, best_refinement

    ids = np.unique(np.linspace(0, len(views) - 1, min(keyframes, len(views))).round()
                    .astype(int))
    first = None
    if detector is not None:
        from facefit.detect.network import refinement_faces

        first = refinement_faces(detector, [images[i] for i in ids],  # type: ignore[arg-type]
                                 [kept[i] for i in ids])
    starts = []
    for k, cam in enumerate(cams):
        if first is not None:  # the keyframes' faces read anew, fitted jointly
            starts.append(fit_same_person(model, [view_from_face(model, f, sigma)
                                                  for f in first], camera=cam).fits)
        else:  # the keyframes' fits of the joint landmark fit of every view
            joint = multi if k == 0 else fit_same_person(model, views, camera=cam)
            starts.append([joint.fits[i] for i in ids])
    k, res = best_refinement(model, starts, [images[i] for i in ids],
                             config=PhotometricConfig(iterations=iterations))
    return ClipIdentity(np.asarray(res.shape_coeffs, np.float32), lm_shape, len(views), len(ids),
                        cams[k])
