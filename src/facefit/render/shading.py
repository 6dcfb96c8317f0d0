"""Normals and a simple Lambertian render of a mesh, for overlays.

Image space (x right, y down, z = depth away from the viewer) is the view frame (x right,
y up, z towards the viewer) turned 180 degrees about x: a proper rotation, so plain cross
products keep their meaning. A triangle counter-clockwise seen from outside gets its outward
normal from ``cross(v1 - v0, v2 - v0)`` in both frames. When it faces the camera its image
space normal has negative z, and its signed area in x-right, y-down coordinates is negative
(clockwise in those coordinates, though it still looks counter-clockwise to the viewer).
"""

from __future__ import annotations

import cv2
import numpy as np

from facefit.render.raster import compiled_triangle_cross, interpolate, rasterize

DEFAULT_LIGHT = (0.3, -0.4, -1.0)
"""Direction towards the light in image space (x right, y down, z away): front, upper right."""


def triangle_cross(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F, 3) float32 ``cross(v1 - v0, v2 - v0)``: outward normals times twice the areas
    (compiled where `facefit.render.raster` has its extension: the same float32 numbers)."""
    out = compiled_triangle_cross(verts, triangles)
    if out is not None:
        return out
    v = np.asarray(verts, dtype=np.float32)
    tri = np.asarray(triangles)
    # np.take gathers rows about 3x faster than fancy indexing
    a = v.take(tri[:, 0], axis=0)
    e1 = v.take(tri[:, 1], axis=0) - a
    e2 = v.take(tri[:, 2], axis=0) - a
    return np.stack([
        e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
        e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
        e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0],
    ], axis=1)


def face_normals(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F, 3) float32 unit outward normals of triangles counter-clockwise seen from outside.

    ``verts`` is (V, 3) in any frame that is a rotation of the model frame (model frame,
    view frame, or image space x right / y down / z away); zero-area triangles get zeros.
    """
    return _unit(triangle_cross(verts, triangles))


def vertex_normals(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit vertex normals: area-weighted sums of the adjacent face normals."""
    n = triangle_cross(verts, triangles)
    ids = np.asarray(triangles).ravel()
    out = np.stack([
        np.bincount(ids, weights=np.repeat(n[:, c], 3), minlength=len(verts))
        for c in range(3)
    ], axis=1)
    return _unit(out)


def _unit(n: np.ndarray) -> np.ndarray:
    length = np.sqrt(np.einsum("ij,ij->i", n, n))[:, None]
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)


def visible_side(normals: np.ndarray) -> np.ndarray:
    """Unit normals (..., 3) (image space, z away from the camera) moved continuously onto
    the camera's side: a normal facing away (``n_z > 0``: a back face seen past the
    silhouette or through a fold) has its z component set to 0 and is renormalised.

    Flipping such normals instead (``n -> -n``) is discontinuous where the surface grazes
    the silhouette (hairline, neck, ears): neighbouring vertices with ``n_z`` of opposite
    sign get opposite normals, and the shading alternates light and dark in stripes
    along every open edge of the mesh. A normal pointing exactly away becomes 0 (ambient
    light only).
    """
    n = np.array(normals, dtype=np.float32, copy=True)
    n[..., 2] = np.minimum(n[..., 2], 0.0)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(length > 1e-6, n / np.maximum(length, 1e-6), 0.0).astype(np.float32)


def render_shaded(
    verts_px: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    light_dir: tuple[float, float, float] | np.ndarray = DEFAULT_LIGHT,
    color: tuple[float, float, float] = (0.85, 0.85, 0.85),
    ambient: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Lambertian + ambient render of a mesh in image space (smooth vertex normals).

    Args:
        verts_px: (V, 3) x right, y down in pixels, z depth (larger is farther).
        triangles: (F, 3) counter-clockwise seen from outside (model convention).
        height, width: output size in pixels.
        light_dir: direction towards the light in image space (normalised here).
        color: RGB albedo in [0, 1].
        ambient: ambient fraction in [0, 1].

    Returns:
        rgb: (H, W, 3) float32 in [0, 1], zero on background.
        mask: (H, W) bool, True where the mesh is drawn.
    """
    raster = rasterize(verts_px, triangles, height, width)
    normals = interpolate(raster, vertex_normals(verts_px, triangles))
    normals /= np.maximum(np.linalg.norm(normals, axis=2, keepdims=True), 1e-12)
    light = np.asarray(light_dir, dtype=np.float32)
    light = light / np.linalg.norm(light)
    lambert = np.maximum(visible_side(normals) @ light, 0.0)
    shade = ambient + (1.0 - ambient) * lambert
    mask = raster.mask
    rgb = shade[..., None] * np.asarray(color, np.float32) * mask[..., None]
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), mask


def render_textured_view(vertices_mm: np.ndarray, triangles: np.ndarray, uv: np.ndarray,
                         texture: np.ndarray, yaw_deg: float, size: int = 512,
                         background: int = 60) -> np.ndarray:
    """(size, size, 3) uint8: a textured mesh (model frame: y up, z towards the viewer) turned
    by ``yaw_deg`` about the vertical axis, orthographic, fitted to 90 % of the square, back
    faces culled, texture only (bilinear), on a grey background; for looking at textures.

    Args:
        vertices_mm: (V, 3) positions; triangles: (F, 3) counter-clockwise from outside.
        uv: (V, 2) texture coordinates, v up; texture: (T, T, 3) uint8, row 0 at v = 1.
    """
    from facefit.fit.camera import rotation_from_euler

    v = np.asarray(vertices_mm, np.float64) @ rotation_from_euler(yaw_deg, 0.0, 0.0).T
    centre = 0.5 * (v.min(0) + v.max(0))
    scale = 0.9 * size / np.ptp(v[:, :2], axis=0).max()
    px = np.c_[(v[:, 0] - centre[0]) * scale + size / 2, (centre[1] - v[:, 1]) * scale
               + size / 2, -v[:, 2] * scale].astype(np.float32)
    r = rasterize(px, triangles, size, size, cull="back")
    t = texture.shape[0]
    st = interpolate(r, np.c_[uv[:, 0] * t - 0.5, (1.0 - uv[:, 1]) * t - 0.5].astype(np.float32))
    out = np.full((size, size, 3), background, np.uint8)
    hit = r.triangle_id >= 0
    samples = cv2.remap(texture, st[..., 0].astype(np.float32), st[..., 1].astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out[hit] = samples[hit]
    return out
