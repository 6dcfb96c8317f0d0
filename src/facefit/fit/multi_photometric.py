"""Joint photometric refinement of several photos of one person.

One identity (shape coefficients and per-vertex albedo) is shared by all photos; pose,
expression and second-order SH lighting are per photo. The objective is the sum over photos
of the single-image objective of `facefit.fit.photometric.refine_photometric` (robust pixel
term over the face-skin mask, landmark term, expression and lighting priors), with the
priors on the shared shape and albedo counted once (the joint posterior of the photos,
Blanz & Vetter, SIGGRAPH 1999, fitted to several images as in their multi-view experiments).
It starts from a joint landmark fit (`facefit.fit.multi_image.fit_same_person`) and reuses
the single-image pieces: the crop, the skin mask, the pyramid, the raster sampling and
shading of `facefit.render.differentiable`. The L2 and Huber pixel losses are supported
(not the gradient correlation), with stencil or face normals.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import cv2
import numpy as np
import torch

from facefit.fit.landmark_fit import _Pose, _prepare, make_result
from facefit.fit.photometric import SKIN_RGB, PhotometricResult, _cached, _crop, _Level, skin_mask
from facefit.fit.result import FitResult
from facefit.model.morphable_model import MorphableModel
from facefit.render import differentiable as dr


@dataclass(frozen=True, eq=False)
class MultiPhotometricResult:
    """A joint photometric refinement.

    Attributes:
        shape_coeffs: (Ks,) float32 shared identity coefficients.
        neutral_vertices: (V, 3) float32 identity mesh (mm, model frame, expression 0).
        albedo: (V, 3) float32 shared per-vertex albedo in [0, 1].
        results: one `PhotometricResult` per photo (its fit has the shared shape).
        timings_ms: ``total`` wall-clock ms.
    """

    shape_coeffs: np.ndarray
    neutral_vertices: np.ndarray
    albedo: np.ndarray
    results: list[PhotometricResult]
    timings_ms: dict[str, float]


_GEN = torch.zeros(3, 3, 3)  # generators of so(3): [omega]x = omega · gen
_GEN[0, 2, 1], _GEN[0, 1, 2], _GEN[1, 0, 2] = 1.0, -1.0, 1.0
_GEN[1, 2, 0], _GEN[2, 1, 0], _GEN[2, 0, 1] = -1.0, 1.0, -1.0


class _Photo:
    """One photo's crop, pyramid, per-photo parameters and current raster."""

    def __init__(self, fit: FitResult, image: np.ndarray, lm_px: np.ndarray, lm_ids: np.ndarray,
                 size: int, levels: Sequence[int], normals: str, f32: dict) -> None:
        lm68 = np.asarray(fit.landmarks_68_2d_contour, np.float64)
        pts = np.concatenate([lm68, lm68[17:27] + (lm68[27] - lm68[30]) * 0.7])
        lo, hi = pts.min(0), pts.max(0)
        side = float((hi - lo).max() * 1.15)
        c = (lo + hi) / 2
        self.box = (float(c[0] - side / 2), float(c[1] - side / 2), side)
        self.k = size / side
        crop_img = _crop(image, self.box, size)
        crop_mask = skin_mask(self.to_crop(lm68), size, size)
        self.pyramid = []
        for f in levels:
            s = size // f
            img = crop_img if f == 1 else cv2.resize(crop_img, (s, s),
                                                     interpolation=cv2.INTER_AREA)
            msk = crop_mask if f == 1 else cv2.resize(
                crop_mask.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST).astype(bool)
            a = s / size
            self.pyramid.append(_Level(torch.as_tensor(img, **f32).permute(2, 0, 1).contiguous(),
                                       msk, a, 0.5 * a - 0.5, normals))
        self.rot0 = torch.as_tensor(fit.rotation, **f32)
        self.s0 = float(fit.scale) * self.k
        self.omega = torch.zeros(3, **f32, requires_grad=True)
        self.log_s = torch.zeros(1, **f32, requires_grad=True)
        self.trans = torch.as_tensor(self.to_crop(np.asarray(fit.translation)[None])[0],
                                     **f32).clone().requires_grad_(True)
        self.expr = torch.as_tensor(fit.expression_coeffs, **f32).clone().requires_grad_(True)
        self.sh = torch.zeros(9, 3, **f32)
        self.lm_ids = torch.as_tensor(np.asarray(lm_ids, np.int64), device=f32["device"])
        self.lm_target = torch.as_tensor(self.to_crop(np.asarray(lm_px, np.float64)), **f32)
        self.fit = fit
        self.act: SimpleNamespace | None = None

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        return (xy - np.array(self.box[:2]) + 0.5) * self.k - 0.5

    def pose_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        kx = torch.einsum("k,kij->ij", self.omega * 0.01, _GEN.to(self.omega))
        eye = torch.eye(3, dtype=kx.dtype, device=kx.device)
        return (eye + kx + 0.5 * kx @ kx) @ self.rot0, self.s0 * torch.exp(0.01 * self.log_s)

    def fold(self) -> None:
        with torch.no_grad():
            rot, _ = self.pose_parts()
            u, _, vt = torch.linalg.svd(rot)
            self.rot0 = u @ vt
            self.omega.zero_()

    def project(self, x: torch.Tensor, rot: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        v = x @ rot.T
        return torch.stack([scale * v[:, 0] + self.trans[0], -scale * v[:, 1] + self.trans[1],
                            -scale * v[:, 2]], 1)


def refine_photometric_multi(
    model: MorphableModel,
    fits: Sequence[FitResult],
    images: Sequence[np.ndarray],
    landmarks_px: Sequence[np.ndarray] | None = None,
    landmark_vertex_ids: Sequence[np.ndarray] | None = None,
    iterations: int = 100,
    size: int = 224,
    image_loss: str = "l2",
    landmark_sigma_px: float = 3.0,
    landmark_weight: float = 3.0,
    pixel_sigma: float = 0.01,
    coeff_prior: float = 1.0,
    albedo_smoothness: float = 30.0,
    albedo_symmetry: float = 10.0,
    albedo_prior: float = 1.0,
    light_prior: float = 0.1,
    outlier_sigmas: float = 3.0,
    refresh_every: int = 20,
    levels: tuple[int, ...] = (4, 2, 1),
    level_share: tuple[float, ...] = (0.5, 0.3, 0.2),
    learning_rate: float = 1.0,
    normals: str = "stencil",
    max_pixels: int = 8000,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> MultiPhotometricResult:
    """Refine a shared-identity landmark fit of several photos photometrically.

    Args:
        model: the morphable model.
        fits: per-photo scaled orthographic fits sharing one shape (e.g. `MultiFit.fits`);
            the shape is taken from the first.
        images: (H, W, 3) uint8 photos, one per fit.
        landmarks_px, landmark_vertex_ids: per photo, landmark targets (K, 2) in image
            pixels and their vertices; default each fit's projected 68 iBUG landmarks.
        Other arguments as `facefit.fit.photometric.refine_photometric` (per photo; Adam).
    """
    if not fits or len(fits) != len(images):
        raise ValueError("refine_photometric_multi: need one image per fit (at least one)")
    if any(f.camera.kind == "perspective" for f in fits):
        raise ValueError("photometric refinement supports the scaled orthographic camera only")
    if image_loss not in ("l2", "huber"):
        raise ValueError(f"image_loss must be 'l2' or 'huber' here, got {image_loss!r}")
    if normals not in ("stencil", "face"):
        raise ValueError(f"normals must be 'stencil' or 'face', got {normals!r}")
    t_start = time.perf_counter()
    dev = torch.device(device if device is not None else
                       ("cuda" if torch.cuda.is_available() else "cpu"))
    f32 = dict(dtype=torch.float32, device=dev)
    rng = np.random.default_rng(seed)
    prep = _prepare(model)
    nv = model.num_vertices
    basis_t = torch.as_tensor(prep.basis, **f32)
    mean_t = torch.as_tensor(model.mean, **f32)
    tri_all = np.asarray(model.triangles, np.int64)
    stencil_np = _cached(model, "stencil") if normals == "stencil" else None
    ibug = np.asarray(model.landmark_ids["ibug68"], np.int64)
    photos = []
    for i, (fit, img) in enumerate(zip(fits, images, strict=True)):
        ids = ibug if landmark_vertex_ids is None else np.asarray(landmark_vertex_ids[i])
        px = fit.verts_px[ids, :2] if landmarks_px is None else np.asarray(landmarks_px[i])
        photos.append(_Photo(fit, img, px, ids, size, levels, normals, f32))
    shape = torch.as_tensor(fits[0].shape_coeffs, **f32).clone().requires_grad_(True)
    has_basis = model.albedo_basis is not None and model.albedo_mean is not None
    if has_basis:
        alb_mean = torch.as_tensor(model.albedo_mean, **f32)
        alb_basis = torch.as_tensor(model.albedo_basis, **f32)
        alb_param = torch.zeros(alb_basis.shape[2], **f32, requires_grad=True)
    else:
        alb_mean = torch.as_tensor(SKIN_RGB, **f32).expand(nv, 3)
        alb_full = torch.zeros(nv, 3, **f32, requires_grad=True)  # shared correction
        mirror_np = np.asarray(model.mirror_ids, np.int64)
        edges_np = _cached(model, "edges")
    reg = SimpleNamespace()  # albedo regulariser over the union of active vertices

    def refresh(ph: _Photo, level: _Level) -> SimpleNamespace:
        ph.fold()
        with torch.no_grad():
            rot, scale = ph.pose_parts()
            coeffs = torch.cat([shape, ph.expr])
            vc = ph.project(mean_t + basis_t @ coeffs, rot, scale).cpu().numpy()
        vl = vc.copy()
        vl[:, :2] = vc[:, :2] * level.a + level.b
        vl[:, 2] *= level.a
        hh, ww = level.mask.shape
        samp = dr.pixel_samples(vl, tri_all, hh, ww, level.mask, device=dev)
        if len(samp.pixel) > max_pixels:
            pick = torch.as_tensor(np.sort(rng.choice(len(samp.pixel), max_pixels,
                                                      replace=False)), device=dev)
            samp = dr.PixelSamples(samp.pixel[pick], samp.vertex_ids[pick], samp.bary[pick],
                                   samp.height, samp.width)
        act = SimpleNamespace(samp=samp, level=level)
        vis = np.unique(samp.vertex_ids.cpu().numpy())
        extra = stencil_np[vis].ravel() if normals == "stencil" else vis[:0]
        local = np.unique(np.concatenate([vis, extra]))
        lut = np.full(nv, -1, np.int64)
        lut[local] = np.arange(len(local))
        act.local = local
        act.ids = torch.as_tensor(local, device=dev)
        if normals == "stencil":
            in_vis = np.zeros(nv, bool)
            in_vis[vis] = True
            st = np.where(in_vis[local][:, None], lut[stencil_np[local]],
                          np.arange(len(local))[:, None])
            act.stencil = torch.as_tensor(st, device=dev)
        act.pix_vids = torch.as_tensor(lut[samp.vertex_ids.cpu().numpy()], device=dev)
        act.basis = basis_t.index_select(0, act.ids)
        act.mean = mean_t.index_select(0, act.ids)
        act.weight = torch.ones(len(samp.pixel), **f32)
        ph.act = act
        return act

    def refresh_all(li: int) -> None:
        for ph in photos:
            refresh(ph, ph.pyramid[li])
        if not has_basis:
            local = np.unique(np.concatenate([ph.act.local for ph in photos]))
            inside = np.zeros(nv, bool)
            inside[local] = True
            reg.local = torch.as_tensor(local, device=dev)
            reg.mirror = torch.as_tensor(mirror_np[local], device=dev)
            reg.edges = torch.as_tensor(edges_np[inside[edges_np].all(1)].T.copy(), device=dev)
            reg.count = len(local)
        for ph in photos:
            reject_outliers(ph)

    def albedo(ids: torch.Tensor) -> torch.Tensor:
        if has_basis:
            return alb_mean.index_select(0, ids) + alb_basis.index_select(0, ids) @ alb_param
        return alb_mean.index_select(0, ids) + alb_full.index_select(0, ids)

    def forward(ph: _Photo) -> dict[str, torch.Tensor]:
        act = ph.act
        rot, scale = ph.pose_parts()
        coeffs = torch.cat([shape, ph.expr])
        v = (act.mean + act.basis @ coeffs) @ rot.T
        bary = act.samp.bary
        if normals == "stencil":
            n = dr.interpolate(dr.stencil_normals(v, act.stencil), act.pix_vids, bary)
            pv = dr.interpolate(v, act.pix_vids, bary)
        else:
            corners = v.index_select(0, act.pix_vids.reshape(-1)).reshape(-1, 3, 3)
            pv = (corners * bary[:, :, None]).sum(1)
            n = torch.linalg.cross(corners[:, 1] - corners[:, 0],
                                   corners[:, 2] - corners[:, 0], dim=1)
        n = n / torch.clamp(torch.linalg.vector_norm(n, dim=1, keepdim=True), min=1e-12)
        alb = dr.interpolate(albedo(act.ids), act.pix_vids, bary)
        lv = act.level
        sc = scale * lv.a
        p = torch.stack([sc * pv[:, 0] + ph.trans[0] * lv.a + lv.b,
                         -sc * pv[:, 1] + ph.trans[1] * lv.a + lv.b], 1)
        observed = dr.sample_image(lv.image, p)
        rendered = dr.shade(n, alb, ph.sh, None)
        lm_x = mean_t.index_select(0, ph.lm_ids) + basis_t.index_select(0, ph.lm_ids) @ coeffs
        lm = ph.project(lm_x, rot, scale)[:, :2]
        return {"observed": observed, "rendered": rendered, "n": n, "lm": lm, "alb": alb}

    def photo_loss(ph: _Photo) -> torch.Tensor:
        out = forward(ph)
        r = out["observed"] - out["rendered"]
        w = ph.act.weight
        if image_loss == "l2":
            data = (w[:, None] * r * r).sum() / (w.sum() * 3 * pixel_sigma**2)
        else:
            hub = torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none",
                                                 delta=2 * pixel_sigma)
            data = (w[:, None] * hub).sum() / (w.sum() * 3 * pixel_sigma**2)
        d = out["lm"] - ph.lm_target
        lmk = landmark_weight * (d * d).sum(1).mean() / landmark_sigma_px**2
        prior = (coeff_prior * (ph.expr * ph.expr).sum() / max(len(ph.lm_ids), 1)
                 + light_prior * (ph.sh[4:] ** 2).sum())
        return data + lmk + prior

    n_lm = float(np.mean([len(ph.lm_ids) for ph in photos]))

    def shared_prior() -> torch.Tensor:
        e = coeff_prior * (shape * shape).sum() / max(n_lm, 1.0)
        if has_basis:
            return e + albedo_prior * (alb_param**2).sum() / max(n_lm, 1.0)
        d = alb_full.index_select(0, reg.local)
        r = albedo_prior * (d * d).sum()
        diff = alb_full.index_select(0, reg.edges[0]) - alb_full.index_select(0, reg.edges[1])
        r = r + albedo_smoothness * (diff * diff).sum()
        sym = d - alb_full.index_select(0, reg.mirror)
        r = r + albedo_symmetry * (sym * sym).sum()
        return e + r / reg.count * 100.0

    def solve_light(ph: _Photo) -> None:
        with torch.no_grad():
            out = forward(ph)
            w = ph.act.weight
            b = dr.sh_basis(out["n"]) * w[:, None]
            for ch in range(3):
                a = b * out["alb"][:, ch:ch + 1]
                lhs = a.T @ a + 1e-3 * len(a) * torch.diag(
                    ph.sh.new_tensor([0.0] + [0.01] * 3 + [1.0] * 5))
                ph.sh[:, ch] = torch.linalg.solve(lhs, a.T @ (out["observed"][:, ch] * w))

    def reject_outliers(ph: _Photo) -> float:
        with torch.no_grad():
            out = forward(ph)
            r = torch.linalg.vector_norm(out["observed"] - out["rendered"], dim=1)
            sigma = 1.4826 * torch.median(r) + 1e-6
            ph.act.weight = (r <= torch.clamp(outlier_sigmas * sigma, min=0.1)).to(r.dtype)
            return float(torch.sqrt((r * r * ph.act.weight).sum() / ph.act.weight.sum()))

    # initial lighting at the coarsest level, error at the finest
    for ph in photos:
        refresh(ph, ph.pyramid[0])
        ph.sh[0] = dr.AMBIENT_L00 * 0.8
        solve_light(ph)
        reject_outliers(ph)
        solve_light(ph)
    initial = []
    for ph in photos:
        refresh(ph, ph.pyramid[-1])
        initial.append(reject_outliers(ph))
        ph.sh.requires_grad_(True)

    lr = learning_rate
    groups = [{"params": [shape], "lr": 0.05 * lr}]
    for ph in photos:
        groups += [{"params": [ph.omega, ph.log_s, ph.trans], "lr": 0.2 * lr},
                   {"params": [ph.expr], "lr": 0.05 * lr},
                   {"params": [ph.sh], "lr": 0.02 * lr}]
    groups.append({"params": [alb_param] if has_basis else [alb_full],
                   "lr": (0.02 if has_basis else 0.01) * lr})
    opt = torch.optim.Adam(groups, foreach=True)
    shares = np.asarray(level_share, np.float64)[: len(levels)]
    counts = np.floor(shares / shares.sum() * iterations).astype(int)
    counts[-1] = iterations - counts[:-1].sum()
    for li in range(len(levels)):
        n_level = int(counts[li])
        for it in range(n_level):
            if it % refresh_every == 0:
                refresh_all(li)
            opt.zero_grad(set_to_none=True)
            loss = shared_prior() + sum(photo_loss(ph) for ph in photos)
            loss.backward()
            opt.step()

    with torch.no_grad():
        if not has_basis:
            alb = (alb_mean + alb_full).clamp(0, 1).cpu().numpy().astype(np.float32)
        else:
            alb = (alb_mean + alb_basis @ alb_param).clamp(0, 1).cpu().numpy().astype(np.float32)
    a = shape.detach().cpu().numpy().astype(np.float32)
    results = []
    for ph, e0 in zip(photos, initial, strict=True):
        refresh(ph, ph.pyramid[-1])
        err = reject_outliers(ph)
        with torch.no_grad():
            rot, scale = ph.pose_parts()
            coeffs = torch.cat([shape, ph.expr])
            lm = ph.project(mean_t.index_select(0, ph.lm_ids)
                            + basis_t.index_select(0, ph.lm_ids) @ coeffs, rot, scale)[:, :2]
            lm_err = float(torch.sqrt(((lm - ph.lm_target) ** 2).sum(1).mean())) / ph.k
            pose = _Pose(rot.cpu().numpy().astype(np.float64), float(scale) / ph.k,
                         (ph.trans.detach().cpu().numpy().astype(np.float64) + 0.5) / ph.k
                         - 0.5 + np.array(ph.box[:2]))
        fit = ph.fit
        new_fit = make_result(model, a, ph.expr.detach().cpu().numpy().astype(np.float32), pose,
                              fit.camera, fit.residual_px, fit.num_landmarks, fit.iterations)
        results.append(PhotometricResult(new_fit, ph.sh.detach().cpu().numpy().astype(np.float32),
                                         alb, err, e0, lm_err, iterations, {}, ph.box, size))
    total = (time.perf_counter() - t_start) * 1e3
    return MultiPhotometricResult(a, model.vertices(a), alb, results, {"total": total})
