"""Synthetic blink clips with known ground truth: a real face photo whose upper eyelids are
moved down onto the lower ones by a smooth image warp at chosen frames (one eye or both),
with a slight head motion, for checking ``eyeBlinkLeft/Right`` end to end through
``facefit video``.

The warp is driven by the photo's own MediaPipe eyelid points: per image column across an
eye, a band from 0.45 eye widths over the upper lid to 0.6 under the lower one is remapped
(vertically, `cv2.remap`, bilinear) so that at closure ``c`` the upper lid edge comes down
by ``c`` of the way to just under the lower lid points, the opening (and the lower lid
points' 0.15 eye widths under them, where the white still shows) is squeezed out, the lid
skin above is stretched down over it (quadratically: the lid margin keeps its width) and
the skin under the eye follows. The displacement fades out within 0.15 eye widths past the
corners.

What MediaPipe makes of it (examples/astronaut.png, 256 px, and HELEN test faces): its
eye aspect ratio falls by 30-45 % at full closure, not to zero, and a one-eye closure
lowers the other eye's by 15-25 % too; the 68-point network's does not move.

Side convention (ARKit's and MediaPipe's): ``"left"`` is the subject's left eye, which appears
on the image's right (MediaPipe corners 362/263); ``"right"`` the subject's right eye, on
the image's left (corners 33/133).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# MediaPipe 468 eyelid contours, corner to corner (inner corner first, outer last)
_LIDS = {
    "right": {"upper": (133, 173, 157, 158, 159, 160, 161, 246, 33),
              "lower": (133, 155, 154, 153, 145, 144, 163, 7, 33)},
    "left": {"upper": (362, 398, 384, 385, 386, 387, 388, 466, 263),
             "lower": (362, 382, 381, 380, 374, 373, 390, 249, 263)},
}
ABOVE = 0.45  # top of the warped band over the upper lid, in eye widths
BELOW = 0.15  # eye opening under MediaPipe's lower lid points, in eye widths
LASH = 0.05  # upper lid margin hidden when closed, in eye widths


@dataclass(frozen=True)
class Blink:
    """One blink: ``eyes`` ("left", "right" or "both") closed over ``start`` ..
    ``start + length - 1``; the first and last frames half closed, the others fully."""

    start: int
    length: int
    eyes: str

    def closure(self, frame: int) -> float:
        k = frame - self.start
        if k < 0 or k >= self.length:
            return 0.0
        return 0.5 if k in (0, self.length - 1) and self.length > 2 else 1.0

    def closed_frames(self) -> list[int]:
        return [f for f in range(self.start, self.start + self.length)
                if self.closure(f) == 1.0]

    def sides(self) -> tuple[str, ...]:
        return ("left", "right") if self.eyes == "both" else (self.eyes,)


DEFAULT_BLINKS = (Blink(6, 4, "both"), Blink(16, 4, "left"), Blink(26, 4, "right"),
                  Blink(34, 5, "both"))


def eye_warp_maps(shape: tuple[int, int], points: np.ndarray,
                  closure: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 ``cv2.remap`` maps (source x, source y per output pixel) closing each
    eye of ``closure`` ({"left"/"right": c in [0, 1]}) given the face's (468, 2) MediaPipe
    points (pixels)."""
    h, w = shape
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)[:, None]
    dy = np.zeros((h, w))
    for side, c in closure.items():
        if c <= 0:
            continue
        up = points[list(_LIDS[side]["upper"])]
        lo = points[list(_LIDS[side]["lower"])]
        width = float(np.linalg.norm(up[0] - up[-1]))
        ou, ol = np.argsort(up[:, 0]), np.argsort(lo[:, 0])
        u = np.interp(xs, up[ou, 0], up[ou, 1])
        lo_y = np.interp(xs, lo[ol, 0], lo[ol, 1])
        x0, x1 = up[:, 0].min(), up[:, 0].max()
        # horizontal fade: full between the corners, cosine to zero within 0.15 widths
        m = 0.15 * width
        t = np.clip(np.minimum(xs - x0 + m, x1 + m - xs) / m, 0.0, 1.0)
        fade = 0.5 - 0.5 * np.cos(np.pi * t)
        top = u - ABOVE * width
        lo_src = lo_y + BELOW * width  # MediaPipe's lower lid lies above the white's edge
        bot = lo_src + ABOVE * width
        u_new = u + c * (lo_y + 0.5 * BELOW * width - u)  # the upper lid edge, output
        cut = u + c * (lo_src - u)  # source rows [us, cut) vanish
        us = u - c * LASH * width
        # output [top, u_new] <- source [top, us]; (u_new, bot] <- (cut, bot]
        # quadratic in the band so the lid margin keeps its width (slope 1 at u_new) and
        # the stretch goes to the skin above
        a = (ys - top) / np.maximum(u_new - top, 1e-6)
        r = np.minimum((u_new - top) / np.maximum(us - top, 1e-6), 1.9)
        src_hi = top + ((2.0 - r) * a + (r - 1.0) * a * a) * (us - top)
        b = (ys - u_new) / np.maximum(bot - u_new, 1e-6)
        src_lo = cut + b * (bot - cut)
        src = np.where(ys <= u_new, src_hi, src_lo)
        inside = (ys >= top) & (ys <= bot)
        dy += np.where(inside, (src - ys) * fade, 0.0)
    map_x = np.broadcast_to(xs.astype(np.float32), (h, w)).copy()
    map_y = (np.broadcast_to(ys.astype(np.float32), (h, w)) + dy).astype(np.float32)
    return map_x, map_y


def blink_frames(image_rgb: np.ndarray, points: np.ndarray, num_frames: int,
                 blinks: tuple[Blink, ...] = DEFAULT_BLINKS, motion_px: float = 3.0,
                 motion_deg: float = 2.0) -> list[np.ndarray]:
    """``num_frames`` (H, W, 3) uint8 frames of ``image_rgb`` (its (468, 2) MediaPipe
    ``points``) with the eyelids closed as ``blinks`` say and a slow, slight head motion
    (translation up to ``motion_px``, in-plane rotation up to ``motion_deg``)."""
    import cv2

    h, w = image_rgb.shape[:2]
    centre = points.mean(axis=0)
    frames = []
    for f in range(num_frames):
        closure = {"left": 0.0, "right": 0.0}
        for bl in blinks:
            for s in bl.sides():
                closure[s] = max(closure[s], bl.closure(f))
        mx, my = eye_warp_maps((h, w), points, closure)
        img = cv2.remap(image_rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        ph = 2.0 * np.pi * f / max(num_frames, 1)
        rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])),
                                      motion_deg * np.sin(ph), 1.0)
        rot[:, 2] += motion_px * np.array([np.sin(ph), 0.5 * np.sin(2 * ph)])
        frames.append(cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    return frames


def write_blink_clip(path: str | Path, image_rgb: np.ndarray, num_frames: int = 40,
                     blinks: tuple[Blink, ...] = DEFAULT_BLINKS, fps: float = 25.0,
                     detector: object | None = None) -> Path:
    """Write a synthetic blink clip (H.264 mp4, `facefit.video.stream.VideoWriter`) of
    ``image_rgb`` to ``path``; the face is found by MediaPipe (``detector`` or a new
    `facefit.detect.mediapipe.MediaPipeDetector`). Raises ValueError without a face."""
    from facefit.video.stream import VideoWriter

    if detector is None:
        from facefit.detect.mediapipe import MediaPipeDetector

        detector = MediaPipeDetector()
    faces = detector.detect(image_rgb, max_faces=1)  # type: ignore[attr-defined]
    if not faces:
        raise ValueError("write_blink_clip: no face found in the image")
    path = Path(path)
    writer = VideoWriter(path, fps)
    try:
        for frame in blink_frames(image_rgb, np.asarray(faces[0].points_px, np.float64),
                                  num_frames, blinks):
            writer.write(frame)
    finally:
        writer.close()
    return path


def face_crop(image_rgb: np.ndarray, size: int, detector: object | None = None,
              margin: float = 1.8) -> np.ndarray:
    """(size, size, 3) square crop of ``image_rgb`` around its MediaPipe face (``margin``
    times the landmarks' extent), resized: a frame filled by the face, as in talking-head
    clips. Raises ValueError without a face."""
    import cv2

    if detector is None:
        from facefit.detect.mediapipe import MediaPipeDetector

        detector = MediaPipeDetector()
    faces = detector.detect(image_rgb, max_faces=1)  # type: ignore[attr-defined]
    if not faces:
        raise ValueError("face_crop: no face found in the image")
    p = np.asarray(faces[0].points_px, np.float64)
    h, w = image_rgb.shape[:2]
    s = int(min(np.ptp(p, axis=0).max() * margin, h, w))
    x0, y0 = np.clip((p.mean(axis=0) - s / 2).astype(int), 0, [w - s, h - s])
    return cv2.resize(image_rgb[y0:y0 + s, x0:x0 + s], (size, size),
                      interpolation=cv2.INTER_AREA)


def blink_scores(blinks: tuple[Blink, ...], left: np.ndarray, right: np.ndarray,
                 tolerance: int = 1) -> list[dict]:
    """Per blink, how per-frame ``eyeBlinkLeft`` and ``eyeBlinkRight`` curves (NaN where no
    face) respond: for each eye, the peak frame and value within the blink's frames
    ``tolerance`` frames either side, whether the peak falls on the fully closed frames
    (± ``tolerance``), the open-eye level (95th percentile over frames at least 2 frames
    away from any closure of that eye) and the peak over it; ``closes`` says whether the
    eye closes in this blink."""
    n = len(left)
    curves = {"left": np.asarray(left, np.float64), "right": np.asarray(right, np.float64)}
    out = []
    for bl in blinks:
        lo, hi = max(bl.start - tolerance, 0), min(bl.start + bl.length + tolerance, n)
        closed = bl.closed_frames()
        row: dict = {"frames": [bl.start, bl.start + bl.length - 1], "closed": closed,
                     "eyes": bl.eyes}
        for side, c in curves.items():
            near = np.zeros(n, bool)
            for other in blinks:
                if side in other.sides():
                    near[max(other.start - 2, 0):other.start + other.length + 2] = True
            open_p95 = float(np.nanpercentile(c[~near], 95))
            k = lo + int(np.nanargmax(c[lo:hi]))
            row[side] = {"closes": side in bl.sides(), "peak_frame": k,
                         "peak": round(float(c[k]), 3),
                         "on_closed": min(abs(k - f) for f in closed) <= tolerance,
                         "open_p95": round(open_p95, 3),
                         "ratio": round(float(c[k]) / max(open_p95, 1e-3), 2)}
        out.append(row)
    return out
