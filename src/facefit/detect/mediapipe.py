"""Faces and 468 dense landmarks from MediaPipe's bundled models, run with LiteRT.

Uses the ``.tflite`` files that ship inside the ``mediapipe==0.10.14`` wheel (extracted into
facefit's data folder by `facefit.assets`, or read from an installed package folder, without
importing ``mediapipe``) and runs them with ``ai-edge-litert``:

* BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile
  GPUs", 2019): the short-range model (128×128) for faces large in the photo and the
  full-range model (192×192) for small ones, both on every photo (`MediaPipeDetector._blazeface`);
* the Face Mesh landmark model (Kartynnik et al., "Real-time Facial Surface Geometry from
  Monocular Video on Mobile GPUs", 2019): 468 3D points on a rotated square crop, run twice
  (the second crop is re-centred on the first landmarks, as MediaPipe's tracker does).

When no detector fires (profile faces defeat BlazeFace), MTCNN (`facefit.detect.mtcnn`, trained
on turned heads too) proposes boxes; a box is a face when MTCNN's mirror-checked score clears
``profile_score`` or the landmark model's face-presence score on it clears ``profile_presence``.
When MTCNN finds nothing (or is not installed), the landmark model is run on a crop of the
whole image and then on crops re-centred from its own landmarks; its face-presence
score decides whether a face was found. Running the models directly, rather than through
``mp.solutions``, is what makes this fallback possible: the solution graph only landmarks
what its own detector found.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facefit import assets
from facefit.detect.base import FaceLandmarks, box_iou
from facefit.detect.mtcnn import MTCNNDetector, MTCNNUnavailable

SCHEME = "mediapipe468"
_LANDMARK_INPUT = 192
_ROI_SCALE = 1.5  # MediaPipe's crop is 1.5× the face box (detection or landmark box)
EYE_IDS = (33, 263)  # subject's right and left outer eye corners in the 468 layout


class DetectorUnavailable(RuntimeError):
    """The MediaPipe model files or the LiteRT runtime are missing."""


def _model_dir() -> Path:
    """facefit's data folder (`facefit.assets`), else an installed ``mediapipe`` package."""
    found = assets.find("mediapipe", [_SHORT.file, _FULL.file, _MESH_FILE])
    if found is not None:
        return found
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(f"MediaPipe model files not found: {assets.INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "modules"


def tflite_interpreter(path: Path) -> Any:
    """A single-threaded LiteRT interpreter of the ``.tflite`` file ``path``, tensors allocated
    (`DetectorUnavailable` when the file or the runtime is missing)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - dependency declared in pyproject
        raise DetectorUnavailable("LiteRT runtime missing: pip install ai-edge-litert") from exc
    if not path.is_file():
        raise DetectorUnavailable(f"{path}: MediaPipe model file missing")
    with _quiet_stderr():  # LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate"
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
    return it


@contextlib.contextmanager
def _quiet_stderr():
    """Silence native-library chatter on file descriptor 2 for the duration of the block."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@dataclass(frozen=True)
class _DetectorSpec:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # per stride layer, MediaPipe's SSD config (2 when scales interpolate)
    min_score: float


_SHORT = _DetectorSpec("face_detection/face_detection_short_range.tflite", 128,
                       (8, 16, 16, 16), 2, 0.5)
_FULL = _DetectorSpec("face_detection/face_detection_full_range_sparse.tflite", 192, (4,), 1, 0.6)
_MESH_FILE = "face_landmark/face_landmark.tflite"
# A full-range BlazeFace box overlapping a short-range one by more than this IoU is the same
# face (the two models' boxes of one face differ in size and centre, BOX68_FROM).
RANGE_OVERLAP = 0.3
# Faces in turned photos (`MediaPipeDetector._upright`): BlazeFace finds most faces upside
# down or on their side but reads them wrongly (an upside-down face as an upright one, eye
# keypoints swapped, so the mesh is cropped the wrong way up), scoring them lower than it
# scores the same face in the photo turned upright. On AFLW2000-3D dev (validation only) the
# short-range model scores 1,011 upright faces at most 0.076 higher turned by 180°, and 373
# of the 399 turned-over faces it finds (every second photo turned by 180°) 0.1 or more
# higher turned back; 398 of those 399 score under 0.85 against 209 of the 1,011 upright.
# So a photo whose short-range faces score under FLIP_CHECK_BELOW (or that has none) is read
# turned by a quarter, a half and three quarters too, and a face that scores FLIP_MARGIN
# more in one of them, and at least FLIP_MIN_SCORE (the 5th percentile of upright faces'
# scores), is taken from the best; a photo without a face takes the turned photos' faces
# that score FLIP_MIN_SCORE. Profiles are what the bar keeps out: two faceless dev photos
# hold turned boxes at 0.57 and 0.6 (profiles rolled 84° and more), a synthetic profile at
# -86° of yaw scores 0.53 upright and 0.63 turned over.
FLIP_CHECK_BELOW = 0.85
FLIP_MARGIN = 0.1
FLIP_MIN_SCORE = 0.75

# A detector's box [x0, y0, x1, y1] -> the box of the face's 68 iBUG landmarks: (centre
# shift x, y, width, height) in units of the detector box's side sqrt(w * h). Medians over 400
# train-300w faces (each 256 px crop scaled by 1.3 into a 450 px canvas, its detection of
# highest IoU with the ground-truth 68-point box; interquartile ranges 0.03-0.12 of a side).
BOX68_FROM = {"blazeface_short": (-0.007, 0.046, 0.936, 0.912),
              "blazeface_full": (-0.004, 0.084, 0.879, 0.859),
              "mtcnn": (-0.002, 0.146, 0.891, 0.875)}


def detector_box68(box: np.ndarray, detector: str, quarters: int = 0) -> np.ndarray:
    """(4,) float32 estimate of the 68-landmark box of a face from the (4,) box [x0, y0, x1,
    y1] of ``detector`` (a key of `BOX68_FROM`); ``quarters``: the face stands upright in the
    photo turned anticlockwise by that many quarter turns (`_Detection.quarters`), so the
    box's shift towards the chin turns with it."""
    b = np.asarray(box, np.float64)
    dx, dy, w, h = BOX68_FROM[detector]
    for _ in range(quarters % 4):  # a vector of the turned photo in the photo: (u, v) -> (-v, u)
        dx, dy, w, h = -dy, dx, h, w
    side = np.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1e-12))
    c = (b[:2] + b[2:]) / 2 + side * np.array([dx, dy])
    half = side * np.array([w, h]) / 2
    return np.r_[c - half, c + half].astype(np.float32)


def _ssd_anchors(spec: _DetectorSpec) -> np.ndarray:
    """(A, 2) anchor centres in [0, 1], in the order of the model's outputs: for each run of
    layers with the same stride, row-major over the feature map, anchors innermost."""
    centres = []
    i = 0
    while i < len(spec.strides):
        stride, n = spec.strides[i], 0
        while i < len(spec.strides) and spec.strides[i] == stride:
            n += spec.anchors_per_layer
            i += 1
        fm = int(np.ceil(spec.size / stride))
        ys, xs = np.mgrid[0:fm, 0:fm]
        c = np.stack([(xs + 0.5) / fm, (ys + 0.5) / fm], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(c, n, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


@dataclass
class _Detection:
    box: np.ndarray  # (4,) x0 y0 x1 y1 px
    keypoints: np.ndarray  # (6, 2) px: right eye, left eye, nose, mouth, right ear, left ear
    score: float
    quarters: int = 0  # found in the photo turned by this many quarter turns (`_upright`)

    def turned_back(self, quarters: int, width: int, height: int) -> _Detection:
        """This detection of the photo turned anticlockwise by ``quarters`` x 90° (`np.rot90`)
        in the photo itself (``width`` x ``height`` px), with its `quarters`."""
        pts = np.vstack([self.box.reshape(2, 2), self.keypoints]).astype(np.float64)
        for q in range(quarters, 0, -1):  # undo one turn: (u, v) -> (w - 1 - v, u)
            w = (width, height)[(q - 1) % 2]  # the width before turn q
            pts = np.column_stack([w - 1 - pts[:, 1], pts[:, 0]])
        box = np.concatenate([pts[:2].min(0), pts[:2].max(0)])
        return _Detection(box, pts[2:], self.score, quarters % 4)


def _strongest(dets: list[_Detection], iou: float = 0.3) -> list[_Detection]:
    """``dets`` best first, each dropped that overlaps a better one by more than ``iou``
    (one face found in several turned photos counts once)."""
    out: list[_Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if not out or box_iou(d.box, np.stack([o.box for o in out])).max() <= iou:
            out.append(d)
    return out


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray,
                  iou_thresh: float = 0.3) -> list[_Detection]:
    """MediaPipe-style weighted non-maximum suppression: overlapping candidates are averaged,
    weighted by score, instead of discarded."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (box_iou(boxes[i], boxes) >= iou_thresh)
        group[i] = True
        w = scores[group] / scores[group].sum()
        out.append(_Detection((boxes[group] * w[:, None]).sum(0),
                              (kps[group] * w[:, None, None]).sum(0), float(scores[i])))
        alive &= ~group
    return out


class _BlazeFace:
    def __init__(self, spec: _DetectorSpec, model_dir: Path) -> None:
        self.spec = spec
        self.it = tflite_interpreter(model_dir / spec.file)
        inp = self.it.get_input_details()[0]
        self.input_index = inp["index"]
        outs = sorted(self.it.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self.reg_index, self.cls_index = outs[0]["index"], outs[1]["index"]
        self.anchors = _ssd_anchors(spec)

    def __call__(self, image: np.ndarray) -> list[_Detection]:
        h, w = image.shape[:2]
        side = max(h, w)
        n = self.spec.size
        # letterbox: centre the image on a square, scale to the model input
        scale = n / side
        ox, oy = (side - w) / 2, (side - h) / 2
        m = np.array([[scale, 0, ox * scale], [0, scale, oy * scale]], np.float32)
        inp = cv2.warpAffine(image, m, (n, n), flags=cv2.INTER_AREA if scale < 1 else
                             cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        self.it.set_tensor(self.input_index,
                           (inp.astype(np.float32)[None] / 127.5 - 1.0))
        self.it.invoke()
        reg = self.it.get_tensor(self.reg_index)[0]
        logit = self.it.get_tensor(self.cls_index)[0, :, 0].astype(np.float64)
        logit = np.clip(logit, -100, 100)
        score = 1.0 / (1.0 + np.exp(-logit))
        keep = score >= self.spec.min_score
        if not keep.any():
            return []
        reg, score, anc = reg[keep] / n, score[keep], self.anchors[keep]
        cx, cy = reg[:, 0] + anc[:, 0], reg[:, 1] + anc[:, 1]
        bw, bh = reg[:, 2], reg[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        kps = reg[:, 4:16].reshape(-1, 6, 2) + anc[:, None, :]
        # back to image pixels
        boxes = boxes * side - np.array([ox, oy, ox, oy])
        kps = kps * side - np.array([ox, oy])
        return _weighted_nms(boxes, kps, score)


@dataclass(frozen=True)
class Roi:
    """A rotated square crop: centre (px), side (px), rotation (rad, image plane)."""

    cx: float
    cy: float
    size: float
    angle: float

    def to_crop(self, n: int) -> np.ndarray:
        """(2, 3) affine map from image pixels to crop pixels (n × n)."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = n / self.size
        # rotate by -angle about the centre, scale, move the centre to n/2
        a = np.array([[c, s], [-s, c]]) * k
        t = np.array([n / 2, n / 2]) - a @ np.array([self.cx, self.cy])
        return np.hstack([a, t[:, None]]).astype(np.float64)


def roi_from_points(points: np.ndarray, left: np.ndarray, right: np.ndarray) -> Roi:
    """Square crop around ``points`` (px), rotated so that ``right``→``left`` is horizontal
    (``right``/``left``: the subject's right and left eye, px), 1.5× the rotated box."""
    d = left - right
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # image → upright frame
    p = points @ rot.T
    lo, hi = p.min(0), p.max(0)
    centre = ((lo + hi) / 2) @ rot
    size = float(max(hi - lo)) * _ROI_SCALE
    return Roi(float(centre[0]), float(centre[1]), size, angle)


class MediaPipeDetector:
    """Faces and 468 landmarks (MediaPipe Face Mesh), with a whole-image fallback.

    Args:
        min_presence: face-presence score of the landmark model needed to accept a face
            that a detector found.
        fallback_presence: the score needed for a face found only by the crop search (the
            landmark model scores profile faces low; a lower bar finds them, less accurately).
        refine_passes: extra landmark passes on a crop re-centred on the previous landmarks.
        fallback: landmark a whole-image crop when no detector finds a face.
        profile: ask MTCNN for boxes when BlazeFace finds nothing (skipped when its weights
            or torch are missing).
        profile_score: MTCNN score that makes a box a face on its own (the landmark model
            scores profiles low); 0.75 was chosen on AFLW2000-3D dev misses and background crops.
        profile_presence: the landmark model's presence score that accepts any other MTCNN box.
        search_check: MTCNN's mirror-checked O-Net score (`MTCNNDetector.verify`) that a face
            found by the crop search needs (the landmark model alone calls some smooth colourful
            textures faces).
        doubt_check: the O-Net score (as ``search_check``) that keeps a BlazeFace detection
            whose mesh presence is under ``min_presence`` (`_confirmed`): 0.45, about the 5th
            percentile of its score on such true detections of train-aflw21 profiles.
    """

    scheme = SCHEME

    def __init__(self, min_presence: float = 0.5, refine_passes: int = 1,
                 fallback: bool = True, fallback_presence: float = 0.5, profile: bool = True,
                 profile_score: float = 0.75, profile_presence: float = 0.5,
                 search_check: float = 0.3, doubt_check: float = 0.45) -> None:
        d = _model_dir()
        self._short = _BlazeFace(_SHORT, d)
        self._full = _BlazeFace(_FULL, d)
        self._mesh = tflite_interpreter(d / _MESH_FILE)
        outs = self._mesh.get_output_details()
        self._mesh_in = self._mesh.get_input_details()[0]["index"]
        self._mesh_pts = next(o["index"] for o in outs if o["shape"][-1] == 1404)
        self._mesh_flag = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self.min_presence = min_presence
        self.refine_passes = refine_passes
        self.fallback = fallback
        self.fallback_presence = fallback_presence
        self._lock = threading.Lock()  # LiteRT interpreters are not re-entrant
        self.profile_score = profile_score
        self.profile_presence = profile_presence
        self.search_check = search_check
        self.doubt_check = doubt_check
        self._profile_wanted = profile
        self._profile_loaded: MTCNNDetector | None = None

    @property
    def _profile(self) -> MTCNNDetector | None:
        """MTCNN, loaded on first use: most photos never need it, and loading it imports
        torch (about 1 s per process), which a JSON-only run would otherwise pay."""
        if self._profile_wanted and self._profile_loaded is None:
            self._profile_wanted = False  # one try: missing weights or torch stay missing
            with contextlib.suppress(MTCNNUnavailable):
                self._profile_loaded = MTCNNDetector(
                    thresholds=(0.4, 0.3, 0.3), min_face_frac=0.08, mirror_search=True,
                    mirror_check=True)
        return self._profile_loaded

    # -- landmark model -------------------------------------------------------------
    def _landmarks(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, np.ndarray, float]:
        """(468, 2) px, (468,) depth px, presence score of the face mesh on ``roi``."""
        n = _LANDMARK_INPUT
        m = roi.to_crop(n)
        k = n / roi.size
        src, m_src = image, m
        if k < 0.5:  # big face: sample from a smaller copy to avoid aliasing
            f = int(np.floor(np.log2(0.5 / k))) + 1
            src = image
            for _ in range(f):
                src = cv2.pyrDown(src)
            sx = image.shape[1] / src.shape[1]
            sy = image.shape[0] / src.shape[0]
            m_src = m @ np.diag([sx, sy, 1.0])
        crop = cv2.warpAffine(src, m_src, (n, n), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        self._mesh.set_tensor(self._mesh_in, crop.astype(np.float32)[None] / 255.0)
        self._mesh.invoke()
        raw = self._mesh.get_tensor(self._mesh_pts).reshape(-1, 3)
        flag = float(self._mesh.get_tensor(self._mesh_flag).ravel()[0])
        presence = 1.0 / (1.0 + np.exp(-np.clip(flag, -100, 100)))
        inv = cv2.invertAffineTransform(m)
        pts = raw[:, :2].astype(np.float64) @ inv[:, :2].T + inv[:, 2]
        depth = raw[:, 2] / k
        return pts.astype(np.float32), depth.astype(np.float32), presence

    def _track(self, image: np.ndarray, roi: Roi, passes: int):
        pts, depth, presence = self._landmarks(image, roi)
        for _ in range(passes):
            roi = roi_from_points(pts, pts[EYE_IDS[1]], pts[EYE_IDS[0]])
            pts, depth, presence = self._landmarks(image, roi)
        return pts, depth, presence

    def _search(self, image: np.ndarray) -> Roi:
        """Best crop for the landmark model when no detector fired: the whole image and a
        grid of smaller crops, ranked by the landmark model's face-presence score."""
        h, w = image.shape[:2]
        side = float(max(h, w))
        rois = [Roi(w / 2, h / 2, side, 0.0)]
        for frac, steps in ((0.7, 2), (0.5, 3)):
            size = side * frac
            xs = np.linspace(size / 2, max(w - size / 2, size / 2), steps)
            ys = np.linspace(size / 2, max(h - size / 2, size / 2), steps)
            rois += [Roi(float(x), float(y), size, 0.0) for y in ys for x in xs]
        best, best_p = rois[0], -1.0
        for roi in rois:
            pts, _, presence = self._landmarks(image, roi)
            if presence > best_p:
                best, best_p = roi_from_points(pts, pts[EYE_IDS[1]], pts[EYE_IDS[0]]), presence
        return best

    def _blazeface(self, image: np.ndarray, max_faces: int) -> list[tuple[_Detection, str]]:
        """Up to ``max_faces`` of BlazeFace's faces of both ranges, each with its `BOX68_FROM`
        key: the short-range model's (faces large in the photo), then the full-range model's
        that overlap none of them (IoU at most `RANGE_OVERLAP`; not run when the short-range
        model found ``max_faces`` already). The short-range model misses the small faces of a
        photo that also holds a large one (a face 56 px high beside a 300 px one), the
        full-range one misses large faces (on AFLW2000-3D dev it finds 874 of the 1,011 faces
        the short-range one finds, and none that it misses), so a photo needs both. On those
        1,024 photos the merge adds one detection; it costs about 4 ms (192 px input)."""
        short = self._upright(image, self._short(image))[:max_faces]
        found = [(d, "blazeface_short") for d in short]
        if len(found) >= max_faces:
            return found
        full = self._full(image)
        if short:
            taken = np.stack([d.box for d in short])
            full = [d for d in full if box_iou(d.box, taken).max() <= RANGE_OVERLAP]
        return (found + [(d, "blazeface_full") for d in full])[:max_faces]

    def _upright(self, image: np.ndarray, short: list[_Detection]) -> list[_Detection]:
        """Short-range detections ``short`` with faces upside down or on their side read the
        right way up: when one scores under `FLIP_CHECK_BELOW` (or there are none), the photo
        turned by 90°, 180° and 270° is read too; the best face there scoring `FLIP_MARGIN`
        more than such a box it overlaps (IoU over `RANGE_OVERLAP`) and at least
        `FLIP_MIN_SCORE` replaces it, and when the photo had no face the turned faces scoring
        `FLIP_MIN_SCORE` are taken (the strongest of those that overlap, `_strongest`). About
        3 ms, on photos with a face in doubt only."""
        if short and min(d.score for d in short) >= FLIP_CHECK_BELOW:
            return short
        h, w = image.shape[:2]
        turned = [t for q in (1, 2, 3) for t in (
            d.turned_back(q, w, h) for d in self._short(np.ascontiguousarray(np.rot90(image, q))))
            if t.score >= FLIP_MIN_SCORE]
        if not short:
            return _strongest(turned)
        out = []
        for d in short:
            better = [] if d.score >= FLIP_CHECK_BELOW else [
                t for t in turned if t.score >= d.score + FLIP_MARGIN
                and box_iou(t.box, d.box) > RANGE_OVERLAP]
            out.append(max(better, key=lambda t: t.score) if better else d)
        return sorted(out, key=lambda d: -d.score)

    def _landmark_rois(self, image: np.ndarray,
                       rois: list[tuple[Roi, float | None, np.ndarray | None]],
                       passes: int, min_presence: float,
                       doubted: list[tuple[int, FaceLandmarks]] | None = None,
                       found_turned: Sequence[bool] = ()) -> list[FaceLandmarks]:
        """Faces landmarked on ``rois`` (crop, detection score or None, the detector's box
        as a 68-landmark box or None) whose presence score is at least ``min_presence``; the
        others go to ``doubted`` (index in ``rois``, face) when it is given. ``found_turned``:
        per roi, the face's `FaceLandmarks.found_turned` (default False)."""
        faces: list[FaceLandmarks] = []
        for i, (roi, det_score, det_box) in enumerate(rois):
            pts, depth, presence = self._track(image, roi, passes)
            box = np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
            score = presence if det_score is None else min(det_score, presence)
            face = FaceLandmarks(box, float(score), pts, depth, SCHEME, det_box,
                                 bool(found_turned[i]) if found_turned else False)
            if presence < min_presence:
                if doubted is not None:
                    doubted.append((i, face))
                continue
            if faces and max(box_iou(box, np.stack([f.box for f in faces]))) > 0.5:
                continue  # two detections of the same face
            faces.append(face)
        return faces

    def _confirmed(self, image: np.ndarray, doubted: list[tuple[int, FaceLandmarks]],
                   boxes: np.ndarray, faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
        """The ``doubted`` faces (BlazeFace detections whose mesh presence fell short; their
        (N, 4) BlazeFace ``boxes``) that MTCNN's mirror-checked O-Net (`MTCNNDetector.verify`)
        scores at least `doubt_check` and that overlap none of ``faces``. The mesh calls
        10 % of BlazeFace's true detections on train-aflw21 profiles no face (45 of 418 at
        yaw 39-106°; 150 crops a yaw bucket in 450 px canvases, seed 3), and 44 of the 45
        score 0.45 or more with O-Net (5th percentile 0.47); dropping them loses the face of
        a photo where another face passes, or where MTCNN finds nothing."""
        if not doubted or self._profile is None:
            return []
        ver = self._profile.verify(image, boxes[[i for i, _ in doubted]])
        out: list[FaceLandmarks] = []
        for (_, f), v in zip(doubted, ver, strict=True):
            taken = [g.detector_box if g.detector_box is not None else g.box
                     for g in faces + out]
            if v >= self.doubt_check and not (
                    taken and max(box_iou(f.detector_box, np.stack(taken))) > 0.3):
                out.append(f)
        return out

    def _profile_faces(self, image: np.ndarray, max_faces: int) -> list[FaceLandmarks]:
        """MTCNN's boxes (square, upright crops; from a locally equalised copy too when none
        passes) that pass `profile_score` or, failing that, `profile_presence`."""
        found = self._profile.detect(image, max_faces)
        if not any(f.score >= self.profile_score for f in found):  # dark, low-contrast photos
            from facefit.detect.mtcnn import equalize
            found = sorted(found + self._profile.detect(equalize(image), max_faces),
                           key=lambda f: -f.score)
        rois = [(roi_from_points(f.box.reshape(2, 2), np.array([1.0, 0.0]), np.zeros(2)),
                 f.score, detector_box68(f.box, "mtcnn")) for f in found]
        sure = [r for r in rois if r[1] >= self.profile_score]
        passes = max(self.refine_passes, 2)
        return (self._landmark_rois(image, sure, passes, 0.0) or self._landmark_rois(
            image, [r for r in rois if r[1] < self.profile_score], passes, self.profile_presence))

    # -- public -----------------------------------------------------------------------
    def track(self, image_rgb: np.ndarray, previous_px: np.ndarray, passes: int = 0
              ) -> tuple[np.ndarray, np.ndarray, float]:
        """Follow a face from the previous frame: the landmark model run on the crop that the
        previous frame's 468 points ``previous_px`` (468, 2) give (as MediaPipe's own
        tracker does), ``passes`` more times on its own result's crop. Returns (468, 2)
        float32 points px, (468,) float32 relative depth px and the face-presence score
        in [0, 1] (a lost track scores low). Thread-safe, like `detect`."""
        p = np.asarray(previous_px, np.float32)
        roi = roi_from_points(p, p[EYE_IDS[1]], p[EYE_IDS[0]])
        with self._lock:
            return self._track(np.ascontiguousarray(image_rgb), roi, passes)

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        """Faces in an (H, W, 3) uint8 RGB image with their 468 landmarks, best first."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} "
                             f"{image_rgb.dtype}")
        image = np.ascontiguousarray(image_rgb)
        with self._lock:
            dets = self._blazeface(image, max_faces)
            doubted: list[tuple[int, FaceLandmarks]] = []
            faces = self._landmark_rois(
                image, [(roi_from_points(d.box.reshape(2, 2), d.keypoints[1], d.keypoints[0]),
                         d.score, detector_box68(d.box, kind, d.quarters)) for d, kind in dets],
                self.refine_passes, self.min_presence, doubted,
                [d.quarters != 0 for d, _ in dets])
            if not faces and self._profile is not None:
                faces = self._profile_faces(image, max_faces)
            if doubted:  # BlazeFace's boxes that the mesh doubts, O-Net confirms
                faces += self._confirmed(image, doubted,
                                         np.stack([d.box for d, _ in dets]), faces)
            if not faces and self.fallback:
                faces = self._landmark_rois(image, [(self._search(image), None, None)],
                                            max(self.refine_passes, 2), self.fallback_presence)
                if faces and self._profile is not None:  # MTCNN's O-Net: is it a face?
                    faces = [f for f in faces if self._profile.verify(
                        image, f.box[None])[0] >= self.search_check]
        return faces[:max_faces]
