"""A vectorised z-buffer triangle rasteriser (numpy only).

Convention: pixel ``(row i, column j)`` has its centre at ``x = j, y = i`` (integer pixel
centres, as in `cv2.remap` and array indexing), so a point ``(x, y)`` samples the image
bilinearly between the four nearest array elements. A pixel is covered by a triangle when
its centre lies inside or on the triangle's edges. Depth ``z`` is interpolated linearly in
screen space; the smallest depth wins (larger is farther).

Two implementations with the same arithmetic (float32, operation by operation), so they cover
the same pixels with the same depths; a depth tie goes to the triangle with the larger id:

* compiled (`_craster.c`, built with the package as an optional extension and loaded with
  ctypes): a loop over each triangle's bounding box, 10-30x faster;
* numpy, where the extension was not built (or ``FACEFIT_NATIVE=0``): every triangle's
  candidate pixels are tested at once in blocks of a few sizes, and the depth conflicts are
  resolved with ``np.minimum.at``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass

import numpy as np


def _load_native() -> ctypes.CDLL | None:
    """The compiled extension (``ff_rasterize``, ``ff_triangle_cross``), or None when it is
    not built or disabled (``FACEFIT_NATIVE=0``)."""
    if os.environ.get("FACEFIT_NATIVE", "1") == "0":
        return None
    try:
        spec = importlib.util.find_spec("facefit.render._craster")
        if spec is None or not spec.origin:
            return None
        lib = ctypes.CDLL(spec.origin)
        ptr, i64 = ctypes.c_void_p, ctypes.c_longlong
        lib.ff_rasterize.restype = None
        lib.ff_rasterize.argtypes = [ptr, i64, ptr, i64, i64, i64, ctypes.c_int, ptr, ptr, ptr]
        lib.ff_triangle_cross.restype = None
        lib.ff_triangle_cross.argtypes = [ptr, i64, ptr, i64, ptr]
        lib.ff_sample_rgb8.restype = None
        lib.ff_sample_rgb8.argtypes = [ptr, i64, i64, ptr, i64, ptr]
        lib.ff_triangle_terms.restype = ctypes.c_float
        f32 = ctypes.c_float
        lib.ff_triangle_terms.argtypes = [ptr, i64, ptr, i64, f32, ptr, f32, f32, f32, f32,
                                          ptr, ptr, ptr, ptr]
        lib.ff_towards.restype = None
        lib.ff_towards.argtypes = [ptr, i64, ptr]
        lib.ff_interpolate.restype = None
        lib.ff_interpolate.argtypes = [ptr, ptr, i64, ptr, ptr, i64, ptr]
        lib.ff_overlay_blend.restype = None
        lib.ff_overlay_blend.argtypes = [ptr, i64, i64, i64, ctypes.c_int, ctypes.c_float,
                                         ptr, ptr, i64]
        lib.ff_blend_views.restype = None
        lib.ff_blend_views.argtypes = [i64] + [ptr] * 7
        lib.ff_texel_view.restype = i64
        lib.ff_texel_view.argtypes = ([ptr, i64, ptr, ptr, ptr, i64, ptr, ptr, i64]
                                      + [ptr] * 7 + [ptr, i64, i64, i64, i64, ctypes.c_float,
                                                     ctypes.c_int, i64] + [ptr] * 12)
    except (ImportError, OSError, AttributeError, ValueError):
        return None
    return lib


_NATIVE = _load_native()
_CULL = {None: 0, "back": 1, "front": 2}


def native() -> bool:
    """True when the compiled rasteriser is in use."""
    return _NATIVE is not None


def native_library() -> ctypes.CDLL | None:
    """The compiled extension's library (its functions' arguments typed), or None when it is
    not built or disabled: for the other compiled passes (`facefit.texture.extract`)."""
    return _NATIVE


def sample_rgb8(image: np.ndarray, xy: np.ndarray) -> np.ndarray | None:
    """(N, 3) float32 bilinear samples of an (H, W, 3) uint8 image at the points ``xy``
    (N, 2) by the compiled extension, the numbers of `cv2.remap` (``INTER_LINEAR``,
    ``BORDER_REPLICATE``: the point rounded to 1/32 pixel, 15-bit fixed-point weights), or
    None without it."""
    if _NATIVE is None:
        return None
    img = np.ascontiguousarray(image, np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {img.shape}")
    pts = np.ascontiguousarray(xy, np.float32).reshape(-1, 2)
    out = np.zeros((len(pts), 3), np.float32)
    _NATIVE.ff_sample_rgb8(img.ctypes.data, img.shape[0], img.shape[1], pts.ctypes.data,
                           len(pts), out.ctypes.data)
    return out


def compiled_triangle_cross(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray | None:
    """(F, 3) float32 ``cross(v1 - v0, v2 - v0)`` by the compiled extension (the numbers of
    `facefit.render.shading.triangle_cross`'s numpy path), or None without it."""
    if _NATIVE is None:
        return None
    v, tri = native_mesh(verts, triangles)
    out = np.empty((len(tri), 3), np.float32)
    _NATIVE.ff_triangle_cross(v.ctypes.data, len(v), tri.ctypes.data, len(tri), out.ctypes.data)
    return out


@dataclass(frozen=True, eq=False)
class Raster:
    """Per-pixel result of `rasterize`.

    Attributes:
        triangle_id: (H, W) int32 id of the visible triangle, -1 for background.
        bary: (H, W, 3) float32 barycentrics of the pixel centre in that triangle
            (weights of its vertices 0, 1, 2; zero for background).
        depth: (H, W) float32 interpolated depth, ``inf`` for background.
        triangles: (F, 3) the triangles that ``triangle_id`` refers to.
    """

    triangle_id: np.ndarray
    bary: np.ndarray
    depth: np.ndarray
    triangles: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a triangle is visible."""
        return self.triangle_id >= 0


def rasterize(
    verts_px: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    cull: str | None = None,
) -> Raster:
    """Rasterise a triangle mesh with a z-buffer.

    Args:
        verts_px: (V, 3) vertices: x right, y down in pixels (integer pixel centres), z depth
            (smaller is nearer). Use a constant z for a flat 2D layout (e.g. UV space).
        triangles: (F, 3) integer vertex ids.
        height, width: size of the output grid in pixels.
        cull: None (draw both sides), ``"back"`` or ``"front"``. Front-facing means a
            negative signed area in x-right, y-down coordinates: counter-clockwise as the
            viewer sees it, the normal of a mesh wound counter-clockwise from outside
            pointing towards the viewer (-z).

    Returns:
        A `Raster` of shape (height, width).
    """
    tri = np.asarray(triangles).reshape(-1, 3).astype(np.int32, copy=False)
    tid_img = np.full((height, width), -1, np.int32)
    bary_img = np.zeros((height, width, 3), np.float32)
    depth_img = np.full((height, width), np.inf, np.float32)
    if _native_raster(verts_px, tri, height, width, cull, depth_img, tid_img, bary_img):
        return Raster(tid_img, bary_img, depth_img, tri)
    frags = _fragments(verts_px, tri, height, width, cull)
    if frags is None:
        return Raster(tid_img, bary_img, depth_img, tri)
    pix, z, t, b1, b2 = frags

    # Depth resolve: per-pixel minimum, then the largest triangle id among the minima.
    depth_flat = depth_img.reshape(-1)
    np.minimum.at(depth_flat, pix, z)
    win = np.flatnonzero(z <= depth_flat.take(pix))
    tid_flat = tid_img.reshape(-1)
    np.maximum.at(tid_flat, pix.take(win), t.take(win))
    win = win[tid_flat.take(pix.take(win)) == t.take(win)]  # one fragment per pixel
    pw = pix.take(win)
    b1, b2 = b1.take(win), b2.take(win)
    bary_img.reshape(-1, 3)[pw] = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
    return Raster(tid_img, bary_img, depth_img, tri)


def depth_buffer(
    verts_px: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    cull: str | None = None,
) -> np.ndarray:
    """(height, width) float32 z-buffer of the mesh (``inf`` for background): the ``depth``
    of `rasterize` with the same arguments, without resolving which triangle wins."""
    tri = np.asarray(triangles).reshape(-1, 3).astype(np.int32, copy=False)
    depth_img = np.full((height, width), np.inf, np.float32)
    if _native_raster(verts_px, tri, height, width, cull, depth_img):
        return depth_img
    frags = _fragments(verts_px, tri, height, width, cull, with_ids=False)
    if frags is not None:
        np.minimum.at(depth_img.reshape(-1), frags[0], frags[1])
    return depth_img


def _native_raster(verts_px: np.ndarray, tri: np.ndarray, height: int, width: int,
                   cull: str | None, depth: np.ndarray, tid: np.ndarray | None = None,
                   bary: np.ndarray | None = None) -> bool:
    """Rasterise into ``depth`` (and ``tid``, ``bary``) with the compiled extension; False
    (nothing written) when it is not available."""
    if _NATIVE is None:
        return False
    if cull not in _CULL:
        raise ValueError(f"cull must be None, 'back' or 'front', got {cull!r}")
    v, tri = native_mesh(verts_px, tri)
    if len(tri) == 0 or height <= 0 or width <= 0:
        return True
    null = None
    _NATIVE.ff_rasterize(v.ctypes.data, len(v), tri.ctypes.data, len(tri), height, width,
                         _CULL[cull], depth.ctypes.data, null if tid is None else tid.ctypes.data,
                         null if bary is None else bary.ctypes.data)
    return True


def native_mesh(verts: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float32 and (F, 3) int32 C-contiguous copies (or the arrays themselves) for the
    compiled functions; IndexError for a vertex id outside the vertices (the C code reads
    memory at them)."""
    v = np.ascontiguousarray(verts, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {v.shape}")
    tri = np.ascontiguousarray(np.asarray(triangles).reshape(-1, 3), dtype=np.int32)
    if len(tri) and (int(tri.min()) < 0 or int(tri.max()) >= len(v)):
        raise IndexError(f"triangle vertex ids must lie in [0, {len(v)}), got "
                         f"[{int(tri.min())}, {int(tri.max())}]")
    return v, tri


def _fragments(verts_px: np.ndarray, tri: np.ndarray, height: int, width: int,
               cull: str | None, with_ids: bool = True
               ) -> tuple[np.ndarray, ...] | None:
    """Every covered (pixel, triangle) pair: flat pixel index, depth, triangle id and the
    barycentrics b1, b2 (the last three only ``with_ids``); None when nothing is covered."""
    v = np.asarray(verts_px, dtype=np.float32)
    if len(tri) == 0 or height <= 0 or width <= 0:
        return None

    # Per-triangle set-up in float32 (exact enough: see _EPS), few temporaries.
    vx, vy = np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1])
    ia, ib, ic = np.ascontiguousarray(tri.T)
    # np.take: row gathers about 3x faster than fancy indexing
    xa, xb, xc = vx.take(ia), vx.take(ib), vx.take(ic)
    ya, yb, yc = vy.take(ia), vy.take(ib), vy.take(ic)
    x0 = np.ceil(np.minimum(np.minimum(xa, xb), xc))
    x1 = np.floor(np.maximum(np.maximum(xa, xb), xc))
    y0 = np.ceil(np.minimum(np.minimum(ya, yb), yc))
    y1 = np.floor(np.maximum(np.maximum(ya, yb), yc))
    np.maximum(x0, 0, out=x0)
    np.maximum(y0, 0, out=y0)
    np.minimum(x1, width - 1, out=x1)
    np.minimum(y1, height - 1, out=y1)
    d1x, d1y, d2x, d2y = xb - xa, yb - ya, xc - xa, yc - ya
    den = d1x * d2y - d1y * d2x  # twice the signed screen area
    keep = (x1 >= x0) & (y1 >= y0) & (den != 0)  # NaNs fail every comparison
    if cull == "back":
        keep &= den < 0
    elif cull == "front":
        keep &= den > 0
    elif cull is not None:
        raise ValueError(f"cull must be None, 'back' or 'front', got {cull!r}")

    # Size classes: triangles whose bounding boxes fit in (cw, ch) pixels are tested on a
    # dense (n, ch, cw) block of candidate pixel centres, broadcasting per-triangle values.
    kept = np.flatnonzero(keep)
    if len(kept) == 0:
        return None
    span_x, span_y = x1 - x0, y1 - y0
    bw = span_x.take(kept).astype(np.int32) + 1
    bh = span_y.take(kept).astype(np.int32) + 1
    sizes, lut = _size_classes(max(int(bw.max()), int(bh.max())))
    key = (lut[bh] * len(sizes) + lut[bw]).astype(np.int16)
    order = np.argsort(key, kind="stable")  # radix sort for int16
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    vz = np.ascontiguousarray(v[:, 2])
    parts = []
    for grp in np.split(order, bounds):
        ids = kept[grp]
        ch, cw = divmod(int(key[grp[0]]), len(sizes))
        ch, cw = sizes[ch], sizes[cw]
        gx0, gy0 = x0.take(ids), y0.take(ids)
        qx = (gx0 - xa.take(ids))[:, None, None] + np.arange(cw, dtype=np.float32)[None, None, :]
        qy = (gy0 - ya.take(ids))[:, None, None] + np.arange(ch, dtype=np.float32)[None, :, None]
        inv = (1.0 / den.take(ids))[:, None, None]
        e2y, e2x = d2y.take(ids)[:, None, None], d2x.take(ids)[:, None, None]
        e1x, e1y = d1x.take(ids)[:, None, None], d1y.take(ids)[:, None, None]
        b1 = (e2y * qx - e2x * qy) * inv
        b2 = (e1x * qy - e1y * qx) * inv
        ok = (1.0 - b1 - b2 >= _EPS) & (b1 >= _EPS) & (b2 >= _EPS)
        n_, r_, c_ = np.nonzero(ok)
        if cw > 1 or ch > 1:  # padded blocks reach past the box (and maybe the image)
            tn = ids.take(n_)
            inside = (c_ <= span_x.take(tn)) & (r_ <= span_y.take(tn))
            n_, r_, c_ = n_[inside], r_[inside], c_[inside]
        t = ids.take(n_)
        flat = (n_ * ch + r_) * cw + c_
        b1, b2 = b1.reshape(-1).take(flat), b2.reshape(-1).take(flat)
        b0 = 1.0 - b1 - b2
        z = vz.take(ia.take(t)) * b0 + vz.take(ib.take(t)) * b1 + vz.take(ic.take(t)) * b2
        pix = ((gy0.take(n_).astype(np.int64) + r_) * width
               + (gx0.take(n_).astype(np.int64) + c_))
        parts.append((pix, z, t, b1, b2) if with_ids else (pix, z))
    return tuple(np.concatenate(a) for a in zip(*parts, strict=True))


# Tolerance of the inside test (barycentric units, float32 rounding is ~1e-7): pixel centres
# on a shared edge are covered by both triangles (the z-buffer picks one), never by neither.
_EPS = np.float32(-1e-6)


def _size_classes(max_side: int) -> tuple[list[int], np.ndarray]:
    """Block sides 1, 2, 3, 4, 6, 8, 12, 16, ... up to ``max_side``, and a lookup table
    (max_side + 1,) from a box side to the index of the smallest block that holds it."""
    sizes = [1, 2, 3]
    while sizes[-1] < max_side:
        sizes.append(sizes[-2] * 2)
    lut = np.searchsorted(np.asarray(sizes), np.arange(max_side + 1)).astype(np.int64)
    return sizes, lut


def interpolate(raster: Raster, vertex_attrs: np.ndarray) -> np.ndarray:
    """Interpolate per-vertex attributes over the raster (barycentric, screen-space linear).

    Args:
        raster: a `Raster` of the mesh.
        vertex_attrs: (V, C) or (V,) per-vertex values.

    Returns:
        (H, W, C) (or (H, W)) float32, zero on background pixels.
    """
    attrs = np.asarray(vertex_attrs, dtype=np.float32)
    flat = attrs.ndim == 1
    a = attrs[:, None] if flat else attrs
    h, w = raster.triangle_id.shape
    out = np.zeros((h, w, a.shape[1]), np.float32)
    if _NATIVE is not None and h * w:  # the same float32 sums, pixel by pixel
        tid = np.ascontiguousarray(raster.triangle_id, np.int32)
        bary = np.ascontiguousarray(raster.bary, np.float32)
        tri = np.ascontiguousarray(np.asarray(raster.triangles).reshape(-1, 3), np.int32)
        if int(tid.max()) >= len(tri) or (len(tri) and (int(tri.min()) < 0
                                                         or int(tri.max()) >= len(a))):
            raise IndexError("triangle ids or vertex ids out of range")
        a = np.ascontiguousarray(a)
        _NATIVE.ff_interpolate(tid.ctypes.data, bary.ctypes.data, h * w, tri.ctypes.data,
                               a.ctypes.data, a.shape[1], out.ctypes.data)
        return out[..., 0] if flat else out
    fg = np.flatnonzero(raster.triangle_id.reshape(-1) >= 0)
    tri = raster.triangles[raster.triangle_id.reshape(-1)[fg]]  # (N, 3)
    bary = raster.bary.reshape(-1, 3)[fg]
    out.reshape(-1, a.shape[1])[fg] = np.einsum("nk,nkc->nc", bary, a[tri])
    return out[..., 0] if flat else out


def crop_window(
    verts_px: np.ndarray, height: int, width: int, pad: int = 1
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel window (x1, y1 exclusive) of the mesh's 2D bounding box,
    padded by ``pad`` pixels and clipped to the image; empty (x1 <= x0) when outside."""
    lo, hi = finite_bounds(verts_px)
    if lo is None:
        return 0, 0, 0, 0
    x0 = int(np.clip(np.floor(lo[0]) - pad, 0, width))
    y0 = int(np.clip(np.floor(lo[1]) - pad, 0, height))
    x1 = int(np.clip(np.ceil(hi[0]) + pad + 1, 0, width))
    y1 = int(np.clip(np.ceil(hi[1]) + pad + 1, 0, height))
    return x0, y0, x1, y1


def finite_bounds(verts_px: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(2,) minimum and maximum of x and y over the vertices whose x and y are finite, or
    (None, None) when none is. Without a copy when every vertex is finite (a NaN or an
    infinity shows in the plain minimum or maximum)."""
    v = np.asarray(verts_px)[:, :2]
    if len(v) == 0:
        return None, None
    # per column: a reduction along axis 0 of the strided (V, 2) view is ~30x slower
    lo = np.array([v[:, 0].min(), v[:, 1].min()])
    hi = np.array([v[:, 0].max(), v[:, 1].max()])
    if np.isfinite(lo).all() and np.isfinite(hi).all():
        return lo, hi
    finite = v[np.isfinite(v).all(1)]
    if len(finite) == 0:
        return None, None
    return finite.min(0), finite.max(0)
