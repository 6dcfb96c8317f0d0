"""Extract a UV texture and per-vertex colours of a fitted face from its photo.

Texels are rasterised in UV space (row 0 is v = 1, texel ``(i, j)`` has its centre at
``u = (j + 0.5) / T, v = 1 - (i + 0.5) / T``), mapped to the image through the fitted mesh
and sampled bilinearly (integer pixel centres, as `facefit.render.raster`). A texel is
visible when its triangle faces the camera and its depth matches the image z-buffer (then
decided by its neighbourhood's majority). Hidden texels take the colour of their mirror
point (mirrored vertices, same barycentrics) when that one is visible; texels sampled outside
the fitted face region fade out; what is left, and a margin around the UV islands, is filled
smoothly by pull-push interpolation.
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

    Each covered texel samples the photo where the camera sees it; a hidden texel samples
    the photo at its mirror point (the same barycentrics on the mirrored vertices,
    ``model.mirror_ids``) when that one is seen; the rest is filled smoothly (pull-push).
    Visibility is decided per texel by the z-buffer and then by the majority of its 3x3
    neighbourhood: a texel-sized decision at an occlusion edge (nostril, eyelid, lip) is
    noise, and each flipped texel would copy a colour from elsewhere (isolated wrong
    texels). Texels whose photo sample lies outside the fitted face region (the hull of the
    68 landmarks with the brows raised to the forehead, when the model has ``ibug68``
    landmarks) fade over a band of 8 % of the face size to the filled colour, so that the
    mesh border does not sample hair, collar or background.

    Args:
        model: the morphable model (its ``triangles``, ``uv`` and ``mirror_ids`` are used).
        verts_px: (V, 3) fitted vertices in image space: x right, y down in pixels, z depth in
            pixels (larger is farther), as `FitResult.verts_px`.
        image_rgb: (H, W, 3) uint8 photo.
        size: texture side T in texels.

    Returns:
        texture: (T, T, 3) uint8, row 0 at v = 1; filled everywhere (no holes).
        vertex_colors: (V, 3) uint8: the texture at each vertex's UV.
    """
    verts = np.asarray(verts_px, dtype=np.float32)
    image = np.ascontiguousarray(image_rgb[..., :3])
    texels = _uv_texels(model, size)
    region = _face_region_weight(model, verts, image.shape[0], image.shape[1])
    direct = _texel_view(model, verts, image, texels, size, mirror=False, region=region)
    mirror = _texel_view(model, verts, image, texels, size, mirror=True, region=region)
    w_direct = direct.weight
    w_mirror = np.where(direct.visible, 0.0, mirror.weight)
    known = w_direct + w_mirror
    color = np.zeros((size * size, 3), np.float32)
    color[texels.index] = ((w_direct[:, None] * direct.colour + w_mirror[:, None] * mirror.colour)
                           / np.maximum(known, 1e-6)[:, None])
    weight = np.zeros(size * size, np.float32)
    weight[texels.index] = known
    texture = _pull_push(color.reshape(size, size, 3), weight.reshape(size, size))
    texture = np.clip(texture + 0.5, 0, 255).astype(np.uint8)
    uv = np.asarray(model.uv, np.float32)
    vcol = _bilinear(texture, uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5)
    return texture, np.clip(vcol + 0.5, 0, 255).astype(np.uint8)


FADE_BAND = 0.08
"""Width of the fade outside the fitted face region, as a fraction of the face size."""


@dataclass(frozen=True, eq=False)
class _View:
    """Photo samples of the covered texels (N, 3) float32, visibility (N,) bool and blending
    weight (N,) float32 (visibility times the face-region fade)."""

    colour: np.ndarray
    visible: np.ndarray
    weight: np.ndarray


def _texel_view(model: MorphableModel, verts: np.ndarray, image: np.ndarray, texels: _Texels,
                size: int, mirror: bool, region: tuple[np.ndarray, int, int] | None) -> _View:
    """Sample the photo at each covered texel's surface point (or its mirror point)."""
    tri = np.asarray(model.triangles)
    ids = texels.vertex_ids
    cross = triangle_cross(verts, tri)
    if mirror:
        mids = np.asarray(model.mirror_ids)
        ids = mids[ids]
        # the mirrored triangle has the opposite winding
        cross = -triangle_cross(verts, mids[tri])
    zbuf, x0, y0 = _zbuffer(verts, tri, image.shape[0], image.shape[1])
    facing, slope = _facing(cross)
    extent = float(np.ptp(verts[:, :2], axis=0).max()) if len(verts) else 0.0
    pos = np.einsum("nk,nkc->nc", texels.bary, verts[ids])
    raw = facing[texels.triangle_id] & _depth_test(
        pos, zbuf, x0, y0, 1.0 + 0.01 * extent + 0.75 * slope[texels.triangle_id])
    visible = _majority(raw, texels.index, size)
    map_xy = np.full((size * size, 2), -1e4, np.float32)  # uncovered: sampled, unused
    map_xy[texels.index] = pos[:, :2]
    colour = cv2.remap(image, map_xy.reshape(size, size, 2), None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)[texels.index]
    colour = colour.astype(np.float32)
    # Soft edges: grazing samples are smeared (weight ramps up from MIN_FACING to
    # 2 MIN_FACING + 0.1 in cos), and a texel on the edge of what is seen is blended with the
    # fill by the share of seen texels around it, so the edge leaves no single-texel steps.
    length = np.sqrt(np.einsum("ij,ij->i", cross, cross))
    towards = (-cross[:, 2] / np.maximum(length, 1e-30))[texels.triangle_id]
    grazing = np.clip((towards - MIN_FACING) / (MIN_FACING + 0.1), 0.0, 1.0)
    weight = visible * grazing * _box_share(visible, texels.index, size)
    if region is not None:
        weight *= _bilinear(region[0][..., None], pos[:, 0] - region[1],
                            pos[:, 1] - region[2])[:, 0]
    return _View(colour, visible, weight)


def _box_share(flags: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """(N,) float32 per covered texel: the share of flagged texels among the covered texels
    of its 3x3 neighbourhood."""
    count, total = _box_counts(flags, index, size)
    return (count / np.maximum(total, 1.0)).reshape(-1)[index].astype(np.float32)


def _box_counts(flags: np.ndarray, index: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray]:
    grid = np.zeros(size * size, np.float32)
    grid[index] = flags
    cov = np.zeros(size * size, np.float32)
    cov[index] = 1.0
    box = np.ones((3, 3), np.float32)
    count = cv2.filter2D(grid.reshape(size, size), -1, box, borderType=cv2.BORDER_CONSTANT)
    total = cv2.filter2D(cov.reshape(size, size), -1, box, borderType=cv2.BORDER_CONSTANT)
    return count, total


def _majority(flags: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Per covered texel: True when more than half of the covered texels of its 3x3
    neighbourhood (itself included) are flagged."""
    count, total = _box_counts(flags, index, size)
    return (2.0 * count > total + 1e-3).reshape(-1)[index]


def _face_region_weight(model: MorphableModel, verts: np.ndarray, height: int, width: int
                        ) -> tuple[np.ndarray, int, int] | None:
    """Fade weight over the image (1 inside the fitted face region, falling linearly to 0
    over `FADE_BAND` of the face size outside it), as (map, x0, y0) over the mesh's box;
    None when the model has no ``ibug68`` landmarks."""
    ids = getattr(model, "landmark_ids", {}).get("ibug68")
    if ids is None or len(ids) != 68:
        return None
    p = verts[np.asarray(ids), :2].astype(np.float64)
    up = (p[27] - p[30]) * 0.7  # brows raised to the forehead: 70 % of the nose bridge
    outline = np.concatenate([p[:17], p[26:16:-1] + up])
    x0, y0, x1, y1 = crop_window(verts, height, width)
    h, w = max(y1 - y0, 1), max(x1 - x0, 1)
    mask = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull((outline - [x0, y0]).astype(np.float32)).reshape(-1, 2)
    cv2.fillPoly(mask, [np.round(hull * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    size = float(np.ptp(p[:17], axis=0).max())
    band = max(FADE_BAND * size, 1.0)
    dist = cv2.distanceTransform((1 - mask).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(1.0 - dist / band, 0.0, 1.0).astype(np.float32), x0, y0


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
    """Fill ``color`` (H, W, 3) smoothly where the weight ``known`` (H, W; bool or in
    [0, 1]) is below 1: the result is ``known * color + (1 - known) * fill``, so fully
    known texels are kept exactly. The fill is pull-push interpolation over a Gaussian
    pyramid of the fully known texels only: a faded texel (hair or collar at the mesh
    border) must not colour the fill it fades into."""
    w0 = np.clip(known.astype(np.float32), 0.0, 1.0)
    trusted = (w0 >= 0.999).astype(np.float32)
    levels = [(color * trusted[..., None], trusted)]
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
    fill = np.where(trusted[..., None] > 0, color, up)
    return w0[..., None] * color + (1.0 - w0[..., None]) * fill


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
