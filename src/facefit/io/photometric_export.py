"""Images of a photometric refinement: the albedo UV texture and a photo | render | error
comparison (`facefit.fit.photometric`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

if TYPE_CHECKING:
    from facefit.fit.photometric import PhotometricResult
    from facefit.model.morphable_model import MorphableModel


def albedo_texture(model: MorphableModel, albedo: np.ndarray, size: int = 512) -> np.ndarray:
    """(T, T, 3) uint8 UV texture (row 0 is v = 1) of per-vertex albedo (V, 3) in [0, 1],
    interpolated over the model's UV triangles; texels outside the UV islands are filled
    smoothly (pull-push, as `facefit.texture.extract`)."""
    from facefit.texture.extract import _pull_push, _uv_texels

    texels = _uv_texels(model, size)
    color = np.zeros((size * size, 3), np.float32)
    color[texels.index] = np.einsum("nk,nkc->nc", texels.bary,
                                    np.asarray(albedo, np.float32)[texels.vertex_ids])
    known = np.zeros(size * size, bool)
    known[texels.index] = True
    filled = _pull_push(color.reshape(size, size, 3) * 255.0, known.reshape(size, size))
    return np.clip(filled + 0.5, 0, 255).astype(np.uint8)


def comparison_image(model: MorphableModel, result: PhotometricResult, image_rgb: np.ndarray,
                     max_error: float = 0.25) -> np.ndarray:
    """(S, 3S, 3) uint8 side by side over the refinement's face crop (S = ``result.size``):
    the photo, the rendered model (albedo × SH lighting, over the photo) and the per-pixel
    colour error ``|photo - render|`` as a heat map (0 to ``max_error``, jet colours)."""
    from facefit.fit.photometric import _crop
    from facefit.render.differentiable import render

    size = result.size
    x0, y0, side = result.crop
    k = size / side
    photo = _crop(image_rgb, result.crop, size)
    verts = np.asarray(result.fit.verts_px, np.float64).copy()
    verts[:, 0] = (verts[:, 0] - x0 + 0.5) * k - 0.5
    verts[:, 1] = (verts[:, 1] - y0 + 0.5) * k - 0.5
    verts[:, 2] *= k
    color, cover = render(torch.as_tensor(verts, dtype=torch.float32), model.triangles, size,
                          size, torch.as_tensor(result.albedo), torch.as_tensor(result.sh_coeffs))
    rend = np.clip(color.numpy(), 0, 1)
    mask = cover.numpy()
    shown = np.where(mask[..., None], rend, photo)
    err = np.linalg.norm(photo - rend, axis=2) * mask
    heat = cv2.applyColorMap(np.clip(err / max_error * 255, 0, 255).astype(np.uint8),
                             cv2.COLORMAP_JET)[..., ::-1]
    heat = np.where(mask[..., None], heat, (photo * 255 * 0.3).astype(np.uint8))
    to8 = lambda a: np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    return np.concatenate([to8(photo), to8(shown), heat], axis=1)


def photometric_summary(result: PhotometricResult) -> dict[str, Any]:
    """The JSON record of a refinement: SH coefficients (9 × 3), final photometric error
    (RMS, intensities in [0, 1]) and landmark error (px), iterations."""
    return {
        "sh_coeffs": np.round(np.asarray(result.sh_coeffs, np.float64), 5).tolist(),
        "photometric_error": round(float(result.photometric_error), 5),
        "initial_photometric_error": round(float(result.initial_photometric_error), 5),
        "landmark_error_px": round(float(result.landmark_error_px), 3),
        "iterations": int(result.iterations),
    }
