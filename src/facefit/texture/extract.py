"""Extract a UV texture and per-vertex colours of a fitted face from its photo.

Texels are rasterised in UV space (row 0 is v = 1, texel ``(i, j)`` has its centre at
``u = (j + 0.5) / T, v = 1 - (i + 0.5) / T``; the model's layout,
`facefit.texture.atlas.texture_layout`: per-vertex UVs, or per-corner UVs such as ICT's),
mapped to the image through the fitted mesh and sampled bilinearly (integer pixel centres,
as `facefit.render.raster`) from the photo, or from its Gaussian pyramid where a texel
covers more than a pixel (`MIP_LEVELS`). A texel is
visible when its triangle faces the camera and its depth matches the image z-buffer (then
decided by its neighbourhood's majority). Hidden texels take the colour of their mirror
point (mirrored vertices, same barycentrics) when that one is visible; texels sampled outside
the fitted face region fade out; what is left, and a margin around the UV islands, is filled
smoothly by pull-push interpolation (a filled island, as ICT's back of the head, starting
from the sampled side's colours along its seams); fixed-colour cells (ICT's eyes and teeth)
are painted last.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse

from facefit.detect.base import face_outline
from facefit.model.morphable_model import MorphableModel
from facefit.model.topology import signed_area_2d
from facefit.render.raster import crop_window, depth_buffer, native_library, rasterize
from facefit.render.shading import triangle_cross
from facefit.texture.atlas import TextureLayout, texture_layout

MIN_FACING = 0.1
"""A surface is visible only if its unit normal's component towards the camera exceeds this
(about 84 degrees from the viewing direction): grazing samples are smeared."""


def extract_texture(
    model: MorphableModel,
    verts_px: np.ndarray,
    image_rgb: np.ndarray,
    size: int = 512,
    vertex_colors: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """UV texture and per-vertex colours of one fitted face.

    Each covered texel samples the photo where the camera sees it; a hidden texel samples
    the photo at its mirror point (the same barycentrics on the mirrored vertices,
    ``model.mirror_ids``) when that one is seen; the rest is filled smoothly (pull-push).
    Visibility is decided per texel by the z-buffer and then by the majority of its 3x3
    neighbourhood: a texel-sized decision at an occlusion edge (nostril, eyelid, lip) is
    noise, and each flipped texel would copy a colour from elsewhere (isolated wrong
    texels). Texels whose photo sample lies outside the fitted face region (the hull of the
    68 landmarks with the brows raised to the forehead, when the model has ``ibug68``
    landmarks) fade over a band of 8 % of the face size centred on its outline to the
    filled colour, so that the mesh border does not sample hair, collar or background.

    Args:
        model: the morphable model (its ``triangles``, ``uv`` and ``mirror_ids`` are used).
        verts_px: (V, 3) fitted vertices in image space: x right, y down in pixels, z depth in
            pixels (larger is farther), as `FitResult.verts_px`.
        image_rgb: (H, W, 3) uint8 photo.
        size: texture side T in texels.
        vertex_colors: also sample the per-vertex colours (only the PLY writer uses them).

    Returns:
        texture: (T, T, 3) uint8, row 0 at v = 1; filled everywhere (no holes).
        vertex_colors: (V, 3) uint8: the texture at each vertex's UV (None unless
            ``vertex_colors``).
    """
    verts = np.asarray(verts_px, dtype=np.float32)
    image = np.ascontiguousarray(image_rgb[..., :3])
    texels = uv_texels(model, size)
    height, width = image.shape[:2]
    window = crop_window(verts, height, width)
    region = _face_region_weight(model, verts, window)
    tri = np.asarray(model.triangles)
    # one depth buffer for the direct and mirror views, at most ZBUFFER_SIDE pixels a side
    zbuf = _zbuffer(verts, tri, window, ZBUFFER_SIDE)
    extent = float(max(np.ptp(verts[:, 0]), np.ptp(verts[:, 1]))) if len(verts) else 0.0
    lib = native_library()
    if lib is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        direct, mirror = _views_native(lib, model, verts, image, window, texels, zbuf, extent,
                                       region)
    else:
        direct, mirror = _views(verts, tri, image, window, texels, zbuf, extent, region)
    color = np.zeros((size * size, 3), np.float32)
    weight = np.zeros(size * size, np.float32)
    if lib is not None:  # the same float32 operations, texel by texel
        index = np.ascontiguousarray(texels.index, np.int64)
        parts = [np.ascontiguousarray(a, np.float32) for a in (
            direct.colour, direct.weight, mirror.colour, mirror.weight)]
        lib.ff_blend_views(len(index), index.ctypes.data, *[a.ctypes.data for a in parts],
                           color.ctypes.data, weight.ctypes.data)
    else:
        w_direct = direct.weight
        w_mirror = mirror.weight
        known = w_direct + w_mirror
        # (w_d c_d + w_m c_m) / max(known, 1e-6), in place (the same float32 operations)
        mixed = np.multiply(direct.colour, w_direct[:, None], out=direct.colour)
        mixed += np.multiply(mirror.colour, w_mirror[:, None], out=mirror.colour)
        mixed /= np.maximum(known, 1e-6)[:, None]
        color[texels.index] = mixed
        weight[texels.index] = known
    if texels.seam_matrix is not None:
        # a filled island (ICT's back of the head) starts along its seams from the colour
        # the sampled side's fill has there, so the fill is continuous across the seam
        first = pull_push(color.reshape(size, size, 3), weight.reshape(size, size))
        color[texels.seam_index] = texels.seam_matrix @ first.reshape(-1, 3)
        weight[texels.seam_index] = 1.0
    texture = pull_push(color.reshape(size, size, 3), weight.reshape(size, size))
    texture += 0.5
    texture = np.clip(texture, 0, 255, out=texture).astype(np.uint8)
    paint_cells(texture, texels.layout)
    if not vertex_colors:
        return texture, None
    vcol = texels.vertex_interp @ texture.reshape(-1, 3).astype(np.float32)
    return texture, np.clip(vcol + 0.5, 0, 255).astype(np.uint8)


def _views(verts: np.ndarray, tri: np.ndarray, image: np.ndarray,
           window: tuple[int, int, int, int], texels: UVTexels,
           zbuf: tuple[np.ndarray, int, int, float], extent: float,
           region: tuple[np.ndarray, int, int] | None) -> tuple[_View, _View]:
    """The direct and mirror views of `extract_texture` (numpy)."""
    cross = triangle_cross(verts, tri)
    facing = _facing(cross)
    towards = facing[0]
    foot = _footprints(cross, texels)
    # levels up to the largest footprint of a facing triangle of at least a texel
    photo = _levels(image, window, float(foot[(towards > MIN_FACING)
                                              & (texels.texel_area >= 1.0)].max(initial=0.0)))
    direct = _texel_view(texels.interp, cross, verts, photo, texels, zbuf, extent, region,
                         facing=facing)
    # the mirrored triangle has the opposite winding; its samples are used only where the
    # direct view is hidden, so only those are sampled
    mirror = _texel_view(texels.mirror_interp, -triangle_cross(verts, texels.mirror_triangles),
                         verts, photo, texels, zbuf, extent, region, ~direct.visible)
    return direct, mirror


def _views_native(lib: ctypes.CDLL, model: MorphableModel, verts: np.ndarray,
                  image: np.ndarray, window: tuple[int, int, int, int], texels: UVTexels,
                  zbuf: tuple[np.ndarray, int, int, float], extent: float,
                  region: tuple[np.ndarray, int, int] | None) -> tuple[_View, _View]:
    """`_views` by the compiled extension: the per-triangle terms (``ff_triangle_terms``)
    and the texel passes (``ff_texel_view``), the same numbers."""
    v = np.ascontiguousarray(verts, np.float32)
    tri, mirror_tri = _native_triangles(model, texels, len(v))
    # depth tolerance: 1 px, 1 % of the face, and the depth change over 3/4 of a z-buffer
    # pixel on the triangle's slope (the nearest z-buffer pixel is compared)
    tol = (1.0 + 0.01 * extent, 0.75 * zbuf[3])
    terms, most = _triangle_terms(lib, v, tri, 1.0, texels, tol)
    photo = _levels(image, window, most)
    direct = _texel_view_native(lib, texels.interp, v, terms, photo, texels, zbuf, region, None)
    terms, _ = _triangle_terms(lib, v, mirror_tri, -1.0, texels, tol)
    mirror = _texel_view_native(lib, texels.mirror_interp, v, terms, photo, texels, zbuf,
                                region, ~direct.visible)
    return direct, mirror


@functools.lru_cache(maxsize=4)
def _native_triangles_cached(model: MorphableModel, texels: UVTexels
                             ) -> tuple[np.ndarray, np.ndarray]:
    tri = np.ascontiguousarray(np.asarray(model.triangles).reshape(-1, 3), np.int32)
    return tri, np.ascontiguousarray(texels.mirror_triangles, np.int32)


def _native_triangles(model: MorphableModel, texels: UVTexels, num_vertices: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The model's triangles and their mirrors as (F, 3) int32 for the compiled passes
    (cached); IndexError for a vertex id outside the vertices (C reads memory at them)."""
    tri, mirror = _native_triangles_cached(model, texels)
    for t in (tri, mirror):
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= num_vertices):
            raise IndexError(f"triangle vertex ids must lie in [0, {num_vertices})")
    return tri, mirror


def _triangle_terms(lib: ctypes.CDLL, verts: np.ndarray, tri: np.ndarray, sign: float,
                    texels: UVTexels, tol: tuple[float, float]
                    ) -> tuple[tuple[np.ndarray, ...], float]:
    """Per triangle (``ff_triangle_terms``): facing the camera (F,) bool, depth tolerance,
    grazing weight and footprint (F,) float32 (`_facing`, `_footprints` of the normals
    ``sign * triangle_cross``); and the largest footprint of a facing triangle of at least a
    texel."""
    n = len(tri)
    facing = np.empty(n, np.bool_)
    tol_, grazing, foot = (np.empty(n, np.float32) for _ in range(3))
    area = np.ascontiguousarray(texels.texel_area, np.float32)
    most = lib.ff_triangle_terms(verts.ctypes.data, len(verts), tri.ctypes.data, n, sign,
                                 area.ctypes.data, MIN_FACING, MIN_FACING + 0.1, tol[0],
                                 tol[1], facing.ctypes.data, tol_.ctypes.data,
                                 grazing.ctypes.data, foot.ctypes.data)
    return (facing, tol_, grazing, foot), float(most)


MIN_TEXTURE_SIZE = 256
"""Smallest side `face_texture_size` picks (unless the cap is smaller)."""


def face_texture_size(model: MorphableModel, verts_px: np.ndarray, max_size: int = 512,
                      min_size: int = MIN_TEXTURE_SIZE) -> int:
    """Texture side for one fitted face, sized to the face rather than to a fixed grid.

    The face's texel density ``D = sqrt(A_img / A_uv)`` is the texture side at which a texel
    covers one photo pixel on average over the visible face (``A_img``: image area in
    pixels of the triangles facing the camera, ``A_uv``: their area in the unit UV square).
    The side is the power of two nearest to ``D`` on a log scale (texels within a factor
    sqrt(2) of the photo's pixels), clamped to ``[min_size, max_size]``; ``max_size``
    alone when it is below ``min_size``. A finer texture only resamples the same pixels:
    a 300 px AFLW2000-3D face (D about 260) gets 256, a face of D above 362 the 512 cap.

    Args:
        model: the morphable model (its triangles and UV layout).
        verts_px: (V, 3) fitted vertices in image space (x, y pixels; z depth).
        max_size: the largest side (``--texture-size``).
        min_size: the smallest side.
    """
    if max_size <= min_size:
        return int(max_size)
    verts = np.asarray(verts_px, np.float32)
    cross = triangle_cross(verts, np.asarray(model.triangles))
    towards = _towards(cross)
    uv_area = _uv_areas(model)
    sel = (towards > MIN_FACING) & texture_layout(model).sampled
    area_uv = float(uv_area[sel].sum())
    area_px = 0.5 * float(np.abs(cross[sel, 2]).sum())
    if not (area_uv > 0 and np.isfinite(area_px) and area_px > 0):
        return int(min_size)
    side = 2.0 ** round(0.5 * np.log2(area_px / area_uv))
    return int(np.clip(side, min_size, max_size))


@functools.lru_cache(maxsize=4)
def _uv_areas(model: MorphableModel) -> np.ndarray:
    """(F,) float64 area of each triangle in the unit UV square (cached per model)."""
    layout = texture_layout(model)
    return np.abs(signed_area_2d(layout.uv.astype(np.float64), layout.triangle_uv))


FADE_BAND = 0.08
"""Width of the fade across the fitted face region's outline, as a fraction of the face
size."""


@dataclass(frozen=True, eq=False)
class _View:
    """Photo samples of the covered texels (N, 3) float32, visibility (N,) bool and blending
    weight (N,) float32 (visibility times the face-region fade)."""

    colour: np.ndarray
    visible: np.ndarray
    weight: np.ndarray


MIP_LEVELS = 3
"""Anti-aliased sampling: a texel whose footprint in the photo is f > 1 pixels (the side of
the square of its triangle's image area per texel) samples the photo's Gaussian pyramid
(`cv2.pyrDown`) at level log2(f), interpolated between the two levels around it:
trilinear mip-mapping (Williams, "Pyramidal parametrics", SIGGRAPH 1983), levels up to this
many halvings. The layout magnifies the face centre and compresses its rim, so one face's
footprints span a factor of about 4: high-frequency content (hair, a patterned headdress)
at the rim sampled at texel centres would otherwise alias into isolated wrong texels."""


@dataclass(frozen=True, eq=False)
class _Level:
    """One pyramid level: the image, the image pixel ``origin`` (2,) that its pixel (0, 0)
    is centred on, and its pixel size in image pixels ``scale`` (`cv2.pyrDown` centres
    pixel j of the next level on pixel 2 j)."""

    image: np.ndarray
    origin: np.ndarray
    scale: float

    def sample(self, xy: np.ndarray) -> np.ndarray:
        """Bilinear samples at image points ``xy`` (N, 2) (integer pixel centres)."""
        if self.scale == 1.0 and not self.origin.any():
            return _sample(self.image, xy)
        return _sample(self.image, (xy - self.origin) / self.scale)


def _levels(image: np.ndarray, window: tuple[int, int, int, int], max_footprint: float
            ) -> list[_Level]:
    """The photo and the Gaussian pyramid of its part under the mesh's ``window``, down to
    the level that covers ``max_footprint`` (at most `MIP_LEVELS`)."""
    levels = [_Level(image, np.zeros(2, np.float32), 1.0)]
    x0, y0, x1, y1 = window
    if max_footprint <= 1.0 or x1 - x0 < 4 or y1 - y0 < 4:
        return levels
    count = min(int(np.ceil(np.log2(max_footprint))), MIP_LEVELS)
    level = image[y0:y1, x0:x1]
    for k in range(1, count + 1):
        if min(level.shape[:2]) < 4:
            break
        level = cv2.pyrDown(level, borderType=cv2.BORDER_REPLICATE)
        levels.append(_Level(level, np.array([x0, y0], np.float32), float(2**k)))
    return levels


def _footprints(cross: np.ndarray, texels: UVTexels) -> np.ndarray:
    """(F,) float32 side of a texel's footprint in the photo (pixels) per triangle: the
    square root of its image area (``cross``: image-space normals) per texel."""
    return np.sqrt(0.5 * np.abs(cross[:, 2]) / np.maximum(texels.texel_area, 1e-12))


def texel_footprint(cross: np.ndarray, texels: UVTexels) -> float:
    """Median texel footprint in the photo (pixels) over the covered texels of triangles
    facing the camera (``cross``: (F, 3) image-space normals, `triangle_cross`)."""
    towards, _ = _facing(cross)
    sel = (towards > MIN_FACING).take(texels.triangle_id)
    if not sel.any():
        return 0.0
    return float(np.median(_footprints(cross, texels).take(texels.triangle_id[sel])))


def _sample_filtered(levels: list[_Level], xy: np.ndarray, footprint: np.ndarray
                     ) -> np.ndarray:
    """(N, 3) float32 samples at ``xy`` (N, 2), each from the pyramid level of its
    ``footprint`` (N,): linear in log2(footprint) between the two levels around it."""
    out = _sample(levels[0].image, xy)  # texels of at most a pixel need only the photo
    big = np.flatnonzero(footprint > 1.0) if len(levels) > 1 else np.zeros(0, np.int64)
    if len(big) == 0:
        return out
    lod = np.minimum(np.log2(footprint[big]), len(levels) - 1.0)
    xb = xy[big]
    lower = out[big]
    upper = levels[1].sample(xb)  # most texels lie between the photo and level 1
    res = lower + np.minimum(lod, 1.0)[:, None] * (upper - lower)
    deep = np.flatnonzero(lod > 1.0)
    if len(deep):
        k = np.minimum(lod[deep].astype(np.int64), len(levels) - 2)
        for j in range(1, len(levels) - 1):
            m = deep[k == j]
            if len(m) == 0:
                continue
            a = upper[m] if j == 1 else levels[j].sample(xb[m])
            b = levels[j + 1].sample(xb[m])
            res[m] = a + (lod[m] - j)[:, None] * (b - a)
    out[big] = res
    return out


def _texel_view(interp: sparse.csr_matrix, cross: np.ndarray, verts: np.ndarray,
                photo: list[_Level], texels: UVTexels,
                zbuf: tuple[np.ndarray, int, int],
                extent: float, region: tuple[np.ndarray, int, int] | None,
                wanted: np.ndarray | None = None,
                facing: tuple[np.ndarray, np.ndarray] | None = None) -> _View:
    """Sample the photo at each covered texel's surface point ``interp @ verts`` (or its
    mirror point) of the triangles with normals ``cross`` in ``photo`` (its pyramid,
    `_levels`; each texel samples the level of its footprint). Colour and weight
    are computed only where ``wanted`` (N,) is True (zero elsewhere); visibility
    everywhere. ``facing``: `_facing` of ``cross`` when already computed."""
    towards, slope = _facing(cross) if facing is None else facing
    # depth tolerance: 1 px, 1 % of the face, and the depth change over 3/4 of a z-buffer
    # pixel on the triangle's slope (the nearest z-buffer pixel is compared)
    tol = 1.0 + 0.01 * extent + 0.75 * zbuf[3] * slope
    # Soft edges: grazing samples are smeared (weight ramps up from MIN_FACING to
    # 2 MIN_FACING + 0.1 in cos), and a texel on the edge of what is seen is blended with the
    # fill by the share of seen texels around it, so the edge leaves no single-texel steps.
    grazing = np.clip((towards - MIN_FACING) / (MIN_FACING + 0.1), 0.0, 1.0)
    pos = np.asarray(interp @ verts, np.float32)
    tid = texels.triangle_id
    raw = (towards > MIN_FACING).take(tid) & _depth_test(pos, *zbuf, tol.take(tid))
    visible = _majority(raw, texels)
    weight = grazing.take(tid) * _box_share(visible, texels)
    weight[~(visible & texels.sampled)] = 0.0
    sel = np.flatnonzero(weight > 0 if wanted is None else wanted & (weight > 0))
    colour = np.zeros((len(pos), 3), np.float32)
    if len(sel) == 0:
        return _View(colour, visible, np.zeros(len(pos), np.float32))
    xy = pos[sel, :2]
    colour[sel] = _sample_filtered(photo, xy, _footprints(cross, texels).take(tid[sel]))
    out = np.zeros(len(pos), np.float32)
    out[sel] = weight[sel]
    if region is not None:
        fade, x0, y0 = region
        out[sel] *= _sample(fade, xy - np.array([x0, y0], np.float32))[:, 0]
    return _View(colour, visible, out)


def _texel_view_native(lib: ctypes.CDLL, interp: sparse.csr_matrix, v: np.ndarray,
                       terms: tuple[np.ndarray, ...], photo: list[_Level], texels: UVTexels,
                       zbuf: tuple[np.ndarray, int, int, float],
                       region: tuple[np.ndarray, int, int] | None,
                       wanted: np.ndarray | None) -> _View:
    """`_texel_view` by the compiled extension (``ff_texel_view`` in
    ``render/_craster.c``: the same float32 operations texel by texel, the photo sampled
    as `cv2.remap` does) on (V, 3) float32 C-contiguous vertices ``v``, with the
    `_triangle_terms` of the view; the face-region fade is applied here."""
    n, size = len(texels.index), texels.size
    indptr = np.ascontiguousarray(interp.indptr, np.int32)
    indices = np.ascontiguousarray(interp.indices, np.int32)
    data = np.ascontiguousarray(interp.data, np.float32)
    if len(indices) and int(indices.max()) >= len(v):
        raise IndexError(f"texel interpolation reads vertex {int(indices.max())} of {len(v)}")
    tid = np.ascontiguousarray(texels.triangle_id, np.int32)
    index = _padded_index(texels)
    levels = len(photo)
    zb, zx0, zy0, step = zbuf
    zb = np.ascontiguousarray(zb, np.float32)
    kept = [np.ascontiguousarray(level.image, np.uint8) for level in photo]  # alive for C
    images = (ctypes.c_void_p * levels)(*[im.ctypes.data for im in kept])
    heights = np.array([level.image.shape[0] for level in photo], np.int64)
    widths = np.array([level.image.shape[1] for level in photo], np.int64)
    origin = np.ascontiguousarray(np.stack([level.origin for level in photo]), np.float32)
    scale = np.array([level.scale for level in photo], np.float32)
    facing, tol, grazing, foot = terms
    sampled = np.ascontiguousarray(texels.sampled, np.bool_)
    around = np.ascontiguousarray(texels.covered_around, np.float32)
    want = None if wanted is None else np.ascontiguousarray(wanted, np.bool_)
    grid = np.empty((size + 2) ** 2, np.uint8)
    pos = np.empty((n, 3), np.float32)
    visible = np.empty(n, np.bool_)
    weight = np.zeros(n, np.float32)
    colour = np.zeros((n, 3), np.float32)
    sel = np.empty(n, np.int64)
    sel_xy = np.empty((n, 2), np.float32)
    count = lib.ff_texel_view(
        v.ctypes.data, len(v), indptr.ctypes.data, indices.ctypes.data, data.ctypes.data, n,
        tid.ctypes.data, index.ctypes.data, size, facing.ctypes.data, tol.ctypes.data,
        grazing.ctypes.data, foot.ctypes.data, sampled.ctypes.data, around.ctypes.data,
        None if want is None else want.ctypes.data, zb.ctypes.data, zb.shape[0], zb.shape[1],
        int(zx0), int(zy0), float(step), int(step == 1.0), levels, images,
        heights.ctypes.data, widths.ctypes.data, origin.ctypes.data, scale.ctypes.data,
        grid.ctypes.data, pos.ctypes.data, visible.ctypes.data, weight.ctypes.data,
        colour.ctypes.data, sel.ctypes.data, sel_xy.ctypes.data)
    if region is not None and count:
        fade, x0, y0 = region
        sel = sel[:count]
        weight[sel] *= _sample(fade, sel_xy[:count] - np.array([x0, y0], np.float32))[:, 0]
    return _View(colour, visible, weight)


@functools.lru_cache(maxsize=8)
def _padded_index(texels: UVTexels) -> np.ndarray:
    """(N,) int64 flat index of each covered texel in the texel grid padded by one texel on
    each side, (T + 2, T + 2): its 3x3 neighbourhood needs no bounds checks."""
    row, col = np.divmod(texels.index, texels.size)
    return np.ascontiguousarray((row + 1) * (texels.size + 2) + col + 1, np.int64)


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, C) float32 bilinear samples (`cv2.remap`, integer pixel centres, border
    replicated) of an (H, W) or (H, W, C) image at the points ``xy`` (N, 2)."""
    n, cols = len(xy), 1024  # remap's maps must be shorter than 32767 rows
    rows = -(-n // cols)
    grid = np.zeros((rows * cols, 2), np.float32)
    grid[:n] = xy
    out = cv2.remap(image, grid.reshape(rows, cols, 2), None, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * cols, -1)[:n].astype(np.float32, copy=False)


def _box_share(flags: np.ndarray, texels: UVTexels) -> np.ndarray:
    """(N,) float32 per covered texel: the share of flagged texels among the covered texels
    of its 3x3 neighbourhood."""
    return _box_count(flags, texels) / texels.covered_around


def _box_count(flags: np.ndarray, texels: UVTexels) -> np.ndarray:
    """(N,) float32 per covered texel: the number of flagged covered texels in its 3x3
    neighbourhood (itself included)."""
    size = texels.size
    grid = np.zeros(size * size, np.float32)
    np.put(grid, texels.index, flags)
    count = cv2.boxFilter(grid.reshape(size, size), -1, (3, 3), normalize=False,
                          borderType=cv2.BORDER_CONSTANT)
    return count.reshape(-1).take(texels.index)


def _majority(flags: np.ndarray, texels: UVTexels) -> np.ndarray:
    """Per covered texel: True when more than half of the covered texels of its 3x3
    neighbourhood (itself included) are flagged."""
    return 2.0 * _box_count(flags, texels) > texels.covered_around + 1e-3


def _face_region_weight(model: MorphableModel, verts: np.ndarray,
                        window: tuple[int, int, int, int]
                        ) -> tuple[np.ndarray, int, int] | None:
    """Fade weight over the image, as (map, x0, y0) over the mesh's box ``window``
    (`crop_window`): linear across a band of `FADE_BAND` of the face size centred on the
    fitted face region's outline (1 from half the band inside it, 0.5 on it, 0 from half the
    band outside: a sample just outside the jaw line is background or neck, and a whole
    head's mesh, as ICT's, reaches well past it); None when the model has no ``ibug68``
    landmarks."""
    ids = getattr(model, "landmark_ids", {}).get("ibug68")
    if ids is None or len(ids) != 68:
        return None
    p = verts[np.asarray(ids), :2].astype(np.float64)
    outline = face_outline(p)
    x0, y0, x1, y1 = window
    h, w = max(y1 - y0, 1), max(x1 - x0, 1)
    mask = np.zeros((h, w), np.uint8)
    size = float(np.ptp(p[:17], axis=0).max())
    band = max(FADE_BAND * size, 1.0)
    hull = cv2.convexHull((outline - [x0, y0]).astype(np.float32)).reshape(-1, 2)
    # the outline moved inwards by half the band (radially from the hull's centre)
    centre = hull.mean(0)
    radius = np.maximum(np.linalg.norm(hull - centre, axis=1, keepdims=True), 1e-6)
    hull = centre + (hull - centre) * np.maximum(radius - band / 2, 0.0) / radius
    cv2.fillPoly(mask, [np.round(hull * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    dist = cv2.distanceTransform((1 - mask).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(1.0 - dist / band, 0.0, 1.0).astype(np.float32), x0, y0


@dataclass(frozen=True, eq=False)
class UVTexels:
    """The texels covered by a model's UV layout on the (size, size) grid: flat index (N,),
    triangle id (N,), the triangle's vertex ids (N, 3) and barycentrics (N, 3); the
    interpolation matrices (N, V) from vertices to the texels' surface points and to their
    mirror points, the mirrored triangles (F, 3), the number of covered texels in each
    covered texel's 3x3 neighbourhood (N,), the bilinear interpolation matrix
    (V, T * T) from texels to the vertices' UVs, and the layout rasterised
    (`facefit.texture.atlas.texture_layout`: per-corner UVs, fixed-colour cells) and each
    triangle's area in texels (F,), whether each covered texel is sampled from the photo
    (N,) (the layout's ``sampled`` triangles), and the seam band of filled islands
    (`_seam_band`)."""

    size: int
    index: np.ndarray
    triangle_id: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    interp: sparse.csr_matrix
    mirror_interp: sparse.csr_matrix
    mirror_triangles: np.ndarray
    covered_around: np.ndarray
    vertex_interp: sparse.csr_matrix
    layout: TextureLayout
    texel_area: np.ndarray
    sampled: np.ndarray
    seam_index: np.ndarray
    seam_matrix: sparse.csr_matrix | None


@functools.lru_cache(maxsize=4)
def uv_texels(model: MorphableModel, size: int) -> UVTexels:
    """The model's triangles rasterised on the (size, size) texel grid, and everything that
    depends only on the topology and UV layout (cached per model)."""
    layout = texture_layout(model)
    uv = layout.uv
    uv_px = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5,
                      np.zeros(len(uv), np.float32)], axis=1)
    r = rasterize(uv_px, layout.triangle_uv, size, size)
    index = np.flatnonzero(r.triangle_id.reshape(-1) >= 0)
    tid = r.triangle_id.reshape(-1)[index]
    # barycentrics of a triangle's UV corners are those of its vertices (same corner order)
    ids = np.asarray(model.triangles, np.int64)[tid]
    bary = r.bary.reshape(-1, 3)[index]
    n, nv = len(index), model.num_vertices
    mids = np.asarray(model.mirror_ids, np.int64)
    rows = np.repeat(np.arange(n), 3)
    texel_area = np.abs(signed_area_2d(uv_px[:, :2].astype(np.float64),
                                       layout.triangle_uv)).astype(np.float32)

    def matrix(cols: np.ndarray) -> sparse.csr_matrix:
        # duplicates (degenerate triangles) are summed, as in the barycentric sum
        return sparse.csr_matrix((bary.reshape(-1), (rows, cols.reshape(-1))), shape=(n, nv))

    cov = np.zeros(size * size, np.float32)
    cov[index] = 1.0
    around = cv2.boxFilter(cov.reshape(size, size), -1, (3, 3), normalize=False,
                           borderType=cv2.BORDER_CONSTANT).reshape(-1)[index]
    return UVTexels(size, index, tid, ids, bary, matrix(ids), matrix(mids[ids]),
                   mids[np.asarray(model.triangles)], around,
                   _bilinear_matrix(layout.vertex_uv[:, 0] * size - 0.5,
                                    (1.0 - layout.vertex_uv[:, 1]) * size - 0.5, size, size),
                   layout, texel_area, layout.sampled[tid],
                   *_seam_band(layout, np.asarray(model.triangles, np.int64), index, tid, bary,
                               size))


def _seam_band(layout: TextureLayout, triangles: np.ndarray, index: np.ndarray,
               tid: np.ndarray, bary: np.ndarray, size: int
               ) -> tuple[np.ndarray, sparse.csr_matrix | None]:
    """The covered texels of filled (not sampled, not fixed) triangles with a corner on a
    seam to a sampled triangle (flat indices (B,)), and the (B, T * T) matrix that gives
    each the texture at the sampled side's UVs of those corners (barycentric weights);
    (empty, None) when no filled triangle meets a sampled one."""
    sampled = layout.sampled
    src = np.full(int(triangles.max(initial=-1)) + 1, -1, np.int64)
    src[triangles[sampled].reshape(-1)] = layout.triangle_uv[sampled].reshape(-1)
    filled = ~(sampled | layout.fixed)
    corner_src = src[triangles[tid]]  # (N, 3) the sampled-side UV of each corner's vertex
    seam = (corner_src >= 0) & (corner_src != layout.triangle_uv[tid])
    band = np.flatnonzero(filled[tid] & seam.any(1))
    if len(band) == 0:
        return np.zeros(0, np.int64), None
    w = np.where(seam[band], bary[band], 0.0)
    w = (w + 1e-6 * seam[band]) / (w + 1e-6 * seam[band]).sum(1, keepdims=True)
    rows = np.repeat(np.arange(len(band)), 3)
    cols = np.where(seam[band], corner_src[band], 0).reshape(-1)
    pick = sparse.csr_matrix((w.reshape(-1).astype(np.float32), (rows, cols)),
                             shape=(len(band), len(layout.uv)))
    uv = layout.uv
    return index[band], (pick @ _bilinear_matrix(uv[:, 0] * size - 0.5,
                                                 (1.0 - uv[:, 1]) * size - 0.5, size,
                                                 size)).tocsr()


def _bilinear_matrix(x: np.ndarray, y: np.ndarray, height: int, width: int
                     ) -> sparse.csr_matrix:
    """(N, H * W) sparse matrix of bilinear weights: ``M @ image.reshape(H * W, C)`` samples
    an (H, W, C) image at points (x, y) (integer pixel centres, clamped at the border)."""
    x = np.clip(np.asarray(x, np.float32), 0, width - 1)
    y = np.clip(np.asarray(y, np.float32), 0, height - 1)
    xi = np.minimum(np.floor(x).astype(np.int64), max(width - 2, 0))
    yi = np.minimum(np.floor(y).astype(np.int64), max(height - 2, 0))
    fx, fy = x - xi, y - yi
    xj, yj = np.minimum(xi + 1, width - 1), np.minimum(yi + 1, height - 1)
    cols = np.stack([yi * width + xi, yi * width + xj, yj * width + xi, yj * width + xj], 1)
    vals = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    rows = np.repeat(np.arange(len(x)), 4)
    return sparse.csr_matrix((vals.reshape(-1).astype(np.float32), (rows, cols.reshape(-1))),
                             shape=(len(x), height * width))


def _towards(cross: np.ndarray) -> np.ndarray:
    """(F,) float32 cosine towards the camera of (F, 3) image-space normals: `_facing`'s
    first output (compiled where the extension is built: the same numbers)."""
    lib = native_library()
    c = np.ascontiguousarray(cross, np.float32)
    if lib is None or c.ndim != 2 or c.shape[1] != 3:
        return _facing(cross)[0]
    out = np.empty(len(c), np.float32)
    lib.ff_towards(c.ctypes.data, len(c), out.ctypes.data)
    return out


def _facing(cross: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From (F, 3) image-space normals (any length): the cosine towards the camera (F,) and
    the depth slope |dz/dxy| (F,), capped where the surface is too oblique to be used
    (facing the camera means a cosine above `MIN_FACING`)."""
    length = np.sqrt(np.einsum("ij,ij->i", cross, cross))
    towards = -cross[:, 2] / np.maximum(length, 1e-30)
    sin = np.sqrt(np.maximum(1.0 - towards**2, 0.0))
    return towards, sin / np.maximum(towards, MIN_FACING)


ZBUFFER_SIDE = 256
"""The visibility z-buffer of a larger face is rasterised on a coarser grid: a photo's
pixels finer than the texels carry no more occlusion detail, and the raster's cost grows
with its pixel count."""


def _zbuffer(verts: np.ndarray, tri: np.ndarray, window: tuple[int, int, int, int],
             max_side: int | None = None) -> tuple[np.ndarray, int, int, float]:
    """Depth buffer of the mesh over the image window (x0, y0, x1, y1), its corner and its
    pixel step: z-buffer pixel (i, j) lies at image point (x0 + step j, y0 + step i), the
    step is 1 unless the window's longer side exceeds ``max_side``. Back faces are left out:
    on an open face mask seen from the front, the first surface along a ray faces the camera,
    and only facing texels are tested against this buffer."""
    x0, y0, x1, y1 = window
    w, h = max(x1 - x0, 0), max(y1 - y0, 0)
    step = max(1.0, max(w, h) / max_side) if max_side else 1.0
    shifted = (verts - np.array([x0, y0, 0], np.float32)) / np.array([step, step, 1],
                                                                    np.float32)
    hz = int(np.ceil((h - 1) / step)) + 1 if h > 0 else 0
    wz = int(np.ceil((w - 1) / step)) + 1 if w > 0 else 0
    return depth_buffer(shifted, tri, hz, wz, cull="back"), x0, y0, step


def _depth_test(pos: np.ndarray, zbuf: np.ndarray, x0: int, y0: int, step: float,
                tol: np.ndarray) -> np.ndarray:
    """True where points ``pos`` (..., 3) lie within ``tol`` of the z-buffer's nearest pixel
    (`_zbuffer`'s grid)."""
    if step == 1.0:
        ix = np.rint(pos[..., 0]).astype(np.int64) - x0
        iy = np.rint(pos[..., 1]).astype(np.int64) - y0
    else:
        ix = np.rint((pos[..., 0] - x0) / step).astype(np.int64)
        iy = np.rint((pos[..., 1] - y0) / step).astype(np.int64)
    h, w = zbuf.shape
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    if zbuf.size == 0:
        return inside
    z = zbuf.reshape(-1).take(np.clip(iy, 0, max(h - 1, 0)) * w + np.clip(ix, 0, max(w - 1, 0)))
    return inside & (pos[..., 2] <= z + tol)


def paint_cells(texture: np.ndarray, layout: TextureLayout) -> None:
    """Paint the layout's fixed-colour cells (eyes, teeth, ... of an ICT head) into the
    (T, T, 3) ``texture`` in place."""
    size = texture.shape[0]
    for (u0, v0, u1, v1), colour in layout.cells:
        j0, j1 = int(np.floor(u0 * size)), int(np.ceil(u1 * size))
        i0, i1 = int(np.floor((1.0 - v1) * size)), int(np.ceil((1.0 - v0) * size))
        texture[max(i0, 0):i1, max(j0, 0):j1] = colour


def pull_push(color: np.ndarray, known: np.ndarray) -> np.ndarray:
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
        # alpha * (cw / max(w, 1e-6)) + (1 - alpha) * up, in place (the same operations)
        filled = np.divide(cw, np.maximum(w, 1e-6)[..., None])
        filled *= alpha
        up *= 1.0 - alpha
        filled += up
    out = cv2.pyrUp(filled, dstsize=(w0.shape[1], w0.shape[0])).reshape(color.shape)
    diff = np.subtract(color, out)
    diff *= w0[..., None]
    out += diff  # known * color + (1 - known) * fill
    np.copyto(out, color, where=trusted[..., None] > 0)
    return out


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
    zbuf, x0, y0, step = _zbuffer(verts, tri, crop_window(verts, image.shape[0],
                                                          image.shape[1]))
    towards, slope = _facing(triangle_cross(verts, tri))
    extent = float(np.ptp(verts[:, :2], axis=0).max()) if len(verts) else 0.0
    texels = uv_texels(model, size)
    pos = np.asarray(texels.interp @ verts, np.float32)
    visible = (towards > MIN_FACING)[texels.triangle_id] & _depth_test(
        pos, zbuf, x0, y0, step, 1.0 + 0.01 * extent + 0.75 * slope[texels.triangle_id])
    map_xy = np.full((size * size, 2), -1e4, np.float32)
    map_xy[texels.index] = pos[:, :2]
    colour = cv2.remap(image, map_xy.reshape(size, size, 2), None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    weight = np.zeros(size * size, np.float32)
    weight[texels.index] = np.where(visible & texels.sampled, towards[texels.triangle_id], 0.0)
    return colour, weight.reshape(size, size)


def merge_texels(colours: list[np.ndarray], weights: list[np.ndarray], power: float = 2.0,
                 model: MorphableModel | None = None) -> np.ndarray:
    """(T, T, 3) uint8 texture from several views' `texel_samples`: a weighted mean
    (weight ``cos^power`` of the viewing angle), hidden texels from their mirror texel
    (the texel mirrored about u = 0.5: a layout symmetric about it, as the default model's;
    skipped for ``model``'s packed per-corner layout, e.g. ICT's, whose fixed-colour cells
    are painted instead), the rest filled by pull-push."""
    acc = np.zeros_like(colours[0], dtype=np.float32)
    wsum = np.zeros(colours[0].shape[:2], np.float32)
    for c, w in zip(colours, weights, strict=True):
        wp = np.power(w, power, dtype=np.float32)
        acc += c * wp[..., None]
        wsum += wp
    known = wsum > 1e-6
    color = np.where(known[..., None], acc / np.maximum(wsum, 1e-6)[..., None], 0.0)
    layout = texture_layout(model) if model is not None else None
    mirrored = ~known & known[:, ::-1]
    if layout is not None and not layout.per_vertex:
        mirrored[:] = False
    color[mirrored] = color[:, ::-1][mirrored]
    texture = np.clip(pull_push(color.astype(np.float32), known | mirrored) + 0.5, 0,
                      255).astype(np.uint8)
    if layout is not None:
        paint_cells(texture, layout)
    return texture
