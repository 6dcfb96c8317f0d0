"""Data preparation of a photometric refinement: each photo's face crop, face-skin mask,
image pyramid and landmark targets (numpy, then tensors on the refinement's device).

The crop is a square around the fitted 68 landmarks (raised to the forehead) resized to
``size`` px; positions inside it are "crop pixels at the finest level". The face-skin mask is
the face outline (jaw line and brows raised to the forehead) minus the eyes, brows and the
mouth interior, grown to more of the forehead and the cheeks' sides where the colour is the
skin's (`PhotometricConfig.skin_forehead`, ``skin_outline_scale``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from facefit.detect.base import face_outline
from facefit.fit.result import FitResult


def widen(points: np.ndarray, landmarks_68: np.ndarray, scale: float) -> np.ndarray:
    """(N, 2) ``points`` scaled by ``scale`` about the centre of the nose (landmarks 27-35 of
    ``landmarks_68``)."""
    centre = np.asarray(landmarks_68, np.float64)[27:36].mean(0)
    return centre + (np.asarray(points, np.float64) - centre) * scale


def skin_mask(landmarks_68: np.ndarray, height: int, width: int, forehead: float = 0.7,
              outline_scale: float = 1.0) -> np.ndarray:
    """(H, W) bool face-skin mask from 68 iBUG landmarks (pixels): the face outline (jaw line
    and the brows raised to the forehead by ``forehead`` times the nose's length, landmark
    27 to 30) minus the eyes, brows and the mouth interior. ``outline_scale`` > 1 widens the
    jaw line about the nose's centre (landmarks 27-35) towards the ears and under the chin."""
    p = np.asarray(landmarks_68, np.float64)
    mask = np.zeros((height, width), np.uint8)
    outline = face_outline(p, forehead)
    if outline_scale != 1.0:
        outline[:17] = widen(p[:17], p, outline_scale)
    sh = 4  # sub-pixel precision of cv2 polygon drawing
    cv2.fillPoly(mask, [np.round(cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2)
                                 * (1 << sh)).astype(np.int32)], 1, cv2.LINE_8, sh)
    size = float(np.linalg.norm(p[:17].max(0) - p[:17].min(0)))
    thick = max(int(round(size * 0.03)), 1)
    holes = [p[36:42], p[42:48], p[60:68]]
    for poly in holes:
        cv2.fillPoly(mask, [np.round(poly * (1 << sh)).astype(np.int32)], 0, cv2.LINE_8, sh)
        cv2.polylines(mask, [np.round(poly).astype(np.int32)], True, 0, thick)
    for brow in (p[17:22], p[22:27]):
        cv2.polylines(mask, [np.round(brow).astype(np.int32)], False, 0, 2 * thick)
    return mask.astype(bool)


def skin_coloured(image: np.ndarray, skin: np.ndarray, candidates: np.ndarray,
                  sigmas: float = 3.0) -> np.ndarray:
    """(H, W) bool: the ``candidates`` pixels of the (H, W, 3) float ``image`` whose colour
    is the ``skin`` pixels' own: chromaticity (r, g over r + g + b) within ``sigmas`` robust
    standard deviations (at least 0.02) of the skin's median, brightness 0.35-3 times its
    median. Keeps hair, background and shadow out of a mask grown past the landmarks."""
    img = np.asarray(image, np.float32)[..., :3]
    total = img.sum(-1)
    chroma = img[..., :2] / np.maximum(total, 1e-6)[..., None]
    ref, ref_total = chroma[skin], total[skin]
    if len(ref) < 10:
        return np.zeros(skin.shape, bool)
    med = np.median(ref, 0)
    spread = np.maximum(1.4826 * np.median(np.abs(ref - med), 0), 0.02 / sigmas)
    bright = np.median(ref_total)
    return (candidates & (np.abs(chroma - med) <= sigmas * spread).all(-1)
            & (total >= 0.35 * bright) & (total <= 3.0 * bright))


def crop_image(image: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """(size, size, 3) float32 [0, 1]: the square ``box`` (x0, y0, side; input pixels) of an
    (H, W, 3+) uint8 image resized (anti-aliased when shrinking by more than 0.7)."""
    x0, y0, side = box
    k = size / side
    img = image[..., :3].astype(np.float32) / 255.0
    if k < 0.7:  # anti-alias before resampling
        img = cv2.GaussianBlur(img, (0, 0), 0.5 / k)
    m = np.array([[k, 0, (0.5 - x0) * k - 0.5], [0, k, (0.5 - y0) * k - 0.5]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def face_crop_box(landmarks_68: np.ndarray, forehead: float = 0.7, outline_scale: float = 1.0
                  ) -> tuple[float, float, float]:
    """(x0, y0, side) input pixels: the square around 68 landmarks and the forehead above
    the brows, 1.15 times their extent; it holds `skin_mask` with the same ``forehead`` and
    ``outline_scale`` (at least 0.7 and 1)."""
    lm68 = np.asarray(landmarks_68, np.float64)
    outline = lm68 if outline_scale <= 1.0 else widen(lm68, lm68, outline_scale)
    pts = np.concatenate([outline, lm68[17:27] + (lm68[27] - lm68[30]) * max(forehead, 0.7)])
    lo, hi = pts.min(0), pts.max(0)
    side = float((hi - lo).max() * 1.15)
    centre = (lo + hi) / 2
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


@dataclass(frozen=True, eq=False)
class PyramidLevel:
    """One pyramid level of a photo.

    Attributes:
        image: (3, h, w) float tensor, the crop at this level.
        mask: (h, w) bool face-skin mask.
        a, b: the affine map ``a x + b`` from crop pixels at the finest level to this level.
        normals: the normals used at this level (`PhotometricConfig.normals`).
    """

    image: torch.Tensor
    mask: np.ndarray
    a: float
    b: float
    normals: str


@dataclass(frozen=True, eq=False)
class PhotoData:
    """A photo prepared for the refinement.

    Attributes:
        fit: the landmark fit it starts from.
        box: (x0, y0, side) the square crop of the input image (input pixels).
        k: crop pixels (finest level) per input pixel.
        pyramid: the levels, coarse to fine.
        landmark_corners: (K, C) vertex ids of each landmark (C = 1: a vertex; C = 3: a
            barycentric point on a triangle).
        landmark_bary: (K, C) weights of those vertices.
        landmark_target: (K, 2) landmark targets in crop pixels at the finest level.
    """

    fit: FitResult
    box: tuple[float, float, float]
    k: float
    pyramid: list[PyramidLevel]
    landmark_corners: np.ndarray
    landmark_bary: np.ndarray
    landmark_target: np.ndarray

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Input-image pixels (..., 2) to crop pixels at the finest level."""
        return to_crop(self.box, self.k, xy)

    def from_crop(self, xy: np.ndarray) -> np.ndarray:
        """Crop pixels at the finest level (..., 2) to input-image pixels."""
        return (np.asarray(xy, np.float64) + 0.5) / self.k - 0.5 + np.array(self.box[:2])


def to_crop(box: tuple[float, float, float], k: float, xy: np.ndarray) -> np.ndarray:
    """Input-image pixels (..., 2) to the pixels of the crop ``box`` resized by ``k``."""
    return (np.asarray(xy, np.float64) - np.array(box[:2]) + 0.5) * k - 0.5


def prepare_photo(fit: FitResult, image: np.ndarray, size: int, levels: Sequence[int],
                  level_normals: Sequence[str], landmark_corners: np.ndarray,
                  landmark_bary: np.ndarray, landmarks_px: np.ndarray,
                  device: torch.device, forehead: float = 0.7, outline_scale: float = 1.0
                  ) -> PhotoData:
    """Crop, skin mask and pyramid of one photo around its fit, and its landmark targets
    ``landmarks_px`` (K, 2; input pixels) on the points ``landmark_corners`` /
    ``landmark_bary`` (K, C) of the mesh. The mask is `skin_mask`'s, grown by ``forehead``
    and ``outline_scale`` where the colour is the skin's (`skin_coloured`)."""
    lm68 = np.asarray(fit.landmarks_68_2d_contour, np.float64)
    box = face_crop_box(lm68, forehead, outline_scale)
    k = size / box[2]
    crop_img = crop_image(image, box, size)
    crop_lm = to_crop(box, k, lm68)
    crop_mask = skin_mask(crop_lm, size, size)
    if forehead > 0.7 or outline_scale > 1.0:
        crop_mask = crop_mask | skin_coloured(
            crop_img, crop_mask, skin_mask(crop_lm, size, size, forehead, outline_scale))
    pyramid = []
    for f, nrm in zip(levels, level_normals, strict=True):
        s = size // f
        img = crop_img if f == 1 else cv2.resize(crop_img, (s, s), interpolation=cv2.INTER_AREA)
        msk = crop_mask if f == 1 else cv2.resize(
            crop_mask.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST).astype(bool)
        a = s / size
        pyramid.append(PyramidLevel(
            torch.as_tensor(img, dtype=torch.float32, device=device).permute(2, 0, 1)
            .contiguous(), msk, a, 0.5 * a - 0.5, nrm))
    corners = np.asarray(landmark_corners, np.int64)
    corners = corners[:, None] if corners.ndim == 1 else corners
    bary = np.asarray(landmark_bary, np.float64).reshape(corners.shape)
    return PhotoData(fit, box, k, pyramid, corners, bary,
                     to_crop(box, k, np.asarray(landmarks_px, np.float64)))
