"""The end-to-end API: image → detections → landmarks → fit → texture.

``facefit.reconstruct(image)`` is the one-call entry point; `Reconstructor` keeps the model
and the detector loaded between calls.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facefit.detect.base import FaceLandmarks, LandmarkDetector
from facefit.fit.camera import camera_candidates, checked_camera
from facefit.fit.photometric.config import IMAGE_LOSSES
from facefit.fit.result import FitResult
from facefit.io.image import ImageInput, exif_focal_px, to_rgb
from facefit.model.morphable_model import MorphableModel

TEXTURE_SIZINGS = ("face", "fixed")
"""How a face's texture side is chosen (``texture_sizing``, ``--texture-sizing``)."""


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """One reconstructed face of one image.

    Attributes:
        face: the detection and its landmarks (pixels of the input image).
        fit: the fitted model (pose, coefficients, dense vertices in image space).
        texture: (T, T, 3) uint8 UV texture (row 0 is v = 1, the top of the UV square),
            or None when texturing was skipped.
        vertex_colors: (V, 3) uint8 per-vertex colours sampled from the photo, or None.
        timings_ms: wall-clock milliseconds per stage: ``detect``, ``fit``, ``texture``
            (and ``photometric`` when refined).
        photometric: the photometric refinement (`facefit.fit.photometric.PhotometricResult`:
            lighting, albedo, errors) when ``refine="photometric"``, else None; ``fit`` is then
            its refined fit.
    """

    face: FaceLandmarks
    fit: FitResult
    texture: np.ndarray | None
    vertex_colors: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    photometric: Any = None


class Reconstructor:
    """Holds a model and a detector; `reconstruct` runs the whole pipeline on one image.

    Args:
        model: the morphable model; the default (BFM 2009 via 3DDFA) when None.
        detector: a `LandmarkDetector`; MediaPipe's face detector and face mesh when None.
        camera: ``"auto"`` (default): the perspective camera where the photo's focal length
            is known (``focal_px``, or the photo's EXIF 35 mm equivalent: files and PIL
            images, `facefit.io.image.exif_focal_px`), else the scaled orthographic one
            (`facefit.fit.camera.photo_camera`), or with ``refine="photometric"`` whichever
            of the two (the pinhole camera at the image diagonal) explains the photo better
            (`reconstruct`); ``"scaled_orthographic"``
            (``"orthographic"`` is accepted for it) or ``"perspective"``: that camera for
            every photo.
        focal_px: focal length in pixels for the perspective camera; default: the photo's
            own (EXIF), else the image diagonal (about a 53° diagonal field of view; with
            ``"auto"``, the scaled orthographic camera instead). Refused with the scaled
            orthographic camera, which has none.
        texture_size: largest side of the UV texture in texels (0 disables texturing: only
            textured outputs need it, `facefit.io.export.needs_texture`).
        texture_sizing: ``"face"`` (default): each face's texture side is the power of two
            nearest to its texel density in the photo, from 256 up to ``texture_size``
            (`facefit.texture.extract.face_texture_size`: a 300 px face gets 256, and costs
            about half of a 512 one); ``"fixed"``: always ``texture_size``.
        refine: ``"none"`` or ``"photometric"`` (analysis by synthesis after the landmark
            fit, `facefit.fit.photometric.refine_photometric`; either camera).
        image_loss: the photometric pixel loss: ``"l2"``, ``"huber"`` or ``"gradient"``
            (used only with ``refine="photometric"``).
        photometric_iterations: optimisation steps of the refinement (idem); None: the
            refinement's default (`facefit.fit.photometric.PhotometricConfig.iterations`:
            `ONE_PHOTO_ITERATIONS` for one photo, `JOINT_ITERATIONS` for the joint
            refinement of ``--same-person``).
        progress: show a progress bar during the refinement.
        landmarks: each face's landmark source (`facefit.detect.network`): ``"mediapipe"``
            (MediaPipe's dense mesh), ``"network"`` (facefit's regression network, 68 points)
            or ``"auto"`` (default; per face: MediaPipe under
            `facefit.detect.network.YAW_THRESHOLD` degrees of yaw, the network from
            `facefit.detect.network.NETWORK_ONLY`, the same 30 degrees; MediaPipe for
            FLAME, bilinear and ICT models, whose jaw/outline fits were measured on its dense
            points); ``detector`` (or MediaPipe's) finds the faces either way.
        vertex_colors: sample per-vertex colours with the texture (``vertex_colors`` of each
            `Reconstruction`; only the PLY writer uses them: ``facefit reconstruct`` skips them,
            about 2 ms a face, unless ``ply`` is asked for).
    """

    def __init__(
        self,
        model: MorphableModel | None = None,
        detector: LandmarkDetector | None = None,
        camera: str = "auto",
        focal_px: float | None = None,
        texture_size: int = 512,
        refine: str = "none",
        image_loss: str = "l2",
        photometric_iterations: int | None = None,
        progress: bool = False,
        landmarks: str = "auto",
        vertex_colors: bool = True,
        texture_sizing: str = "face",
    ) -> None:
        from facefit.model import load_default_model

        camera = checked_camera(camera, focal_px, auto=True)
        if refine not in ("none", "photometric"):
            raise ValueError(f"refine must be 'none' or 'photometric', got {refine!r}")
        if image_loss not in IMAGE_LOSSES:
            raise ValueError(f"image_loss must be one of {IMAGE_LOSSES}, got {image_loss!r}")
        if photometric_iterations is not None and photometric_iterations < 1:
            raise ValueError(f"photometric_iterations must be at least 1, got "
                             f"{photometric_iterations}")
        if texture_size < 0 or texture_size == 1:
            raise ValueError(f"texture_size must be 0 (no texture) or at least 2, got "
                             f"{texture_size}")
        if texture_sizing not in TEXTURE_SIZINGS:
            raise ValueError(f"texture_sizing must be one of {TEXTURE_SIZINGS}, got "
                             f"{texture_sizing!r}")
        self.model = model if model is not None else load_default_model()
        check_model(self.model)
        if detector is None:
            from facefit.detect.mediapipe import MediaPipeDetector

            detector = MediaPipeDetector()
        from facefit.detect.network import landmark_detector

        detector, landmarks = landmark_detector(detector, landmarks, self.model.kind)
        self.landmarks = landmarks
        self.detector = detector
        self.camera = camera
        self.focal_px = focal_px
        self.texture_size = texture_size
        self.texture_sizing = texture_sizing
        self.refine = refine
        self.image_loss = image_loss
        self.photometric_iterations = photometric_iterations
        self.progress = progress
        self.vertex_colors = vertex_colors

    def photo_focal_px(self, image: ImageInput, focal_px: float | None = None
                       ) -> float | None:
        """The focal length (px) known for ``image``: ``focal_px``, else the
        reconstructor's, else the photo's EXIF one (files and PIL images,
        `facefit.io.image.exif_focal_px`); None when unknown, and always for the scaled
        orthographic camera."""
        if self.camera == "scaled_orthographic":
            return None
        focal = self.focal_px if focal_px is None else focal_px
        if focal is None and not isinstance(image, np.ndarray):
            focal = exif_focal_px(image)  # type: ignore[arg-type]
        return focal

    def reconstruct(self, image: ImageInput, max_faces: int = 8,
                    focal_px: float | None = None) -> list[Reconstruction]:
        """Reconstruct every face (at most ``max_faces``, best detection first) in ``image``.

        ``image`` is what ``facefit reconstruct`` reads, converted the same way
        (`facefit.io.image.to_rgb`): a path, a PIL image, or an (H, W) greyscale, (H, W, 3)
        RGB or (H, W, 4) RGBA array of uint8, uint16 or float samples. ``focal_px``: this
        photo's focal length (default `photo_focal_px`; with ``"auto"`` a given one picks
        the perspective camera). With ``"auto"``, no known focal length and
        ``refine="photometric"``, each face is fitted and refined with the scaled orthographic
        camera and with a pinhole camera at the image diagonal, and the refinement that
        explains the photo better is kept (`facefit.fit.camera.camera_candidates`,
        `facefit.fit.photometric.best_refinement`; twice the refinement's time).

        Raises:
            ValueError: ``max_faces`` below 1, a ``focal_px`` that is not a positive number
                or with the scaled orthographic camera, or an image that cannot be used
                (`facefit.io.image.ImageError`, ``"PATH: problem"``, for a file).
        """
        from facefit.fit.face_fit import fit_face, with_landmark_outputs

        check_max_faces(max_faces)
        checked_camera(self.camera, focal_px, auto=True)
        cameras = camera_candidates(self.camera, self.photo_focal_px(image, focal_px),
                                    self.refine == "photometric")
        image_rgb = to_rgb(image)
        t0 = time.perf_counter()
        faces = self.detector.detect(image_rgb, max_faces=max_faces)
        t_detect = (time.perf_counter() - t0) * 1e3 / max(len(faces), 1)
        out = []
        for face in faces:
            t1 = time.perf_counter()
            fits = [fit_face(self.model, face, image_rgb.shape[1::-1], camera=camera,
                             focal_px=focal) for camera, focal in cameras]
            fit = fits[0]
            photometric, t_photo, landmark_fit = None, 0.0, None
            if self.refine == "photometric":
                from facefit.detect.network import refinement_starts
                from facefit.fit.photometric import PhotometricConfig, best_refinement

                tp = time.perf_counter()
                starts = refinement_starts(self.model, self.detector, image_rgb, face, fits)
                _, joint = best_refinement(
                    self.model, [[s] for s in starts], [image_rgb], config=PhotometricConfig(
                        iterations=self.photometric_iterations, image_loss=self.image_loss,
                        progress=self.progress))
                photometric = joint.results[0]
                landmark_fit, fit = fits[0], photometric.fit
                t_photo = (time.perf_counter() - tp) * 1e3
            # the 68-point outputs: the landmark fit's (of `auto`'s points), refined or not,
            # of the first camera (auto trying both: the scaled orthographic one, whose points
            # the convention offsets were learned on; the same points as without refining)
            fit = with_landmark_outputs(self.model, fit, face, landmark_fit)
            t2 = time.perf_counter()
            texture, colors = None, None
            if self.texture_size:
                from facefit.texture.extract import extract_texture, face_texture_size

                size = self.texture_size
                if self.texture_sizing == "face":
                    size = face_texture_size(self.model, fit.verts_px, size)
                crop, verts = crop_to_face(image_rgb, fit.verts_px, max_side=2 * size)
                texture, colors = extract_texture(self.model, verts, crop, size=size,
                                                  vertex_colors=self.vertex_colors)
            t3 = time.perf_counter()
            timings = {"detect": t_detect, "fit": (t2 - t1) * 1e3 - t_photo,
                       "texture": (t3 - t2) * 1e3}
            if photometric is not None:
                timings["photometric"] = t_photo
            out.append(Reconstruction(face, fit, texture, colors, timings, photometric))
        return out


def crop_to_face(image_rgb: np.ndarray, verts_px: np.ndarray, margin_px: int = 2,
                 max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image_rgb`` under the projected face (its vertices' bounding box plus
    ``margin_px``, clipped to the image) and ``verts_px`` (V, 3) moved into it.

    Texture sampling inside the box sees the same pixels as on the whole photo, so per-face
    work scales with the face, not the photo. The crop is a view, not a copy, unless it is
    longer than ``max_side``: then it is shrunk (area averaging, which also prefilters the
    texture samples) to that side, and the vertices (x, y and depth) with it; a 1,500-pixel
    face textured at 512x512 needs no more than about 1,024 pixels.
    """
    from facefit.render.raster import finite_bounds

    v = np.asarray(verts_px, np.float32)
    h, w = image_rgb.shape[:2]
    lo, hi = finite_bounds(v)
    if lo is None:
        return image_rgb, v
    lo = np.floor(lo).astype(int) - margin_px
    hi = np.ceil(hi).astype(int) + margin_px + 1
    x0, y0 = int(np.clip(lo[0], 0, w - 1)), int(np.clip(lo[1], 0, h - 1))
    x1, y1 = int(np.clip(hi[0], x0 + 1, w)), int(np.clip(hi[1], y0 + 1, h))
    crop = image_rgb[y0:y1, x0:x1]
    moved = v - np.array([x0, y0, 0], np.float32)
    side = max(crop.shape[:2])
    if max_side is not None and side > max_side:
        import cv2

        f = max_side / side
        size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        # pixel centres: x' + 0.5 = (x + 0.5) * (new size / old size), per axis
        sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
        moved = np.column_stack([(moved[:, 0] + 0.5) * sx - 0.5, (moved[:, 1] + 0.5) * sy - 0.5,
                                 moved[:, 2] * (sx + sy) / 2]).astype(np.float32)
    return crop, moved


def check_max_faces(max_faces: int) -> None:
    """Raise ValueError unless ``max_faces`` is an integer of at least 1 (``--max-faces``)."""
    if isinstance(max_faces, bool) or not isinstance(max_faces, int | np.integer):
        raise ValueError(f"max_faces must be an integer, got {max_faces!r}")
    if max_faces < 1:
        raise ValueError(f"max_faces must be at least 1, got {max_faces}")


def check_model(model: Any) -> None:
    """Raise ValueError unless ``model`` has the 68 iBUG landmark vertex ids (``ibug68``)
    that every fit, the JSON/NPZ landmarks and the video tracker use: a model without them
    is refused before any image is processed."""
    ids = getattr(model, "landmark_ids", {}).get("ibug68")
    if ids is None or len(ids) != 68:
        found = "none" if ids is None else f"{len(ids)}"
        raise ValueError(f"model {getattr(model, 'name', '?')}: needs 68 iBUG landmark vertex "
                         f"ids ('ibug68'), found {found} (add them with "
                         "facefit.model.load_model(path, landmarks=FILE))")


_CACHE: OrderedDict[tuple[Any, ...], Reconstructor] = OrderedDict()
_CACHE_SIZE = 4
_SHARED: dict[str, Any] = {}


def reconstruct(
    image: ImageInput,
    max_faces: int = 8,
    *,
    model: MorphableModel | None = None,
    camera: str = "auto",
    focal_px: float | None = None,
    refine: str = "none",
    image_loss: str = "l2",
    photometric_iterations: int | None = None,
    texture_size: int = 512,
    landmarks: str = "auto",
    texture_sizing: str = "face",
) -> list[Reconstruction]:
    """Reconstruct every face in ``image``: ``facefit reconstruct`` as one call.

    ``image`` is anything `Reconstructor.reconstruct` takes (a path, a PIL image, a
    greyscale/RGB/RGBA array of uint8, uint16 or float samples). The other arguments are
    `Reconstructor`'s (the options of ``facefit reconstruct``: ``--max-faces``, ``--model``,
    ``--camera``, ``--focal-px``, ``--refine``, ``--image-loss``,
    ``--photometric-iterations``, ``--texture-size``, ``--landmarks``,
    ``--texture-sizing``). The model and the
    detector are loaded on the first call and kept for later ones. Write the results with
    `facefit.export`.
    """
    check_max_faces(max_faces)
    key = (id(model), checked_camera(camera, focal_px, auto=True), focal_px, refine,
           image_loss, photometric_iterations, texture_size, landmarks, texture_sizing)
    recon = _CACHE.get(key)
    if recon is None or (model is not None and recon.model is not model):
        if "detector" not in _SHARED:  # loaded once, shared by every option set
            from facefit.detect.mediapipe import MediaPipeDetector

            _SHARED["detector"] = MediaPipeDetector()
        recon = Reconstructor(  # model None: the default model, loaded once (cached)
            model=model, detector=_SHARED["detector"], camera=camera, focal_px=focal_px,
            texture_size=texture_size, refine=refine, image_loss=image_loss,
            photometric_iterations=photometric_iterations, landmarks=landmarks,
            texture_sizing=texture_sizing)
        _CACHE[key] = recon
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return recon.reconstruct(image, max_faces=max_faces)
