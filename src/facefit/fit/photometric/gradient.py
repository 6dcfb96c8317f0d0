"""Closed-form gradients of a photometric refinement's objective (no autograd).

For the common case, a linear mesh (`facefit.fit.photometric.objective.LinearMesh`) with
stencil or tangent normals, the L2 pixel term, no specular term and no albedo basis, a step
of `facefit.fit.photometric.refine_photometric_multi` evaluates the objective and its
gradient here by the chain rule written out: about 60 tensor operations a photo and step
instead of ~450 recorded and replayed by autograd, whose bookkeeping was most of a step's
cost on the coarse pyramid levels (~1,500 pixels). The arithmetic is autograd's (the same
forward operations; the backward in another order), so the steps agree with
``PhotometricConfig(gradients="autograd")`` to float32 rounding (test).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import sparse

from facefit.fit.photometric.objective import PhotoState
from facefit.render import differentiable as dr


def analytic_supported(ph: PhotoState, image_loss: str, specular: bool, albedo_basis: bool
                       ) -> bool:
    """Whether `photo_objective` applies to photo ``ph``'s current raster: a linear mesh
    with a stencil or tangent operator, the L2 loss, no specular term, no albedo basis."""
    act = ph.act
    return (act is not None and ph.mesh.linear and image_loss == "l2" and not specular
            and not albedo_basis
            and (act.stencil_basis is not None or act.pixel_basis is not None))


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.cross(a, b, dim=1)


def _unit_backward(grad: torch.Tensor, unit: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Gradient at x of ``x / |x|`` (``unit``, ``norm`` (N, 1)) given the gradient at it."""
    return (grad - unit * (grad * unit).sum(1, keepdim=True)) / norm


def _torch_csr(m: sparse.csr_matrix, like: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.as_tensor(m.indptr, dtype=torch.int64, device=like.device),
            torch.as_tensor(m.indices, dtype=torch.int64, device=like.device),
            torch.as_tensor(m.data, dtype=like.dtype, device=like.device), size=m.shape,
            check_invariants=False)


def interpolation_matrices(ids: torch.Tensor, bary: torch.Tensor, num: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (P, num), Wᵀ (num, P)) sparse CSR with ``W @ attrs ==
    facefit.render.differentiable.interpolate(attrs, ids, bary)`` for attributes (num, C):
    corners ``ids`` (P, 3) in [0, num), weights ``bary`` (P, 3). Wᵀ gives the gradient at
    the attributes (a sparse product: ~4x faster on one core than ``index_add_``)."""
    p = len(ids)
    w = sparse.csr_matrix((bary.detach().cpu().numpy().ravel(), ids.cpu().numpy().ravel(),
                           np.arange(0, 3 * p + 1, 3)), shape=(p, num))
    return _torch_csr(w, bary), _torch_csr(w.T.tocsr(), bary)


def _project_backward(ph: PhotoState, g_p: torch.Tensor, a: float, view: torch.Tensor,
                      scale: torch.Tensor, q: torch.Tensor | None, w: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients at the (N, 3) view points, the translation (2,) and the scale of
    `PhotoState.crop_projection`'s crop pixels, given ``g_p`` (N, 2), the gradient at those
    pixels times ``a`` (a pyramid level's ``a x + b``)."""
    if q is None or w is None:
        g_view = torch.nn.functional.pad(g_p * (scale * a * ph.flip_y), (0, 1))
        return g_view, a * g_p.sum(0), (g_p * view[:, :2] * (a * ph.flip_y)).sum()
    focal = ph.persp[2]  # type: ignore[index]
    g_p = g_p * a
    g_q = g_p / w
    g_w = -(g_p * q).sum(1, keepdim=True) / (w * w)
    g_view = torch.cat([g_q * (scale * ph.flip_y), g_w * (-scale / focal)], 1)
    g_scale = (g_q * view[:, :2] * ph.flip_y).sum() - (g_w * view[:, 2:3]).sum() / focal
    return g_view, g_q.sum(0), g_scale


def photo_objective(ph: PhotoState, coeffs: torch.Tensor, albedo_px: torch.Tensor,
                    lm_weight: float, lm_sigma_px: float, pixel_sigma: float
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Photo ``ph``'s pixel and landmark terms (`objective.pixel_loss` with the L2 loss plus
    `objective.landmark_loss`) on its current raster, and their gradients.

    Args:
        ph: the photo (its raster has ``stencil_basis`` or ``pixel_basis``).
        coeffs: (K,) shape then expression coefficients.
        albedo_px: (P, 3) albedo at the raster's pixels.
        lm_weight, lm_sigma_px, pixel_sigma: the terms' weight and noise levels.

    Returns:
        (the terms' sum (scalar), gradients: ``coeffs`` (K,), ``omega`` (3,), ``log_s``
        (1,), ``trans`` (2,), ``sh`` (9, 3) and ``albedo_px`` (P, 3)), and the pixels'
        (P, 3) ``observed`` colours and ``irradiance`` (for `pixel_term`).
    """
    act = ph.act
    assert act is not None
    with torch.no_grad():
        kx = dr.skew(ph.omega * 0.01)
        small = dr.small_rotation(ph.omega * 0.01)
        rot = small @ ph.rot0
        scale = ph.s0 * torch.exp(0.01 * ph.log_s)
        bary = act.samp.bary
        # geometry: view-frame positions pv and unit normals nh at the pixels
        if act.pixel_basis is not None:
            offset, matrix = act.pixel_basis
            y = torch.addmv(offset, matrix, coeffs).reshape(3, -1, 3)
            yv = y @ rot.T
            pv = yv[0]
            n = _cross(yv[1], yv[2])
        else:
            offset, matrix, corners = act.stencil_basis  # type: ignore[misc]
            y = torch.addmv(offset, matrix, coeffs).reshape(3, -1, 3)
            if "corners" not in act.cache:
                act.cache["corners"] = interpolation_matrices(corners, bary, y.shape[1])
            w_c, w_ct = act.cache["corners"]
            craw = _cross(y[1], y[2])
            cnorm = torch.clamp(torch.linalg.vector_norm(craw, dim=1, keepdim=True), min=1e-12)
            u = craw / cnorm
            both = (w_c @ torch.cat([y[0], u], 1)).reshape(-1, 2, 3)
            bv = both @ rot.T
            pv, n = bv[:, 0], bv[:, 1]
        nnorm = torch.clamp(torch.linalg.vector_norm(n, dim=1, keepdim=True), min=1e-12)
        nh = n / nnorm
        # camera at the level's resolution (crop pixels x a + b), image samples
        lv = act.level
        if ph.persp is None:
            q_pix = w_pix = None
            p = pv[:, :2] * (scale * lv.a * ph.flip_y) + (ph.trans * lv.a + lv.b)
        else:
            p_crop, q_pix, w_pix = ph.crop_projection(pv, scale)
            p = p_crop * lv.a + lv.b
        _, hh, ww = lv.image.shape
        to_grid = p.new_tensor([2.0 / max(ww - 1, 1), 2.0 / max(hh - 1, 1)])
        grid = (p * to_grid - 1.0)[None, None]
        observed = torch.nn.functional.grid_sample(
            lv.image[None], grid, mode="bilinear", padding_mode="border",
            align_corners=True)[0, :, 0].T
        # SH shading as the quadratic form of `dr.sh_shading`: E_c = [n,1]^T M_c [n,1]
        t = dr.constant("sh", ph.sh.dtype, ph.sh.device).reshape(16, 9)
        m = (t @ ph.sh).reshape(4, 4, -1)
        nh4 = torch.cat([nh, torch.ones_like(nh[:, :1])], 1)
        q = (nh4 @ m.permute(0, 2, 1).reshape(4, -1)).reshape(len(nh4), -1, 4)
        irr = (q * nh4[:, None, :]).sum(-1)
        loss, g_r = pixel_term(observed, albedo_px, irr, act.weight, pixel_sigma)
        # landmarks
        pts = ph.lm_points(coeffs, None)
        if not ph.lm_single:
            kk, cc = ph.lm_bary.shape
            pts = (pts.reshape(kk, cc, 3) * ph.lm_bary[:, :, None]).sum(1)
        view = pts @ rot.T
        lm, q_lm, w_lm = ph.crop_projection(view, scale)
        d = lm - ph.lm_target
        lm_scale = lm_weight / (len(d) * lm_sigma_px**2)
        loss = loss + lm_scale * (d * d).sum()

        # --- backward ---
        g_alb = -g_r * irr
        g_irr = -g_r * albedo_px
        # E = nh4^T M nh4 with M symmetric: dE/dnh4 = 2 M nh4 = 2 q
        g_nh = 2.0 * (g_irr[:, :, None] * q).sum(1)[:, :3]
        g_m = nh4.T @ (g_irr[:, :, None] * nh4[:, None, :]).reshape(len(nh4), -1)  # (4, C*4)
        g_m = g_m.reshape(4, -1, 4).permute(0, 2, 1).reshape(16, -1)
        g_sh = t.T @ g_m
        # image samples: torch's own backward of grid_sample for the grid
        g_grid = torch.ops.aten.grid_sampler_2d_backward(
            g_r.T[None, :, None, :].contiguous(), lv.image[None], grid, 0, 1, True,
            [False, True])[1][0, 0]
        g_pv, g_trans, g_scale = _project_backward(ph, g_grid * to_grid, lv.a, pv, scale,
                                                   q_pix, w_pix)
        g_n = _unit_backward(g_nh, nh, nnorm)
        # landmarks
        g_view, g_t, g_s = _project_backward(ph, (2.0 * lm_scale) * d, 1.0, view, scale,
                                             q_lm, w_lm)
        g_trans = g_trans + g_t
        g_scale = g_scale + g_s
        g_rot = g_view.T @ pts
        g_pts = g_view @ rot
        if not ph.lm_single:
            g_pts = (g_pts[:, None, :] * ph.lm_bary[:, :, None]).reshape(-1, 3)
        basis = ph.lm_points.basis
        g_coeffs = basis.reshape(-1, basis.shape[-1]).T @ g_pts.reshape(-1)
        # geometry
        if act.pixel_basis is not None:
            g_yv = torch.stack([g_pv, _cross(yv[2], g_n), _cross(g_n, yv[1])])
            g_rot = g_rot + g_yv.reshape(-1, 3).T @ y.reshape(-1, 3)
            g_y = g_yv @ rot
        else:
            g_bv = torch.stack([g_pv, g_n], 1)  # (P, 2, 3)
            g_rot = g_rot + g_bv.reshape(-1, 3).T @ both.reshape(-1, 3)
            g_vert = w_ct @ (g_bv @ rot).reshape(-1, 6)
            g_c = _unit_backward(g_vert[:, 3:], u, cnorm)
            g_y = torch.stack([g_vert[:, :3], _cross(y[2], g_c), _cross(g_c, y[1])])
        g_coeffs = torch.addmv(g_coeffs, matrix.T, g_y.reshape(-1))
        # rotation = (I + K + K K / 2) rot0, K = [0.01 omega]x
        g_small = g_rot @ ph.rot0.T
        g_k = g_small + 0.5 * (g_small @ kx.T + kx.T @ g_small)
        g_omega = 0.01 * (dr.constant("skew", kx.dtype, kx.device).T @ g_k.reshape(9))
        g_log_s = (0.01 * g_scale * scale).reshape(1)
    return loss, {"coeffs": g_coeffs, "omega": g_omega, "log_s": g_log_s, "trans": g_trans,
                  "sh": g_sh, "albedo_px": g_alb, "observed": observed, "irradiance": irr}


def pixel_term(observed: torch.Tensor, albedo_px: torch.Tensor, irradiance: torch.Tensor,
               weight: torch.Tensor, pixel_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The L2 pixel term ``sum_p w_p |observed_p - albedo_p * irradiance_p|^2 /
    (3 sigma^2 sum w)`` of (P, 3) colours at the raster's pixels with (P,) weights, and its
    gradient at the (P, 3) residual ``observed - albedo * irradiance`` (so ``-g * irradiance``
    is the albedo's). With everything but the albedo held, ``observed`` and ``irradiance``
    are constants (`photo_objective` returns them) and this is the whole pixel term."""
    r = observed - albedo_px * irradiance
    norm_pix = 1.0 / (weight.sum() * 3 * pixel_sigma**2)
    wr = weight[:, None] * r
    return (wr * r).sum() * norm_pix, (2.0 * norm_pix) * wr


__all__ = ["analytic_supported", "photo_objective", "pixel_term"]
