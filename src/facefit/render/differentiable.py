"""A differentiable renderer in PyTorch (CPU or GPU): fixed raster, differentiable attributes.

Visibility is not differentiated: the z-buffer (`facefit.render.raster.rasterize`)
gives each covered pixel a triangle and barycentrics, re-evaluated every few iterations.
Everything after it is differentiable: vertex attributes (image-space positions, normals,
albedo) are interpolated per pixel with gathers, lit with second-order spherical harmonics
(Ramamoorthi & Hanrahan, "An Efficient Representation for Irradiance Environment Maps",
SIGGRAPH 2001) plus an optional Phong specular term, and the photo is sampled bilinearly at
the interpolated image position of each pixel's surface point, so geometry gets gradients
from the photo's image gradients as well as from shading (the analysis-by-synthesis set-up
of Blanz & Vetter, "A Morphable Model for the Synthesis of 3D Faces", SIGGRAPH 1999).

Frames: normals are in the view frame (x right, y up, z towards the viewer); positions in
image space (x right, y down, pixels with integer centres). All functions are device- and
dtype-agnostic: they follow their tensor arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facefit.render.raster import rasterize

# Real SH constants (l = 0, 1, 2) and the Lambertian kernel A_l / pi (Ramamoorthi & Hanrahan).
_C0, _C1, _C2, _C3, _C4 = 0.282095, 0.488603, 1.092548, 0.315392, 0.546274
_A = (1.0, 2.0 / 3.0, 0.25)

AMBIENT_L00 = 1.0 / _C0
"""The L00 coefficient of a uniform light of irradiance 1 (shading 1 everywhere)."""


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """(..., 9) irradiance basis A_l Y_lm(n) / pi of unit view-frame normals (..., 3).

    Shading is ``sh_basis(n) @ L`` for lighting coefficients L (9, C); coefficient order
    (l, m) = (0,0), (1,-1), (1,0), (1,1), (2,-2), (2,-1), (2,0), (2,1), (2,2).
    """
    x, y, z = normals.unbind(-1)
    one = torch.ones_like(x)
    a0, a1, a2 = _A
    return torch.stack([
        a0 * _C0 * one,
        a1 * _C1 * y, a1 * _C1 * z, a1 * _C1 * x,
        a2 * _C2 * x * y, a2 * _C2 * y * z, a2 * _C3 * (3.0 * z * z - 1.0),
        a2 * _C2 * x * z, a2 * _C4 * (x * x - y * y),
    ], dim=-1)


def _sh_to_matrix() -> np.ndarray:
    """(4, 4, 9) map from lighting coefficients to the symmetric matrix M of the quadratic
    form ``sh_basis(n) @ L = [n, 1]ᵀ M [n, 1]`` (Ramamoorthi & Hanrahan, eq. 12)."""
    k0, k1 = _A[0] * _C0, _A[1] * _C1
    k2, k3, k4 = _A[2] * _C2, _A[2] * _C3, _A[2] * _C4
    t = np.zeros((4, 4, 9))
    x, y, z, w = range(4)
    t[x, x, 8], t[y, y, 8] = k4, -k4
    t[z, z, 6], t[w, w, 6], t[w, w, 0] = 3 * k3, -k3, k0
    for (i, j), c, k in (((x, y), k2, 4), ((y, z), k2, 5), ((x, z), k2, 7),
                         ((x, w), k1, 3), ((y, w), k1, 1), ((z, w), k1, 2)):
        t[i, j, k] = t[j, i, k] = c / 2
    return t


def _skew_generator() -> np.ndarray:
    """(9, 3) matrix G with ``(G @ omega).reshape(3, 3) == [omega]x``."""
    g = np.zeros((3, 3, 3))
    for i, j, k, sign in ((0, 1, 2, -1), (0, 2, 1, 1), (1, 0, 2, 1), (1, 2, 0, -1),
                          (2, 0, 1, -1), (2, 1, 0, 1)):
        g[i, j, k] = sign
    return g.reshape(9, 3)


_CONSTANTS = {"sh": _sh_to_matrix(), "skew": _skew_generator(), "eye": np.eye(3),
              "flip_yz": np.array([1.0, -1.0, -1.0])}
_CONSTANT_TENSORS: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


def constant(name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A constant of this module as a tensor, made once per dtype and device (a step of a
    refinement then converts nothing): ``"sh"`` ((4, 4, 9) the quadratic form of each SH
    basis function in [n, 1], `sh_shading`), ``"skew"`` ((9, 3) generator of
    ``[omega]x``, `skew`), ``"eye"``, ``"flip_yz"``."""
    key = (name, dtype, device)
    if key not in _CONSTANT_TENSORS:
        _CONSTANT_TENSORS[key] = torch.as_tensor(_CONSTANTS[name], dtype=dtype, device=device)
    return _CONSTANT_TENSORS[key]


def sh_shading(normals: torch.Tensor, sh_coeffs: torch.Tensor) -> torch.Tensor:
    """(N, C) SH irradiance ``sh_basis(n) @ L`` of normals (N, 3) for lighting (9, C),
    evaluated as the quadratic form [n, 1]ᵀ M_c [n, 1] (fewer operations)."""
    t = constant("sh", sh_coeffs.dtype, sh_coeffs.device)
    m = (t.reshape(16, 9) @ sh_coeffs).reshape(4, 4, -1)  # (4, 4, C)
    nh = torch.cat([normals, torch.ones_like(normals[:, :1])], 1)  # (N, 4)
    q = (nh @ m.permute(0, 2, 1).reshape(4, -1)).reshape(len(nh), -1, 4)  # (N, C, 4)
    return (q * nh[:, None, :]).sum(-1)


def light_direction(sh_coeffs: np.ndarray | torch.Tensor) -> np.ndarray:
    """(3,) unit dominant light direction (view frame) from the first-order SH coefficients
    (9, C), averaged over colour channels; zeros when there is no directional part."""
    sh = np.asarray(sh_coeffs.detach().cpu() if isinstance(sh_coeffs, torch.Tensor)
                    else sh_coeffs, np.float64).reshape(9, -1).mean(1)
    d = np.array([sh[3], sh[1], sh[2]])
    n = np.linalg.norm(d)
    return d / n if n > 0 else d


def shade(normals: torch.Tensor, albedo: torch.Tensor, sh_coeffs: torch.Tensor,
          specular: torch.Tensor | float | None = None, shininess: float = 16.0
          ) -> torch.Tensor:
    """Colour (N, C) of surface points: albedo (N, C) × SH irradiance of unit normals (N, 3),
    plus an optional white Phong term ``specular · max(0, r·v)^shininess`` for the dominant
    SH light direction (orthographic viewer, v = +z)."""
    out = albedo * sh_shading(normals, sh_coeffs)
    if specular is not None:
        lum = sh_coeffs[1:4].mean(1)
        light = torch.stack([lum[2], lum[0], lum[1]])
        light = light / torch.clamp(torch.linalg.vector_norm(light), min=1e-12)
        n_dot_l = normals @ light
        r_dot_v = 2.0 * n_dot_l * normals[:, 2] - light[2]
        out = out + specular * torch.clamp(r_dot_v, min=0.0).pow(shininess)[:, None]
    return out


def vertex_normals(verts: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(V, 3) unit area-weighted vertex normals of vertices (V, 3) and triangles (F, 3) long,
    counter-clockwise seen from outside (any right-handed frame: model or view)."""
    corners = verts.index_select(0, triangles.reshape(-1)).reshape(-1, 3, 3)
    a = corners[:, 0]
    cross = torch.linalg.cross(corners[:, 1] - a, corners[:, 2] - a, dim=1)
    acc = torch.zeros_like(verts)
    for k in range(3):
        acc = acc.index_add(0, triangles[:, k], cross)
    return acc / torch.clamp(torch.linalg.vector_norm(acc, dim=1, keepdim=True), min=1e-12)


def mesh_edges(triangles: np.ndarray, directed: bool = False) -> np.ndarray:
    """(E, 2) int64 unique edges of a triangle mesh (F, 3), sorted by (first, second) id:
    undirected (first < second), or ``directed`` (both directions of each edge). Sorted 1-D
    keys (``np.unique(axis=0)`` took 1.5 s on the default model's 88k triangles)."""
    t = np.asarray(triangles, np.int64)
    e = t[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = np.concatenate([e, e[:, ::-1]]) if directed else np.sort(e, axis=1)
    n = int(t.max()) + 1 if t.size else 1
    key = np.sort(e[:, 0] * n + e[:, 1])
    key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
    return np.stack([key // n, key % n], 1)


def normal_stencil(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 4) int64 neighbour ids (a, b, c, d) per vertex for central-difference normals
    ``cross(x_a - x_b, x_c - x_d)``: the one-ring neighbours farthest along +u, -u, +v, -v
    of the vertex's tangent frame (u from the model x axis, v = n × u) on reference vertices
    (V, 3), e.g. a model's mean. A smooth normal from four neighbours instead of the whole
    one-ring of triangles (cheaper to differentiate)."""
    from facefit.render.shading import vertex_normals as np_vertex_normals

    x = np.asarray(verts, np.float64)
    t = np.asarray(triangles, np.int64)
    n = np_vertex_normals(x, t).astype(np.float64)
    ref = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = ref - (ref * n).sum(1, keepdims=True) * n
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    v = np.cross(n, u)
    e = mesh_edges(t, directed=True)  # (src, dst) sorted
    src, dst = e[:, 0], e[:, 1]
    d = x[dst] - x[src]
    out = np.tile(np.arange(len(x))[:, None], (1, 4))
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])  # src is sorted
    seg = np.cumsum(np.r_[False, src[1:] != src[:-1]])
    for col, axis, sign in ((0, u, 1.0), (1, u, -1.0), (2, v, 1.0), (3, v, -1.0)):
        key = -sign * (d * axis[src]).sum(1)
        best = key == np.minimum.reduceat(key, starts)[seg]  # each src's smallest key
        first = np.flatnonzero(best)
        first = first[np.r_[True, src[first][1:] != src[first][:-1]]]  # the first of ties
        out[src[first], col] = dst[first]
    q = x[out]
    c = np.cross(q[:, 0] - q[:, 1], q[:, 2] - q[:, 3])
    cos = (c * n).sum(1) / np.maximum(np.linalg.norm(c, axis=1), 1e-12)
    bad = np.flatnonzero(~(cos > np.cos(np.deg2rad(30))))  # boundary, degenerate: flat normal
    tri_of = np.zeros(len(x), np.int64)
    tri_of[t.ravel()] = np.repeat(np.arange(len(t)), 3)
    for k in range(3):  # rotate each vertex's triangle so that it comes first
        hit = t[tri_of[bad], k] == bad
        ids = bad[hit]
        tt = t[tri_of[ids]]
        i, j, m = tt[:, k], tt[:, (k + 1) % 3], tt[:, (k + 2) % 3]
        out[ids] = np.stack([j, i, m, i], 1)
    return out


def stencil_normals(verts: torch.Tensor, stencil: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit normals ``cross(x_a - x_b, x_c - x_d)`` from vertices (V, 3) and a
    stencil (N, 4) of vertex ids (see `normal_stencil`); any right-handed frame."""
    q = verts.index_select(0, stencil.reshape(-1)).reshape(-1, 4, 3)
    c = torch.linalg.cross(q[:, 0] - q[:, 1], q[:, 2] - q[:, 3], dim=1)
    return c / torch.clamp(torch.linalg.vector_norm(c, dim=1, keepdim=True), min=1e-12)


@dataclass(frozen=True, eq=False)
class PixelSamples:
    """The pixels a raster covers (optionally inside a mask), for differentiable shading.

    Attributes:
        pixel: (N,) long flat pixel index ``row * width + col``.
        vertex_ids: (N, 3) long vertex ids of each pixel's triangle.
        bary: (N, 3) barycentrics of the pixel centre.
        height, width: the raster size.
    """

    pixel: torch.Tensor
    vertex_ids: torch.Tensor
    bary: torch.Tensor
    height: int
    width: int

    @property
    def xy(self) -> torch.Tensor:
        """(N, 2) pixel-centre coordinates (x = column, y = row)."""
        return torch.stack([self.pixel % self.width, self.pixel // self.width], 1).to(
            self.bary.dtype)


def pixel_samples(verts_px: np.ndarray, triangles: np.ndarray, height: int, width: int,
                  mask: np.ndarray | None = None, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> PixelSamples:
    """Rasterise (numpy z-buffer, back faces culled) and keep the covered pixels in ``mask``.

    Args:
        verts_px: (V, 3) x right, y down pixels, depth (larger is farther).
        triangles: (F, 3) counter-clockwise from outside.
        height, width: raster size in pixels.
        mask: optional (H, W) bool pixels to keep.
    """
    r = rasterize(verts_px, triangles, height, width, cull="back")
    keep = r.triangle_id >= 0
    if mask is not None:
        keep &= mask
    pix = np.flatnonzero(keep)
    tri = r.triangles[r.triangle_id.reshape(-1)[pix]].astype(np.int64)
    bary = r.bary.reshape(-1, 3)[pix]
    return PixelSamples(torch.as_tensor(pix, device=device),
                        torch.as_tensor(tri, device=device),
                        torch.as_tensor(bary, device=device, dtype=dtype), height, width)


def interpolate(attrs: torch.Tensor, vertex_ids: torch.Tensor, bary: torch.Tensor
                ) -> torch.Tensor:
    """(N, C) barycentric interpolation of vertex attributes (V, C) at (N, 3) ids/weights."""
    n = vertex_ids.shape[0]
    gathered = attrs.index_select(0, vertex_ids.reshape(-1)).reshape(n, 3, -1)
    return (gathered * bary[:, :, None]).sum(1)


def sample_image(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """(N, C) bilinear samples of an image (C, H, W) at points (N, 2) (x, y pixels, integer
    centres), differentiable in ``xy`` and ``image``; clamped at the border."""
    _, h, w = image.shape
    to_grid = xy.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (xy * to_grid - 1.0)[None, None]  # (1, 1, N, 2) in [-1, 1]
    out = torch.nn.functional.grid_sample(image[None], grid, mode="bilinear",
                                          padding_mode="border", align_corners=True)
    return out[0, :, 0].T


def scatter_image(values: torch.Tensor, samples: PixelSamples, background: float = 0.0
                  ) -> torch.Tensor:
    """(H, W, C) dense image holding per-pixel values (N, C) at ``samples``' pixels."""
    c = values.shape[1]
    out = torch.full((samples.height * samples.width, c), background, dtype=values.dtype,
                     device=values.device)
    out = out.index_copy(0, samples.pixel, values)
    return out.reshape(samples.height, samples.width, c)


def image_to_view(normals_img: torch.Tensor) -> torch.Tensor:
    """Image-space vectors (x right, y down, z away) to the view frame (y up, z towards)."""
    return normals_img * normals_img.new_tensor([1.0, -1.0, -1.0])


def render(verts_px: np.ndarray | torch.Tensor, triangles: np.ndarray, height: int, width: int,
           albedo: torch.Tensor | np.ndarray, sh_coeffs: torch.Tensor | np.ndarray,
           specular: float | None = None, view_vertices: torch.Tensor | np.ndarray | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a mesh: (H, W, C) colour (zero on background) and (H, W) bool coverage.

    Args:
        verts_px: (V, 3) image-space vertices (x right, y down px, depth larger = farther).
        triangles: (F, 3) counter-clockwise from outside.
        albedo: (V, C) per-vertex albedo.
        sh_coeffs: (9, C) lighting (see `sh_basis`).
        specular: optional Phong strength.
        view_vertices: (V, 3) the vertices in the view frame (mm), whose normals shade the
            mesh; default ``verts_px``'s (right for a scaled orthographic camera, whose image
            space is the view frame scaled; a perspective projection bends them).
    """
    verts = torch.as_tensor(verts_px)
    s = pixel_samples(verts.detach().cpu().numpy(), triangles, height, width,
                      device=verts.device, dtype=verts.dtype)
    tri = torch.as_tensor(np.asarray(triangles, np.int64), device=verts.device)
    if view_vertices is None:
        normals = image_to_view(vertex_normals(verts, tri))
    else:
        normals = vertex_normals(torch.as_tensor(view_vertices, dtype=verts.dtype,
                                                 device=verts.device), tri)
    n = interpolate(normals, s.vertex_ids, s.bary)
    n = n / torch.clamp(torch.linalg.vector_norm(n, dim=1, keepdim=True), min=1e-12)
    alb = interpolate(torch.as_tensor(albedo, dtype=verts.dtype, device=verts.device),
                      s.vertex_ids, s.bary)
    sh = torch.as_tensor(sh_coeffs, dtype=verts.dtype, device=verts.device)
    col = shade(n, alb, sh, specular)
    cover = torch.zeros(height * width, dtype=torch.bool, device=verts.device)
    cover[s.pixel] = True
    return scatter_image(col, s), cover.reshape(height, width)


def skew(omega: torch.Tensor) -> torch.Tensor:
    """(3, 3) cross-product matrix ``[omega]x`` of a vector (3,): the torch twin of
    `facefit.fit.core.rotation.skew`."""
    return (constant("skew", omega.dtype, omega.device) @ omega).reshape(3, 3)


def rodrigues(omega: torch.Tensor) -> torch.Tensor:
    """(3, 3) rotation matrix exp([omega]x) of an axis-angle vector (3,), differentiable: the
    torch twin of `facefit.fit.core.rotation.rodrigues` (autograd needs it in torch)."""
    return torch.linalg.matrix_exp(skew(omega))


def small_rotation(omega: torch.Tensor) -> torch.Tensor:
    """(3, 3) second-order exponential ``I + K + K^2 / 2``, ``K = [omega]x``, of a small
    axis-angle update (3,) (radians): the optimisers' rotation update, cheaper than
    `rodrigues` and re-orthonormalised when folded into its reference rotation."""
    kx = skew(omega)
    return constant("eye", kx.dtype, kx.device) + kx + 0.5 * kx @ kx


def scaled_orthographic(view_points: torch.Tensor, scale: torch.Tensor | float,
                        translation: torch.Tensor) -> torch.Tensor:
    """(N, 3) image points (x px, y px, depth px) of (N, 3) view-frame points (already
    rotated) under a scaled orthographic camera, differentiable: the torch twin of
    `facefit.fit.core.camera.ScaledOrthographicCamera.image_points` (x = s X + tx,
    y = -s Y + ty, depth = -s Z)."""
    flip = constant("flip_yz", view_points.dtype, view_points.device)
    return view_points * (scale * flip) + torch.nn.functional.pad(translation, (0, 1))


__all__ = ["AMBIENT_L00", "PixelSamples", "constant", "image_to_view", "interpolate",
           "light_direction", "mesh_edges", "normal_stencil", "pixel_samples", "render",
           "rodrigues", "sample_image", "scaled_orthographic", "scatter_image", "sh_basis",
           "sh_shading", "shade", "skew", "small_rotation", "stencil_normals", "vertex_normals"]
