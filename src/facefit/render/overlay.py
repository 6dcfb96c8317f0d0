"""Fast overlay frames for ``facefit video``: the shaded mesh over each frame.

The same picture as `facefit.io.export.render_overlay` (Lambert + ambient, alpha blended,
landmark dots), made cheaper for a stream of frames:

- Level of detail: where the model's triangles are smaller than a pixel, most of them cover
  no pixel centre and rasterising them is wasted. The mesh is simplified once by vertex
  clustering (Rossignac & Borrel, "Multi-resolution 3D approximations for rendering complex
  scenes", 1993) on the mean face at a few cell sizes; each frame uses the coarsest level
  whose cells are at most ``max_cell_px`` pixels at the frame's scale.
- Rasterised only inside the face's crop window (`facefit.render.raster.crop_window`), and
  at half resolution for a face drawn above ``half_res_above`` px/mm (shade and opacity
  upsampled bilinearly: a quarter of the pixels, a coarser level of detail).
- Vertex normals by one sparse product with a cached vertex-triangle incidence matrix, and
  shading per vertex (Gouraud), interpolated as one channel.
- The mesh fades out towards its open edge (`facefit.render.rim`), and faces seen from
  behind are shaded with their normal moved continuously onto the camera's side
  (`facefit.render.shading.visible_side`): no jagged, striped fringe at the cut.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp

from facefit.render.raster import crop_window, interpolate, native_library, rasterize
from facefit.render.rim import RIM_BAND_MM, rim_weight
from facefit.render.shading import DEFAULT_LIGHT, triangle_cross, visible_side


class _Level:
    def __init__(self, ids: np.ndarray, triangles: np.ndarray, n: int, cell_mm: float) -> None:
        self.ids, self.triangles, self.cell_mm = ids, triangles, cell_mm
        self.rim: np.ndarray | None = None  # (n,) opacity factor, set by OverlayRenderer
        f = len(triangles)
        self.incidence = sp.csr_matrix(
            (np.ones(3 * f, np.float32), (triangles.ravel(), np.repeat(np.arange(f), 3))),
            shape=(n, f))


def _cluster(mean: np.ndarray, triangles: np.ndarray, cell_mm: float) -> _Level:
    """Vertex clustering: one representative vertex (nearest its cell's centroid) per cell."""
    x = np.asarray(mean, np.float64)
    g = np.floor(x / cell_mm).astype(np.int64)
    g -= g.min(0)
    _, lab = np.unique((g[:, 0] << 42) | (g[:, 1] << 21) | g[:, 2], return_inverse=True)
    lab = lab.ravel()
    k = int(lab.max()) + 1
    centroid = np.stack([np.bincount(lab, x[:, c], k) for c in range(3)], 1)
    centroid /= np.bincount(lab, minlength=k)[:, None]
    d = ((x - centroid[lab]) ** 2).sum(1)
    order = np.lexsort((d, lab))  # per cell, nearest first
    first = np.flatnonzero(np.r_[True, lab[order][1:] != lab[order][:-1]])
    rep = order[first]  # rep[c] = representative vertex of cell c
    t = lab[np.asarray(triangles, np.int64)]
    ok = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])
    t = t[ok]
    key = np.sort(t, axis=1)
    _, first_t = np.unique((key[:, 0] << 42) | (key[:, 1] << 21) | key[:, 2], return_index=True)
    t = t[np.sort(first_t)].astype(np.int32)
    return _Level(rep, t, k, cell_mm)


class OverlayRenderer:
    """Reusable overlay renderer for one model's topology.

    Args:
        mean: (V, 3) mean face (mm) on which the levels of detail are built.
        triangles: (F, 3) the model's triangles.
        cells_mm: cluster cell sizes of the simplified levels (the full mesh is level 0),
            each simplified when a render first needs it.
        max_cell_px: a level is used only if its cell is at most this many pixels.
        alpha: opacity of the mesh.
        rim_mm: the mesh fades out over this distance (mm on the mean face) towards its open
            edge (`facefit.render.rim`): the ragged band of thin, folded triangles at the
            cut is not drawn as a jagged fringe.
        half_res_above: a face drawn at more than this many px/mm is rasterised at half
            resolution (and a coarser level of detail), its shade and opacity upsampled
            bilinearly: a quarter of the pixels for a smooth (Gouraud) picture, with a
            silhouette softened over a pixel. None: always full resolution.
    """

    def __init__(self, mean: np.ndarray, triangles: np.ndarray,
                 cells_mm: tuple[float, ...] = (1.5, 2.0, 3.0), max_cell_px: float = 2.0,
                 alpha: float = 0.6, rim_mm: float = RIM_BAND_MM,
                 half_res_above: float | None = 1.0) -> None:
        self._mean = mean
        self._triangles = np.asarray(triangles).astype(np.int32)
        self._rim = rim_weight(mean, self._triangles, rim_mm)
        self.cells_mm = (0.0, *sorted(cells_mm))  # 0: the full mesh
        self._built: dict[float, _Level] = {}  # levels are simplified when first used
        self.max_cell_px = max_cell_px
        self.half_res_above = half_res_above
        self.alpha = alpha
        light = np.asarray(DEFAULT_LIGHT, np.float32)
        self.light = light / np.linalg.norm(light)

    @property
    def levels(self) -> list[_Level]:
        """Every level of detail, the full mesh first."""
        return [self._level(c) for c in self.cells_mm]

    def _level(self, cell_mm: float) -> _Level:
        """The level of cell ``cell_mm`` (0: the full mesh), simplified on first use."""
        lv = self._built.get(cell_mm)
        if lv is None:
            tri = self._triangles
            if cell_mm == 0.0:
                n = len(self._mean)
                lv = _Level(np.arange(n), tri, n, 0.0)
            else:
                lv = _cluster(self._mean, tri, cell_mm)
            lv.rim = self._rim[lv.ids]
            self._built[cell_mm] = lv
        return lv

    def level_for(self, scale: float) -> _Level:
        """The coarsest level whose cell is at most ``max_cell_px`` at ``scale`` px/mm."""
        best = self.cells_mm[0]
        for cell in self.cells_mm[1:]:
            if cell * scale <= self.max_cell_px:
                best = cell
        return self._level(best)

    def render(self, image_rgb: np.ndarray, verts_px: np.ndarray, scale: float,
               landmarks_2d: np.ndarray | None = None, ambient: float = 0.3,
               color: tuple[float, float, float] = (0.85, 0.85, 0.85)) -> np.ndarray:
        """(H, W, 3) uint8 overlay of the mesh ``verts_px`` (V, 3; x, y px, depth) drawn at
        ``scale`` px/mm over a copy of ``image_rgb``."""
        out = np.array(image_rgb[..., :3], dtype=np.uint8, order="C", copy=True)
        h, w = out.shape[:2]
        k = 2 if self.half_res_above is not None and scale > self.half_res_above else 1
        lv = self.level_for(scale / k)
        v = np.asarray(verts_px, np.float32)[lv.ids]
        x0, y0, x1, y1 = crop_window(v, h, w)
        if x1 > x0 and y1 > y0:
            # rasterised on a grid k times coarser: pixel (i, j) centred at (k j, k i) +
            # (k - 1) / 2 of the crop
            n = np.asarray(lv.incidence @ triangle_cross(v, lv.triangles), np.float32)
            off = (k - 1) / 2.0
            v = (v - np.array([x0 + off, y0 + off, 0], np.float32)) / np.array(
                [k, k, 1], np.float32)
            hk, wk = -(-(y1 - y0) // k), -(-(x1 - x0) // k)
            raster = rasterize(v, lv.triangles, hk, wk)
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
            shade = ambient + (1.0 - ambient) * np.maximum(visible_side(n) @ self.light, 0.0)
            attrs = interpolate(raster, np.stack([shade, lv.rim], 1).astype(np.float32))
            crop = out[y0:y1, x0:x1]
            if k > 1:  # opacity-premultiplied shade and opacity, upsampled bilinearly
                attrs[..., 0] *= attrs[..., 1]
                attrs = cv2.resize(attrs, (wk * k, hk * k), interpolation=cv2.INTER_LINEAR)
                attrs = attrs[: y1 - y0, : x1 - x0]
            lib = native_library()
            if lib is not None:  # the blend below, the same float32 operations in C
                col = np.asarray(color, np.float32)
                lib.ff_overlay_blend(attrs.ctypes.data, y1 - y0, x1 - x0,
                                     attrs.strides[0] // 4, int(k > 1), self.alpha,
                                     col.ctypes.data, crop.ctypes.data, crop.strides[0])
                return self._landmarks(out, landmarks_2d)
            if k > 1:
                attrs[..., 0] /= np.maximum(attrs[..., 1], 1e-12)
            # blended over the whole window: where nothing is drawn the opacity is 0 and
            # (1 - 0) px + 0 + 0.5 truncates to px again (cheaper than masked gathers)
            s, a = attrs[..., :1], self.alpha * attrs[..., 1:]
            rgb = np.multiply(s, np.asarray(color, np.float32))
            rgb = np.clip(rgb, 0.0, 1.0, out=rgb)
            rgb *= 255.0
            rgb *= a
            blend = crop.astype(np.float32)
            blend *= 1 - a
            blend += rgb
            blend += 0.5
            crop[...] = blend.astype(np.uint8)
        return self._landmarks(out, landmarks_2d)

    @staticmethod
    def _landmarks(out: np.ndarray, landmarks_2d: np.ndarray | None) -> np.ndarray:
        """``out`` with the landmarks drawn as dots (in place)."""
        if landmarks_2d is not None:
            h, w = out.shape[:2]
            radius = max(1, round(min(h, w) / 250))
            pts = np.asarray(landmarks_2d, np.float64)[:, :2]
            # 1/16-pixel fixed point, rounded half to even (as Python's round) at once
            fixed = np.round(pts[np.isfinite(pts).all(1)] * 16).astype(np.int64)
            for x, y in fixed.tolist():
                cv2.circle(out, (x, y), radius * 16, (0, 255, 0), -1, lineType=cv2.LINE_AA,
                           shift=4)
        return out
