"""Images of a photometric refinement: the albedo UV texture and a photo | render | error
comparison (`facefit.fit.photometric`)."""

from __future__ import annotations

import functools
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
    from facefit.texture.extract import pull_push, uv_texels

    texels = uv_texels(model, size)
    color = np.zeros((size * size, 3), np.float32)
    color[texels.index] = np.einsum("nk,nkc->nc", texels.bary,
                                    np.asarray(albedo, np.float32)[texels.vertex_ids])
    known = np.zeros(size * size, bool)
    known[texels.index] = True
    filled = pull_push(color.reshape(size, size, 3) * 255.0, known.reshape(size, size))
    return np.clip(filled + 0.5, 0, 255).astype(np.uint8)


def comparison_image(model: MorphableModel, result: PhotometricResult, image_rgb: np.ndarray,
                     max_error: float = 0.25) -> np.ndarray:
    """(L + S, 3S + B, 3) uint8 side by side over the refinement's face crop
    (S = ``result.size``): the photo, the rendered model (albedo × SH lighting over the photo,
    fading out towards the mesh's open cut as the overlay does, `facefit.render.rim`) and
    the per-pixel colour error ``|photo - render|`` (Euclidean RGB distance, intensities in
    [0, 1]) as a heat map from 0 to ``max_error`` (jet colours), with a label strip of L
    pixels above the panels and a colour bar of B pixels on the right, in those units."""
    from facefit.fit.photometric.data import crop_image
    from facefit.render.differentiable import render
    from facefit.render.raster import interpolate, rasterize

    size = result.size
    x0, y0, side = result.crop
    k = size / side
    photo = crop_image(image_rgb, result.crop, size)
    verts = np.asarray(result.fit.verts_px, np.float64).copy()
    verts[:, 0] = (verts[:, 0] - x0 + 0.5) * k - 0.5
    verts[:, 1] = (verts[:, 1] - y0 + 0.5) * k - 0.5
    verts[:, 2] *= k
    color, cover = render(torch.as_tensor(verts, dtype=torch.float32), model.triangles, size,
                          size, torch.as_tensor(result.albedo), torch.as_tensor(result.sh_coeffs))
    rend = np.clip(color.numpy(), 0, 1)
    mask = cover.numpy()
    raster = rasterize(verts.astype(np.float32), model.triangles, size, size)
    fade = interpolate(raster, _rim(model))[..., None] * mask[..., None]
    shown = fade * rend + (1.0 - fade) * photo
    err = np.linalg.norm(photo - rend, axis=2) * mask
    heat = cv2.applyColorMap(np.clip(err / max_error * 255, 0, 255).astype(np.uint8),
                             cv2.COLORMAP_JET)[..., ::-1]
    heat = np.where(mask[..., None], heat, (photo * 255 * 0.3).astype(np.uint8))
    to8 = lambda a: np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    panels = np.concatenate([to8(photo), to8(shown), heat], axis=1)
    return _annotate(panels, size, max_error)


@functools.lru_cache(maxsize=4)
def _rim(model: MorphableModel) -> np.ndarray:
    """(V,) rim fade of the model's mesh (cached per model)."""
    from facefit.render.rim import rim_weight

    return rim_weight(model.mean, model.triangles)


def _annotate(panels: np.ndarray, size: int, max_error: float) -> np.ndarray:
    """Label strip above the three panels and a colour bar (with its scale) on the right."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(size / 400.0, 0.33)
    thick = 1
    label_h = int(round(28 * scale / 0.5))
    bar_w = int(round(70 * scale / 0.5))
    h = label_h + size
    out = np.full((h, panels.shape[1] + bar_w, 3), 255, np.uint8)
    out[label_h:, :panels.shape[1]] = panels
    labels = ("photo", "render", "|photo - render|")
    for i, text in enumerate(labels):
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
        cv2.putText(out, text, (i * size + max((size - tw) // 2, 2), (label_h + th) // 2), font,
                    scale, (0, 0, 0), thick, cv2.LINE_AA)
    # colour bar: max_error at the top, 0 at the bottom of the panel height
    x0 = panels.shape[1] + 6
    ramp = np.linspace(255, 0, size).astype(np.uint8)[:, None].repeat(max(bar_w // 5, 6), 1)
    out[label_h:, x0:x0 + ramp.shape[1]] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)[..., ::-1]
    tx = x0 + ramp.shape[1] + 3
    for frac in (0.0, 0.5, 1.0):
        y = label_h + int(round((1.0 - frac) * (size - 1)))
        cv2.line(out, (x0 + ramp.shape[1], y), (tx - 1, y), (0, 0, 0), 1)
        cv2.putText(out, f"{frac * max_error:.2f}", (tx, min(max(y + 4, label_h + 9), h - 2)),
                    font, scale * 0.8, (0, 0, 0), thick, cv2.LINE_AA)
    (tw, th), _ = cv2.getTextSize("RGB", font, scale * 0.8, thick)
    cv2.putText(out, "RGB", (x0, (label_h + th) // 2), font, scale * 0.8, (0, 0, 0), thick,
                cv2.LINE_AA)
    return out


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
