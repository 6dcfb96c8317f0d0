"""Photometric refinement (analysis by synthesis) of a landmark fit on the CPU.

Starting from a landmark fit, shape, expression, pose, spherical-harmonics lighting and
albedo are refined so the rendered face matches the photo pixel by pixel (Blanz & Vetter,
"A Morphable Model for the Synthesis of 3D Faces", SIGGRAPH 1999), with second-order SH
lighting (Ramamoorthi & Hanrahan, SIGGRAPH 2001). The objective is

    E = w_pix · mean_pixels ρ(I(p) − albedo · SH(n)) + w_lm · mean ‖landmark residual‖² / σ²
        + ‖α‖² + ‖β‖² + priors on albedo (size, mesh-Laplacian smoothness, left/right
        symmetry) and lighting (second-order bands),

over the pixels of a face-skin mask built from the fitted 68 landmarks (face outline minus
eyes, brows and mouth interior), with per-pixel outlier rejection (occluders) refreshed with
the raster. ρ is ``"l2"``, ``"huber"`` or ``"gradient"``: the gradient-correlation error of
Sariyanidi, Zampella, Schultz & Tunc ("Inequality-Constrained and Robust 3D Face Model
Fitting", ECCV 2020), insensitive to the scale and offset of the intensities. The face is
cropped and resized to ``size`` px and optimised with Adam coarse to fine (size/4, size/2,
size); only the vertices of visible triangles are evaluated.
Models without an albedo basis get mean skin colour plus a per-vertex correction.

Only the scaled orthographic camera is supported.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import cv2
import numpy as np
import torch

from facefit.fit.landmark_fit import camera_pose as _Pose
from facefit.fit.landmark_fit import make_result
from facefit.fit.landmark_fit import prepare_model as _prepare
from facefit.fit.result import FitResult
from facefit.model.morphable_model import MorphableModel
from facefit.render import differentiable as dr

IMAGE_LOSSES = ("l2", "huber", "gradient")
SKIN_RGB = (0.72, 0.53, 0.44)
"""Default mean skin albedo (linear-ish RGB in [0, 1]) for models without albedo."""


@dataclass(frozen=True, eq=False)
class PhotometricResult:
    """A photometrically refined face.

    Attributes:
        fit: the refined `FitResult` (pixels of the input image).
        sh_coeffs: (9, 3) float32 SH lighting (see `facefit.render.differentiable.sh_basis`),
            shading = albedo × (basis(n) @ sh_coeffs) with n in the view frame.
        albedo: (V, 3) float32 per-vertex albedo in [0, 1].
        photometric_error: RMS colour residual over the unrejected skin pixels at the finest
            level after refinement (intensity units, image in [0, 1]).
        initial_photometric_error: the same for the landmark fit with its estimated light.
        landmark_error_px: RMS distance of the 68 projected landmarks to their targets (input
            image pixels) after refinement.
        iterations: optimisation steps run over all pyramid levels.
        timings_ms: wall-clock ms: ``raster``, ``forward``, ``backward``, ``total``.
        crop: (x0, y0, side) the square crop of the input image that was resized to ``size``.
        size: side of the finest level in pixels.
    """

    fit: FitResult
    sh_coeffs: np.ndarray
    albedo: np.ndarray
    photometric_error: float
    initial_photometric_error: float
    landmark_error_px: float
    iterations: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    crop: tuple[float, float, float] = (0.0, 0.0, 1.0)
    size: int = 224


# --- face-skin mask --------------------------------------------------------------------------

def skin_mask(landmarks_68: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool face-skin mask from 68 iBUG landmarks (pixels): the face outline (jaw line
    and the brows raised to the forehead) minus the eyes, brows and the mouth interior."""
    p = np.asarray(landmarks_68, np.float64)
    mask = np.zeros((height, width), np.uint8)
    nose = p[27:31]
    up = (nose[0] - nose[-1]) * 0.7  # brow → forehead: 70 % of the nose bridge length
    forehead = p[26:16:-1] + up
    outline = np.concatenate([p[:17], forehead])
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


# --- mesh regularisers -----------------------------------------------------------------------

def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """(E, 2) int64 unique undirected edges of a triangle mesh."""
    t = np.asarray(triangles, np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0)


_CACHE: weakref.WeakKeyDictionary[MorphableModel, dict[str, np.ndarray]] = (
    weakref.WeakKeyDictionary())


def _cached(model: MorphableModel, key: str) -> np.ndarray:
    """Per-model arrays: ``"stencil"`` (normal stencil on the mean) or ``"edges"``."""
    entry = _CACHE.setdefault(model, {})
    if key not in entry:
        entry[key] = (dr.normal_stencil(model.mean, model.triangles) if key == "stencil"
                      else mesh_edges(model.triangles))
    return entry[key]


@dataclass(frozen=True, eq=False)
class _Level:
    """One pyramid level: image (3, h, w) and the affine map from size-px crop coords."""

    image: torch.Tensor
    mask: np.ndarray
    a: float
    b: float
    normals: str


def _crop(image: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Square ``box`` (x0, y0, side) of an image resized to (size, size), float32 [0, 1]."""
    x0, y0, side = box
    k = size / side
    img = image[..., :3].astype(np.float32) / 255.0
    if k < 0.7:  # anti-alias before resampling
        img = cv2.GaussianBlur(img, (0, 0), 0.5 / k)
    m = np.array([[k, 0, (0.5 - x0) * k - 0.5], [0, k, (0.5 - y0) * k - 0.5]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# --- per-image pieces shared with `facefit.fit.multi_photometric` -----------------------------

_GEN = torch.zeros(3, 3, 3)  # generators of so(3): [omega]x = omega · gen
_GEN[0, 2, 1], _GEN[0, 1, 2], _GEN[1, 0, 2] = 1.0, -1.0, 1.0
_GEN[1, 2, 0], _GEN[2, 1, 0], _GEN[2, 0, 1] = -1.0, 1.0, -1.0


def _torch_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    return torch.device(device if device is not None else
                        ("cuda" if torch.cuda.is_available() else "cpu"))


def _level_counts(level_share: Sequence[float], n_levels: int, iterations: int) -> np.ndarray:
    """Steps per pyramid level: ``level_share`` of ``iterations``, the rest to the last."""
    shares = np.asarray(level_share, np.float64)[:n_levels]
    counts = np.floor(shares / shares.sum() * iterations).astype(int)
    counts[-1] = iterations - counts[:-1].sum()
    return counts


@dataclass(frozen=True, eq=False)
class _Mesh:
    """The model's mesh as tensors: mean (V, 3), basis (V, 3, Ks + Ke), triangles, stencil."""

    mean: torch.Tensor
    basis: torch.Tensor
    triangles: np.ndarray
    stencil: np.ndarray | None

    @classmethod
    def of(cls, model: MorphableModel, stencil: bool, f32: dict) -> _Mesh:
        return cls(torch.as_tensor(model.mean, **f32),
                   torch.as_tensor(_prepare(model).basis, **f32),
                   np.asarray(model.triangles, np.int64),
                   _cached(model, "stencil") if stencil else None)


def _albedo_model(model: MorphableModel, albedo_init: np.ndarray | None, f32: dict,
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(mean (V, 3), basis (V, 3, Ka), coefficients) of the albedo; without an albedo basis
    the mean is ``albedo_init`` (default `SKIN_RGB`) and basis and coefficients are None."""
    if model.albedo_basis is not None and model.albedo_mean is not None:
        basis = torch.as_tensor(model.albedo_basis, **f32)
        return (torch.as_tensor(model.albedo_mean, **f32), basis,
                torch.zeros(basis.shape[2], **f32, requires_grad=True))
    mean = (torch.as_tensor(SKIN_RGB, **f32).expand(model.num_vertices, 3)
            if albedo_init is None else torch.as_tensor(albedo_init, **f32))
    return mean, None, None


def _albedo_regulariser(table: torch.Tensor, rows: torch.Tensor, mirror: torch.Tensor,
                        edges: torch.Tensor, size: float, smoothness: float,
                        symmetry: float) -> torch.Tensor:
    """Size, mesh-Laplacian smoothness and left/right symmetry of a per-vertex albedo
    correction ``table``, over its ``rows`` (mirrors ``mirror``) and ``edges`` (2, E)."""
    d = table.index_select(0, rows)
    reg = size * (d * d).sum()
    diff = table.index_select(0, edges[0]) - table.index_select(0, edges[1])
    reg = reg + smoothness * (diff * diff).sum()
    sym = d - table.index_select(0, mirror)
    reg = reg + symmetry * (sym * sym).sum()
    return reg / len(d) * 100.0


def _pixel_loss(out: dict[str, torch.Tensor], act: SimpleNamespace, image_loss: str,
                pixel_sigma: float) -> torch.Tensor:
    """The robust pixel term over the raster's unrejected pixels (``act.weight``)."""
    r = out["observed"] - out["rendered"]
    w = act.weight
    if image_loss == "l2":
        return (w[:, None] * r * r).sum() / (w.sum() * 3 * pixel_sigma**2)
    if image_loss == "huber":
        hub = torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none",
                                             delta=2 * pixel_sigma)
        return (w[:, None] * hub).sum() / (w.sum() * 3 * pixel_sigma**2)
    # gradient correlation over the mask (per channel), 1 - GC scaled like the L2 term
    o = dr.scatter_image(out["observed"] * w[:, None], act.samp)
    c = dr.scatter_image(out["rendered"] * w[:, None], act.samp)
    valid = dr.scatter_image(w[:, None], act.samp)[..., 0] > 0
    vx = (valid[:, 1:] & valid[:, :-1])[..., None]
    vy = (valid[1:] & valid[:-1])[..., None]
    ox, cx = (o[:, 1:] - o[:, :-1]) * vx, (c[:, 1:] - c[:, :-1]) * vx
    oy, cy = (o[1:] - o[:-1]) * vy, (c[1:] - c[:-1]) * vy
    num = (ox * cx).sum((0, 1)) + (oy * cy).sum((0, 1))
    den = torch.sqrt(((ox * ox).sum((0, 1)) + (oy * oy).sum((0, 1)))
                     * ((cx * cx).sum((0, 1)) + (cy * cy).sum((0, 1))) + 1e-12)
    return (1.0 - num / den).mean() / (0.5 * pixel_sigma)


class _Photo:
    """One photo: its crop (a square around the face resized to ``size``), skin mask and
    pyramid, its pose (crop pixels at the finest level) and SH light, its landmark targets
    and its current raster ``act`` (pixels and active vertices)."""

    def __init__(self, fit: FitResult, image: np.ndarray, mesh: _Mesh, size: int,
                 levels: Sequence[int], level_normals: Sequence[str],
                 lm_px: np.ndarray, lm_ids: np.ndarray, f32: dict) -> None:
        lm68 = np.asarray(fit.landmarks_68_2d_contour, np.float64)
        pts = np.concatenate([lm68, lm68[17:27] + (lm68[27] - lm68[30]) * 0.7])
        lo, hi = pts.min(0), pts.max(0)
        side = float((hi - lo).max() * 1.15)
        centre = (lo + hi) / 2
        self.box = (float(centre[0] - side / 2), float(centre[1] - side / 2), side)
        self.k = size / side
        crop_img = _crop(image, self.box, size)
        crop_mask = skin_mask(self.to_crop(lm68), size, size)
        self.pyramid: list[_Level] = []
        for f, nrm in zip(levels, level_normals, strict=True):
            s = size // f
            img = crop_img if f == 1 else cv2.resize(crop_img, (s, s),
                                                     interpolation=cv2.INTER_AREA)
            msk = crop_mask if f == 1 else cv2.resize(
                crop_mask.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST).astype(bool)
            a = s / size
            self.pyramid.append(_Level(torch.as_tensor(img, **f32).permute(2, 0, 1).contiguous(),
                                       msk, a, 0.5 * a - 0.5, nrm))
        self.rot0 = torch.as_tensor(fit.rotation, **f32)
        self.s0 = float(fit.scale) * self.k
        self.omega = torch.zeros(3, **f32, requires_grad=True)
        self.log_s = torch.zeros(1, **f32, requires_grad=True)
        self.trans = torch.as_tensor(self.to_crop(np.asarray(fit.translation, np.float64)[None])[0],
                                     **f32).clone().requires_grad_(True)
        self.sh = torch.zeros(9, 3, **f32)
        self.lm_ids = torch.as_tensor(np.asarray(lm_ids, np.int64), device=f32["device"])
        self.lm_target = torch.as_tensor(self.to_crop(np.asarray(lm_px, np.float64)), **f32)
        self.lm_mean = mesh.mean.index_select(0, self.lm_ids)
        self.lm_basis = mesh.basis.index_select(0, self.lm_ids)
        self.mesh = mesh
        self.fit = fit
        self.act: SimpleNamespace | None = None

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Input-image pixels to crop pixels at the finest level."""
        return (xy - np.array(self.box[:2]) + 0.5) * self.k - 0.5

    def pose_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotation, scale): rot0 times the second-order exponential of the small axis-angle
        update omega (units of 0.01 rad; folded into rot0 at every raster refresh)."""
        kx = torch.einsum("k,kij->ij", self.omega * 0.01, _GEN.to(self.omega))
        eye = torch.eye(3, dtype=kx.dtype, device=kx.device)
        return (eye + kx + 0.5 * kx @ kx) @ self.rot0, self.s0 * torch.exp(0.01 * self.log_s)

    def fold(self) -> None:
        """Fold the rotation update into rot0 (re-orthonormalised)."""
        with torch.no_grad():
            rot, _ = self.pose_parts()
            u, _, vt = torch.linalg.svd(rot)
            self.rot0 = u @ vt
            self.omega.zero_()

    def project(self, x: torch.Tensor, rot: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        v = x @ rot.T
        return torch.stack([scale * v[:, 0] + self.trans[0], -scale * v[:, 1] + self.trans[1],
                            -scale * v[:, 2]], 1)

    def rasterise(self, level: _Level, coeffs: torch.Tensor, max_pixels: int | None,
                  rng: np.random.Generator) -> SimpleNamespace:
        """Fold the pose, rasterise the mesh at ``level`` and make it the current raster
        ``act``: the skin pixels (at most ``max_pixels``, a random subset), the active
        vertices (visible, plus their normal neighbours) and their mean and basis."""
        self.fold()
        mesh, dev = self.mesh, self.sh.device
        with torch.no_grad():
            rot, scale = self.pose_parts()
            vc = self.project(mesh.mean + mesh.basis @ coeffs, rot, scale).cpu().numpy()
        vl = vc.copy()
        vl[:, :2] = vc[:, :2] * level.a + level.b
        vl[:, 2] *= level.a
        hh, ww = level.mask.shape
        samp = dr.pixel_samples(vl, mesh.triangles, hh, ww, level.mask, device=dev)
        if max_pixels is not None and len(samp.pixel) > max_pixels:  # random subset
            pick = torch.as_tensor(np.sort(rng.choice(len(samp.pixel), max_pixels,
                                                      replace=False)), device=dev)
            samp = dr.PixelSamples(samp.pixel[pick], samp.vertex_ids[pick], samp.bary[pick],
                                   samp.height, samp.width)
        act = SimpleNamespace(samp=samp, level=level)
        nv = len(vc)
        vis = np.unique(samp.vertex_ids.cpu().numpy())
        in_vis = np.zeros(nv, bool)
        in_vis[vis] = True
        nrm = level.normals
        tri = mesh.triangles
        ring = tri[in_vis[tri].any(1)] if nrm == "vertex" else tri[:0]
        extra = mesh.stencil[vis].ravel() if nrm == "stencil" else vis[:0]
        local = np.unique(np.concatenate([vis, ring.ravel(), extra]))
        lut = np.full(nv, -1, np.int64)
        lut[local] = np.arange(len(local))
        act.local, act.lut = local, lut
        act.ids = torch.as_tensor(local, device=dev)
        act.ring = torch.as_tensor(lut[ring], device=dev)
        if nrm == "stencil":  # stencil rows for every local vertex (unused ones: self)
            st = np.where(in_vis[local][:, None], lut[mesh.stencil[local]],
                          np.arange(len(local))[:, None])
            act.stencil = torch.as_tensor(st, device=dev)
        act.pix_vids = torch.as_tensor(lut[samp.vertex_ids.cpu().numpy()], device=dev)
        act.basis = mesh.basis.index_select(0, act.ids)
        act.mean = mesh.mean.index_select(0, act.ids)
        act.weight = torch.ones(len(samp.pixel), dtype=self.sh.dtype, device=dev)
        self.act = act
        return act

    def render(self, coeffs: torch.Tensor, albedo: torch.Tensor,
               spec: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The current raster's observed and rendered colours, normals (view frame) and
        albedo per pixel, and the projected landmarks (crop pixels); ``albedo`` (Va, 3) of
        the active vertices."""
        act = self.act
        rot, scale = self.pose_parts()
        x = act.mean + act.basis @ coeffs
        v = x @ rot.T  # (Va, 3) view frame
        bary = act.samp.bary
        if act.level.normals == "vertex":
            n = dr.interpolate(dr.vertex_normals(v, act.ring), act.pix_vids, bary)
            pv = dr.interpolate(v, act.pix_vids, bary)
        elif act.level.normals == "stencil":
            n = dr.interpolate(dr.stencil_normals(v, act.stencil), act.pix_vids, bary)
            pv = dr.interpolate(v, act.pix_vids, bary)
        else:  # the flat normal of each pixel's triangle (sub-pixel triangles at 224 px)
            corners = v.index_select(0, act.pix_vids.reshape(-1)).reshape(-1, 3, 3)
            pv = (corners * bary[:, :, None]).sum(1)
            n = torch.linalg.cross(corners[:, 1] - corners[:, 0],
                                   corners[:, 2] - corners[:, 0], dim=1)
        n = n / torch.clamp(torch.linalg.vector_norm(n, dim=1, keepdim=True), min=1e-12)
        alb = dr.interpolate(albedo, act.pix_vids, bary)
        lv = act.level
        sc = scale * lv.a
        p = torch.stack([sc * pv[:, 0] + self.trans[0] * lv.a + lv.b,
                         -sc * pv[:, 1] + self.trans[1] * lv.a + lv.b], 1)
        observed = dr.sample_image(lv.image, p)
        rendered = dr.shade(n, alb, self.sh, spec)
        lm = self.project(self.lm_mean + self.lm_basis @ coeffs, rot, scale)[:, :2]
        return {"observed": observed, "rendered": rendered, "n": n, "lm": lm, "alb": alb}

    def landmark_loss(self, out: dict[str, torch.Tensor], weight: float,
                      sigma_px: float) -> torch.Tensor:
        d = out["lm"] - self.lm_target
        return weight * (d * d).sum(1).mean() / sigma_px**2

    def solve_light(self, render: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Closed-form SH (weighted least squares per channel) for the current albedo."""
        with torch.no_grad():
            out = render()
            w = self.act.weight
            b = dr.sh_basis(out["n"]) * w[:, None]
            for ch in range(3):
                a = b * out["alb"][:, ch:ch + 1]
                lhs = a.T @ a + 1e-3 * len(a) * torch.diag(
                    self.sh.new_tensor([0.0] + [0.01] * 3 + [1.0] * 5))
                self.sh[:, ch] = torch.linalg.solve(lhs, a.T @ (out["observed"][:, ch] * w))

    def reject_outliers(self, render: Callable[[], dict[str, torch.Tensor]],
                        outlier_sigmas: float) -> float:
        """Reweight the current raster (pixels beyond ``outlier_sigmas`` robust sigmas and
        0.1 get weight 0); return the RMS colour residual over the others."""
        with torch.no_grad():
            out = render()
            r = torch.linalg.vector_norm(out["observed"] - out["rendered"], dim=1)
            sigma = 1.4826 * torch.median(r) + 1e-6
            self.act.weight = (r <= torch.clamp(outlier_sigmas * sigma, min=0.1)).to(r.dtype)
            return float(torch.sqrt((r * r * self.act.weight).sum() / self.act.weight.sum()))

    def init_light(self, render: Callable[[], dict[str, torch.Tensor]],
                   outlier_sigmas: float) -> None:
        """Initial light on the current raster: ambient, solved, outliers, solved again."""
        self.sh[0] = dr.AMBIENT_L00 * 0.8
        self.solve_light(render)
        self.reject_outliers(render, outlier_sigmas)
        self.solve_light(render)

    def image_pose(self, coeffs: torch.Tensor) -> tuple[_Pose, float]:
        """The pose in input-image pixels and the RMS landmark error (input pixels)."""
        with torch.no_grad():
            rot, scale = self.pose_parts()
            lm = self.project(self.lm_mean + self.lm_basis @ coeffs, rot, scale)[:, :2]
            lm_err = float(torch.sqrt(((lm - self.lm_target) ** 2).sum(1).mean())) / self.k
            pose = _Pose(rot.cpu().numpy().astype(np.float64), float(scale) / self.k,
                         (self.trans.detach().cpu().numpy().astype(np.float64) + 0.5) / self.k
                         - 0.5 + np.array(self.box[:2]))
        return pose, lm_err


def refine_photometric(
    model: MorphableModel,
    fit: FitResult,
    image_rgb: np.ndarray,
    iterations: int = 100,
    size: int = 224,
    image_loss: str = "l2",
    landmarks_px: np.ndarray | None = None,
    landmark_vertex_ids: np.ndarray | None = None,
    landmark_sigma_px: float = 3.0,
    landmark_weight: float = 3.0,
    pixel_sigma: float = 0.01,
    coeff_prior: float = 1.0,
    albedo_smoothness: float = 30.0,
    albedo_symmetry: float = 10.0,
    albedo_prior: float = 1.0,
    light_prior: float = 0.1,
    specular: bool = False,
    albedo_init: np.ndarray | None = None,
    outlier_sigmas: float = 3.0,
    refresh_every: int = 20,
    levels: tuple[int, ...] = (4, 2, 1),
    level_share: tuple[float, ...] = (0.5, 0.3, 0.2),
    optimizer: str = "adam",
    learning_rate: float = 1.0,
    lr_floor: float = 1.0,
    device: str | torch.device | None = None,
    normals: str | tuple[str, ...] = "stencil",
    max_pixels: int = 8000,
    progress: bool = False,
    debug_timing: bool = False,
) -> PhotometricResult:
    """Refine a scaled orthographic landmark fit photometrically.

    Args:
        model: the morphable model of ``fit``.
        fit: the landmark fit to start from (scaled orthographic camera).
        image_rgb: (H, W, 3) uint8 photo.
        iterations: Adam steps over all levels (about ``level_share`` per level).
        size: side in pixels of the finest level (a square crop around the face).
        image_loss: ``"l2"``, ``"huber"`` or ``"gradient"`` (gradient correlation).
        landmarks_px: (K, 2) landmark targets in image pixels; default the fit's own 68
            projected landmarks (keeps the refinement close to the landmark fit).
        landmark_vertex_ids: (K,) vertex of each target (default the model's ``ibug68``).
        landmark_sigma_px: landmark noise in pixels at the finest level.
        landmark_weight: weight of the landmark term.
        pixel_sigma: colour noise (intensity units) of the pixel term.
        coeff_prior: weight of the N(0, 1) prior on shape and expression coefficients
            (per landmark-term unit).
        albedo_smoothness, albedo_symmetry, albedo_prior: weights of the per-vertex albedo
            correction's Laplacian smoothness, left/right symmetry and size (per vertex).
        light_prior: weight of the Gaussian prior on the second-order SH coefficients.
        albedo_init: (V, 3) albedo the per-vertex correction starts from (models without an
            albedo basis; default mean skin colour `SKIN_RGB`).
        specular: add a Phong specular term with a fitted strength.
        outlier_sigmas: pixels whose residual exceeds this many robust sigmas (and 0.1) are
            rejected as occluders at each raster refresh.
        refresh_every: re-rasterise (visibility, outliers) every this many steps.
        levels: downsampling factors of the pyramid, coarse to fine.
        level_share: fraction of ``iterations`` per level.
        optimizer: ``"lbfgs"`` (L-BFGS with a strong-Wolfe line search, restarted at each
            raster refresh; iterations count objective evaluations) or ``"adam"``.
        learning_rate: multiplier of the default Adam step sizes.
        lr_floor: the step sizes decay from 1 to this fraction (cosine) within each level.
        normals: ``"stencil"`` (smooth vertex normals by central differences over four
            neighbours, `facefit.render.differentiable.normal_stencil`), ``"face"`` (each
            pixel's triangle normal: fastest, but biased on irregular meshes) or
            ``"vertex"`` (area-weighted vertex normals; needs the whole one-ring, slowest);
            one name, or one per level.
        max_pixels: at most this many skin pixels per raster refresh, a random subset
            (not with the gradient loss, which needs the whole grid).
        device: torch device (default CUDA when available, else CPU).
        progress: show a tqdm progress bar.
        debug_timing: print pixels, active vertices and ms per step for each level.
    """
    if fit.camera.kind == "perspective":
        raise ValueError("photometric refinement supports the scaled orthographic camera only")
    if image_loss not in IMAGE_LOSSES:
        raise ValueError(f"image_loss must be one of {IMAGE_LOSSES}, got {image_loss!r}")
    t_start = time.perf_counter()
    dev = _torch_device(device)
    f32 = dict(dtype=torch.float32, device=dev)
    pixel_rng = np.random.default_rng(0)
    timings = {"raster": 0.0, "forward": 0.0, "backward": 0.0}
    ks = model.num_shape
    nv = model.num_vertices

    level_normals = (normals,) * len(levels) if isinstance(normals, str) else tuple(normals)
    if len(level_normals) != len(levels) or any(
            n not in ("stencil", "face", "vertex") for n in level_normals):
        raise ValueError(f"normals must be 'stencil', 'face' or 'vertex' (or one per level), "
                         f"got {normals!r}")
    mesh = _Mesh.of(model, "stencil" in level_normals, f32)
    if landmark_vertex_ids is None:
        landmark_vertex_ids = np.asarray(model.landmark_ids["ibug68"], np.int64)
    if landmarks_px is None:
        landmarks_px = fit.verts_px[landmark_vertex_ids, :2]
    photo = _Photo(fit, image_rgb, mesh, size, levels, level_normals, landmarks_px,
                   landmark_vertex_ids, f32)
    pyramid, sh = photo.pyramid, photo.sh
    n_lm = max(len(photo.lm_ids), 1)

    # Parameters (pose in crop pixels at the finest level, in `photo`).
    coeffs = torch.as_tensor(np.concatenate([fit.shape_coeffs, fit.expression_coeffs]),
                             **f32).clone().requires_grad_(True)
    alb_mean, alb_basis, alb_param = _albedo_model(model, albedo_init, f32)
    has_basis = alb_basis is not None
    if not has_basis:
        alb_full = torch.zeros(nv, 3, **f32)  # per-vertex correction; active part optimised
        mirror_np = np.asarray(model.mirror_ids, np.int64)
        edges_np = _cached(model, "edges")
    spec = torch.zeros(1, **f32, requires_grad=specular)

    def albedo_active(act: SimpleNamespace) -> torch.Tensor:
        if has_basis:
            return act.alb_mean + alb_basis.index_select(0, act.ids) @ alb_param
        return act.alb_mean + act.alb_leaf.index_select(0, act.alb_of_vis)

    def fold_albedo(act: SimpleNamespace | None) -> None:
        """Fold the active albedo back into alb_full."""
        if act is not None and not has_basis:
            with torch.no_grad():
                alb_full[act.alb_ids] = act.alb_leaf.detach()

    def refresh(level: _Level) -> SimpleNamespace:
        t = time.perf_counter()
        fold_albedo(photo.act)
        act = photo.rasterise(level, coeffs, None if image_loss == "gradient" else max_pixels,
                              pixel_rng)
        act.alb_mean = alb_mean.index_select(0, act.ids)
        if not has_basis:  # optimised: the active vertices and their mirrors
            local, lut = act.local, act.lut
            alb_ids = np.unique(np.concatenate([local, mirror_np[local]]))
            lut2 = np.full(nv, -1, np.int64)
            lut2[alb_ids] = np.arange(len(alb_ids))
            e = edges_np[(lut[edges_np] >= 0).all(1)]
            act.alb_ids = torch.as_tensor(alb_ids, device=dev)
            act.alb_of_vis = torch.as_tensor(lut2[local], device=dev)
            act.alb_mirror = torch.as_tensor(lut2[mirror_np[local]], device=dev)
            act.edges = torch.as_tensor(lut2[e.T], device=dev)
            act.alb_leaf = alb_full[act.alb_ids].clone().requires_grad_(True)
            act.opt = torch.optim.Adam([act.alb_leaf], lr=0.01 * learning_rate, foreach=True)
        timings["raster"] += time.perf_counter() - t
        return act

    def forward() -> dict[str, torch.Tensor]:
        return photo.render(coeffs, albedo_active(photo.act), spec if specular else None)

    def prior_term(act: SimpleNamespace) -> torch.Tensor:
        e = coeff_prior * (coeffs * coeffs).sum() / n_lm
        e = e + light_prior * (sh[4:] ** 2).sum()
        if has_basis:
            return e + albedo_prior * (alb_param**2).sum() / n_lm
        return e + _albedo_regulariser(act.alb_leaf, act.alb_of_vis, act.alb_mirror, act.edges,
                                       albedo_prior, albedo_smoothness, albedo_symmetry)

    def reject_outliers() -> float:
        return photo.reject_outliers(forward, outlier_sigmas)

    refresh(pyramid[0])
    photo.init_light(forward, outlier_sigmas)
    sh.requires_grad_(True)

    lr = learning_rate
    groups = [
        {"params": [photo.omega], "lr": 0.2 * lr},
        {"params": [photo.log_s], "lr": 0.2 * lr},
        {"params": [photo.trans], "lr": 0.2 * lr},
        {"params": [coeffs], "lr": 0.05 * lr},
        {"params": [sh], "lr": 0.02 * lr},
    ]
    if has_basis:
        groups.append({"params": [alb_param], "lr": 0.02 * lr})
    if specular:
        groups.append({"params": [spec], "lr": 0.01 * lr})
    opt = torch.optim.Adam(groups, foreach=True)
    base_lrs = [g["lr"] for g in opt.param_groups]

    counts = _level_counts(level_share, len(pyramid), iterations)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=iterations, desc="photometric", unit="it", leave=False)
    # initial error at the finest level
    refresh(pyramid[-1])
    initial_err = reject_outliers()
    done = 0
    for li, level in enumerate(pyramid):
        t_level = time.perf_counter()
        act = refresh(level)
        reject_outliers()
        n_level = int(counts[li])
        it = 0
        while it < n_level:
            if it:
                act = refresh(level)
                reject_outliers()
            block = min(refresh_every, n_level - it)
            params = [p for g in groups for p in g["params"]]
            if not has_basis:
                params.append(act.alb_leaf)
            evals = [0]

            def closure(act: SimpleNamespace = act, params: list = params,
                        evals: list = evals) -> torch.Tensor:
                t = time.perf_counter()
                for q in params:
                    q.grad = None
                out = forward()
                loss = (_pixel_loss(out, act, image_loss, pixel_sigma)
                        + photo.landmark_loss(out, landmark_weight, landmark_sigma_px)
                        + prior_term(act))
                t2 = time.perf_counter()
                loss.backward()
                timings["forward"] += t2 - t
                timings["backward"] += time.perf_counter() - t2
                evals[0] += 1
                return loss

            if optimizer == "lbfgs":
                lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=block, max_eval=block,
                                          history_size=10, line_search_fn="strong_wolfe",
                                          tolerance_grad=1e-9, tolerance_change=1e-12)
                lbfgs.step(closure)
            else:
                for j in range(block):
                    decay = lr_floor + (1 - lr_floor) * 0.5 * (
                        1 + np.cos(np.pi * (it + j) / n_level))
                    for g, base in zip(opt.param_groups, base_lrs, strict=True):
                        g["lr"] = base * decay
                    if not has_basis:
                        act.opt.param_groups[0]["lr"] = 0.01 * learning_rate * decay
                    closure()
                    opt.step()
                    if not has_basis:
                        act.opt.step()
            n = max(evals[0], 1)
            it += n
            done += n
            if bar is not None:
                bar.update(n)
        if debug_timing:
            print(f"level {level.mask.shape[0]}: pixels {len(act.samp.pixel)} vertices "
                  f"{len(act.ids)} {1e3 * (time.perf_counter() - t_level) / max(counts[li], 1):.1f}"
                  " ms/it")
    if bar is not None:
        bar.close()
    refresh(pyramid[-1])
    final_err = reject_outliers()

    pose, lm_err = photo.image_pose(coeffs)
    c = coeffs.detach().cpu().numpy().astype(np.float32)
    fold_albedo(photo.act)
    with torch.no_grad():
        alb = alb_mean + (alb_basis @ alb_param if has_basis else alb_full)
        alb = alb.clamp(0, 1).cpu().numpy()
    new_fit = make_result(model, c[:ks], c[ks:], pose, fit.camera, fit.residual_px,
                          fit.num_landmarks, fit.iterations)
    timings = {key: val * 1e3 for key, val in timings.items()}
    timings["total"] = (time.perf_counter() - t_start) * 1e3
    return PhotometricResult(new_fit, sh.detach().cpu().numpy().astype(np.float32),
                             alb.astype(np.float32), final_err, initial_err, lm_err, done,
                             timings, photo.box, size)
