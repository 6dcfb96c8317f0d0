"""Extract a UV texture and per-vertex colours of a fitted face from its photo.

Texels are rasterised in UV space (row 0 is v = 1, texel ``(i, j)`` has its centre at
``u = (j + 0.5) / T, v = 1 - (i + 0.5) / T``), mapped to the image through the fitted mesh
and sampled bilinearly (integer pixel centres, as `facefit.render.raster`). A texel is
visible when its triangle faces the camera and its depth matches the image z-buffer. Hidden
texels take the colour of their mirror texel (u -> 1 - u) when that one is visible; what is
left, and a margin around the UV islands, is filled smoothly by pull-push interpolation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from facefit.model.morphable_model import MorphableModel
from facefit.render.raster import crop_window, rasterize
from facefit.render.shading import triangle_cross

MIN_FACING = 0.1
"""A surface is visible only if its unit normal's component towards the camera exceeds this
(about 84 degrees from the viewing direction): grazing samples are smeared."""


def extract_texture(
    model: MorphableModel,
    verts_px: np.ndarray,
    image_rgb: np.ndarray,
    size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """UV texture and per-vertex colours of one fitted face.

    Args:
        model: the morphable model (its ``triangles``, ``uv`` and ``mirror_ids`` are used).
        verts_px: (V, 3) fitted vertices in image space: x right, y down in pixels, z depth in
            pixels (larger is farther), as `FitResult.verts_px`.
        image_rgb: (H, W, 3) uint8 photo.
        size: texture side T in texels.

    Returns:
        texture: (T, T, 3) uint8, row 0 at v = 1; filled everywhere (no holes).
        vertex_colors: (V, 3) uint8: the photo at visible vertices, else the mirror vertex's
            colour when that one is visible, else the texture at the vertex's UV.
    """
    verts = np.asarray(verts_px, dtype=np.float32)
    tri = np.asarray(model.triangles)
    image = np.ascontiguousarray(image_rgb[..., :3])
    zbuf, x0, y0 = _zbuffer(verts, tri, image.shape[0], image.shape[1])
    cross = triangle_cross(verts, tri)
    facing, slope = _facing(cross)
    extent = float(np.ptp(verts[:, :2], axis=0).max()) if len(verts) else 0.0
    base_tol = 1.0 + 0.01 * extent  # pixels of depth; plus the surface slope over 0.75 px

    # Covered texels: where they land in the image, and whether the camera sees them there.
    texels = _uv_texels(model, size)
    pos = np.einsum("nk,nkc->nc", texels.bary, verts[texels.vertex_ids])  # (N, 3)
    visible = facing[texels.triangle_id] & _depth_test(
        pos, zbuf, x0, y0, base_tol + 0.75 * slope[texels.triangle_id])
    map_xy = np.full((size * size, 2), -1e4, np.float32)  # uncovered: sampled, unused
    map_xy[texels.index] = pos[:, :2]
    sampled = cv2.remap(image, map_xy.reshape(size, size, 2), None, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)

    vis = np.zeros(size * size, bool)
    vis[texels.index] = visible
    vis = vis.reshape(size, size)
    covered = np.zeros(size * size, bool)
    covered[texels.index] = True
    mirrored = covered.reshape(size, size) & ~vis & vis[:, ::-1]
    color = np.where(vis[..., None], sampled, 0).astype(np.float32)
    color[mirrored] = sampled[:, ::-1][mirrored]
    texture = np.clip(_pull_push(color, vis | mirrored) + 0.5, 0, 255).astype(np.uint8)

    # Vertices: the photo where visible, else the mirror vertex, else the texture.
    vcross = np.stack([np.bincount(tri.ravel(), weights=np.repeat(cross[:, c], 3),
                                   minlength=len(verts)) for c in range(3)], axis=1)
    vfacing, vslope = _facing(vcross)
    vvis = vfacing & _depth_test(verts, zbuf, x0, y0, base_tol + 0.75 * vslope)
    vcol = _bilinear(image, verts[:, 0], verts[:, 1])
    mirror = np.asarray(model.mirror_ids)
    from_mirror = ~vvis & vvis[mirror]
    vcol[from_mirror] = vcol[mirror[from_mirror]]
    rest = np.flatnonzero(~vvis & ~from_mirror)
    uv = np.asarray(model.uv, np.float32)[rest]
    vcol[rest] = _bilinear(texture, uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5)
    return texture, np.clip(vcol + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class _Texels:
    """The texels covered by a model's UV layout: flat index into the (T, T) grid (N,),
    triangle id (N,), the triangle's vertex ids (N, 3) and barycentrics (N, 3)."""

    index: np.ndarray
    triangle_id: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray


@functools.lru_cache(maxsize=4)
def _uv_texels(model: MorphableModel, size: int) -> _Texels:
    """The model's triangles rasterised on the (size, size) texel grid (cached per model)."""
    uv = np.asarray(model.uv, np.float32)
    uv_px = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5,
                      np.zeros(len(uv), np.float32)], axis=1)
    r = rasterize(uv_px, model.triangles, size, size)
    index = np.flatnonzero(r.triangle_id.reshape(-1) >= 0)
    tid = r.triangle_id.reshape(-1)[index]
    return _Texels(index, tid, r.triangles[tid], r.bary.reshape(-1, 3)[index])


def _facing(cross: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From (N, 3) image-space normals (any length): facing the camera (N,) bool and the
    depth slope |dz/dxy| (N,), capped where the surface is too oblique to be used."""
    length = np.sqrt(np.einsum("ij,ij->i", cross, cross))
    towards = -cross[:, 2] / np.maximum(length, 1e-30)
    sin = np.sqrt(np.maximum(1.0 - towards**2, 0.0))
    return towards > MIN_FACING, sin / np.maximum(towards, MIN_FACING)


def _zbuffer(verts: np.ndarray, tri: np.ndarray, height: int, width: int
             ) -> tuple[np.ndarray, int, int]:
    """Depth buffer of the mesh over its bounding box in the image, and the box's corner."""
    x0, y0, x1, y1 = crop_window(verts, height, width)
    shifted = verts - np.array([x0, y0, 0], np.float32)
    return rasterize(shifted, tri, max(y1 - y0, 0), max(x1 - x0, 0)).depth, x0, y0


def _depth_test(pos: np.ndarray, zbuf: np.ndarray, x0: int, y0: int, tol: np.ndarray
                ) -> np.ndarray:
    """True where points ``pos`` (..., 3) lie within ``tol`` of the z-buffer's nearest pixel."""
    ix = np.rint(pos[..., 0]).astype(np.int64) - x0
    iy = np.rint(pos[..., 1]).astype(np.int64) - y0
    h, w = zbuf.shape
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    z = np.full(pos.shape[:-1], np.inf, np.float32)
    z[inside] = zbuf[iy[inside], ix[inside]]
    return inside & (pos[..., 2] <= z + tol)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, C) float32 bilinear samples of an (H, W, C) image at points (x, y), integer pixel
    centres, clamped at the border."""
    h, w = image.shape[:2]
    x = np.clip(np.asarray(x, np.float32), 0, w - 1)
    y = np.clip(np.asarray(y, np.float32), 0, h - 1)
    xi = np.minimum(np.floor(x).astype(np.int64), max(w - 2, 0))
    yi = np.minimum(np.floor(y).astype(np.int64), max(h - 2, 0))
    fx, fy = (x - xi)[:, None], (y - yi)[:, None]
    xj, yj = np.minimum(xi + 1, w - 1), np.minimum(yi + 1, h - 1)
    top = image[yi, xi] * (1 - fx) + image[yi, xj] * fx
    bottom = image[yj, xi] * (1 - fx) + image[yj, xj] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _pull_push(color: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown texels of ``color`` (H, W, 3) smoothly from the ``known`` (H, W) ones
    (pull-push over a Gaussian pyramid); known texels are kept exactly."""
    w0 = known.astype(np.float32)
    levels = [(color * w0[..., None], w0)]
    while min(levels[-1][1].shape) > 1:
        cw, w = levels[-1]
        levels.append((cv2.pyrDown(cw), cv2.pyrDown(w)))
    cw, w = levels[-1]
    filled = (cw / np.maximum(w, 1e-6)[..., None]).reshape(cw.shape)
    for cw, w in reversed(levels[1:-1]):
        up = cv2.pyrUp(filled, dstsize=(w.shape[1], w.shape[0])).reshape(cw.shape)
        alpha = np.minimum(4.0 * w, 1.0)[..., None]
        filled = alpha * (cw / np.maximum(w, 1e-6)[..., None]) + (1.0 - alpha) * up
    up = cv2.pyrUp(filled, dstsize=(w0.shape[1], w0.shape[0])).reshape(color.shape)
    return np.where(known[..., None], color, up)


def texel_samples(
    model: MorphableModel,
    verts_px: np.ndarray,
    image_rgb: np.ndarray,
    size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The photo sampled on the UV grid and a per-texel weight, for merging several views.

    Returns:
        colour: (T, T, 3) float32 samples (row 0 at v = 1; meaningless where weight is 0).
        weight: (T, T) float32: the cosine between the surface normal and the viewing
            direction where the texel is visible (facing test and z-buffer as
            `extract_texture`), 0 elsewhere.
    """
    verts = np.asarray(verts_px, dtype=np.float32)
    tri = np.asarray(model.triangles)
    image = np.ascontiguousarray(image_rgb[..., :3])
    zbuf, x0, y0 = _zbuffer(verts, tri, image.shape[0], image.shape[1])
    cross = triangle_cross(verts, tri)
    facing, slope = _facing(cross)
    extent = float(np.ptp(verts[:, :2], axis=0).max()) if len(verts) else 0.0
    texels = _uv_texels(model, size)
    pos = np.einsum("nk,nkc->nc", texels.bary, verts[texels.vertex_ids])
    visible = facing[texels.triangle_id] & _depth_test(
        pos, zbuf, x0, y0, 1.0 + 0.01 * extent + 0.75 * slope[texels.triangle_id])
    length = np.sqrt(np.einsum("ij,ij->i", cross, cross))
    towards = -cross[:, 2] / np.maximum(length, 1e-30)
    map_xy = np.full((size * size, 2), -1e4, np.float32)
    map_xy[texels.index] = pos[:, :2]
    colour = cv2.remap(image, map_xy.reshape(size, size, 2), None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    weight = np.zeros(size * size, np.float32)
    weight[texels.index] = np.where(visible, towards[texels.triangle_id], 0.0)
    return colour, weight.reshape(size, size)


def merge_texels(colours: list[np.ndarray], weights: list[np.ndarray], power: float = 2.0
                 ) -> np.ndarray:
    """(T, T, 3) uint8 texture from several views' `texel_samples`: a weighted mean
    (weight ``cos^power`` of the viewing angle), hidden texels from their mirror texel,
    the rest filled by pull-push."""
    acc = np.zeros_like(colours[0], dtype=np.float32)
    wsum = np.zeros(colours[0].shape[:2], np.float32)
    for c, w in zip(colours, weights, strict=True):
        wp = np.power(w, power, dtype=np.float32)
        acc += c * wp[..., None]
        wsum += wp
    known = wsum > 1e-6
    color = np.where(known[..., None], acc / np.maximum(wsum, 1e-6)[..., None], 0.0)
    mirrored = ~known & known[:, ::-1]
    color[mirrored] = color[:, ::-1][mirrored]
    return np.clip(_pull_push(color.astype(np.float32), known | mirrored) + 0.5, 0,
                   255).astype(np.uint8)
