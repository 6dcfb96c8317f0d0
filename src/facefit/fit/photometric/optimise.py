"""The optimiser of a photometric refinement: one loop for one photo or several.

`refine_photometric_multi` refines the landmark fits of one or more photos of one person:
shape and albedo are shared, pose, expression, joints (FLAME) and light are per photo. It
runs Adam (or L-BFGS) coarse to fine over the pyramid levels, re-rasterising every
``refresh_every`` steps (visibility, occluder rejection), on the objective of
`facefit.fit.photometric.objective` plus the priors of `facefit.fit.photometric.priors`.
`refine_photometric` is the same refinement with one photo.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from facefit.fit.core.priors import GaussianPrior
from facefit.fit.flame_fit import FlameFit, flame_embedding, flame_result
from facefit.fit.landmark_fit import make_result
from facefit.fit.photometric.adam import Adam
from facefit.fit.photometric.config import SKIN_RGB, PhotometricConfig
from facefit.fit.photometric.data import prepare_photo
from facefit.fit.photometric.gradient import (
    analytic_supported,
    interpolation_matrices,
    photo_objective,
    pixel_term,
)
from facefit.fit.photometric.objective import (
    FlameMesh,
    LinearMesh,
    PhotoState,
    landmark_loss,
    pixel_loss,
    unique_ids,
)
from facefit.fit.photometric.priors import (
    TorchGaussian,
    albedo_quadratic,
    gaussian_cost,
    light_cost,
    quadratic_cost,
)
from facefit.fit.result import FitResult
from facefit.model.face_model import FaceModel
from facefit.model.flame import FlameFaceModel
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel
from facefit.render import differentiable as dr


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
        landmark_error_px: RMS distance of the projected landmarks to their targets (input
            image pixels) after refinement.
        iterations: optimisation steps run over all pyramid levels.
        timings_ms: wall-clock ms of the whole refinement: ``raster``, ``forward``,
            ``backward``, ``total``.
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


@dataclass(frozen=True, eq=False)
class MultiPhotometricResult:
    """A joint photometric refinement of several photos.

    Attributes:
        shape_coeffs: (Ks,) float32 shared identity coefficients.
        neutral_vertices: (V, 3) float32 identity mesh (mm, model frame, expression 0).
        albedo: (V, 3) float32 shared per-vertex albedo in [0, 1].
        results: one `PhotometricResult` per photo (its fit has the shared shape).
        timings_ms: wall-clock ms: ``raster``, ``forward``, ``backward``, ``total``.
    """

    shape_coeffs: np.ndarray
    neutral_vertices: np.ndarray
    albedo: np.ndarray
    results: list[PhotometricResult]
    timings_ms: dict[str, float]


_CACHE: weakref.WeakKeyDictionary[MorphableModel, dict[str, np.ndarray]] = (
    weakref.WeakKeyDictionary())


def _cached(model: MorphableModel, key: str) -> np.ndarray:
    """Per-model arrays: ``"stencil"`` (normal stencil on the mean), ``"edges"``,
    ``"basis"`` ((V, 3, Ks + Ke) float32 shape and expression basis) or ``"basis_by_coeff"``
    (the same as (Ks + Ke, V, 3))."""
    entry = _CACHE.setdefault(model, {})
    if key not in entry:
        if key == "stencil":
            entry[key] = dr.normal_stencil(model.mean, model.triangles)
        elif key == "edges":
            entry[key] = dr.mesh_edges(model.triangles)
        elif key == "basis_by_coeff":
            entry[key] = np.ascontiguousarray(np.moveaxis(_cached(model, "basis"), 2, 0))
        else:
            entry[key] = np.ascontiguousarray(np.concatenate(
                [model.shape_basis, model.expression_basis], axis=2), dtype=np.float32)
    return entry[key]


def torch_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    return torch.device(device if device is not None else
                        ("cuda" if torch.cuda.is_available() else "cpu"))


class Albedo:
    """The shared albedo: the model's albedo basis and its coefficients, or (models without
    one) a mean colour plus a per-vertex correction. Only the correction's rows around the
    photos' active vertices (and their mirrors) are optimised, by their own Adam restarted
    at every raster refresh; they are folded back into the full table then."""

    def __init__(self, model: MorphableModel, init: np.ndarray | None, free: bool,
                 f32: dict, config: PhotometricConfig) -> None:
        self.free = free
        self.config = config  # its albedo prior weights (the regulariser's sparse matrix)
        self.quadratic: torch.Tensor | None = None
        self.f32 = f32
        self.basis: torch.Tensor | None = None
        self.param: torch.Tensor | None = None
        if model.albedo_basis is not None and model.albedo_mean is not None:
            self.mean = torch.as_tensor(model.albedo_mean, **f32)
            self.basis = torch.as_tensor(model.albedo_basis, **f32)
            self.param = torch.zeros(self.basis.shape[2], **f32, requires_grad=free)
        else:
            self.mean = (torch.as_tensor(SKIN_RGB, **f32).expand(model.num_vertices, 3)
                         if init is None else torch.as_tensor(init, **f32))
            self.full = torch.zeros(model.num_vertices, 3, **f32)
            self.mirror_np = np.asarray(model.mirror_ids, np.int64)
            self.edges_np = _cached(model, "edges")
        self.leaf: torch.Tensor | None = None
        self.opt: Adam | None = None
        self.photo_means: list[torch.Tensor] = []
        self.photo_rows: list[torch.Tensor] = []
        self.held: list[torch.Tensor] | None = None

    def refresh(self, photos: Sequence[PhotoState], lr: float, free: bool | None = None
                ) -> None:
        """Follow the photos' new rasters (their active vertices); ``free`` (default: as
        constructed) says whether the per-vertex correction is optimised until the next
        refresh."""
        self.fold()
        if free is not None:
            self.free = free
        self.photo_means = [self.mean.index_select(0, ph.act.ids) for ph in photos]
        self.held = None
        if self.basis is not None:
            self.photo_rows = [self.basis.index_select(0, ph.act.ids) for ph in photos]
            self._hold(photos)
            return
        nv, dev = len(self.full), self.full.device
        locals_ = [ph.act.local for ph in photos]
        local = locals_[0] if len(locals_) == 1 else unique_ids(nv, *locals_)
        alb_ids = unique_ids(nv, local, self.mirror_np[local])
        lut = np.full(nv, -1, np.int64)
        lut[alb_ids] = np.arange(len(alb_ids))
        self.ids = torch.as_tensor(alb_ids, device=dev)
        self.photo_rows = [torch.as_tensor(lut[lo], device=dev) for lo in locals_]
        self.leaf = self.full[self.ids].clone().requires_grad_(self.free)
        self.opt = Adam([self.leaf], lr=lr) if self.free else None
        self.quadratic = None
        if self.free:  # the regulariser (`albedo_regulariser`) as one sparse matrix
            c = self.config
            inside = np.zeros(nv, bool)
            inside[local] = True
            e = self.edges_np[inside[self.edges_np].all(1)]
            self.quadratic = albedo_quadratic(
                len(alb_ids), lut[local], lut[self.mirror_np[local]], lut[e.T],
                c.albedo_prior, c.albedo_smoothness, c.albedo_symmetry).to(dev)
        self._hold(photos)

    def _hold(self, photos: Sequence[PhotoState]) -> None:
        """While nothing of the albedo is optimised, make each photo's active albedo once
        (the same tensor until the next refresh: `PhotoState.render` keeps its pixel
        values)."""
        leaf = self.param if self.basis is not None else self.leaf
        if leaf is None or not leaf.requires_grad:
            with torch.no_grad():
                self.held = [self.active(i) for i in range(len(photos))]

    def active(self, i: int) -> torch.Tensor:
        """(Va, 3) albedo of photo ``i``'s active vertices."""
        if self.held is not None:
            return self.held[i]
        if self.basis is not None:
            return self.photo_means[i] + self.photo_rows[i] @ self.param
        return self.photo_means[i] + self.leaf.index_select(0, self.photo_rows[i])

    def leaves(self) -> list[torch.Tensor]:
        """The per-vertex rows being optimised (the basis coefficients are in the main
        optimiser)."""
        return [self.leaf] if self.opt is not None else []

    def cost(self, config: PhotometricConfig, n_landmarks: float) -> torch.Tensor:
        """The albedo prior (`facefit.fit.photometric.priors`); 0 while the per-vertex
        correction is held (a constant: no gradient)."""
        if self.param is not None:
            return (config.albedo_prior * gaussian_cost(GaussianPrior.standard(len(self.param)),
                                                        self.param) / max(n_landmarks, 1.0))
        if self.leaf is None or self.quadratic is None:
            return torch.zeros((), **self.f32)
        return quadratic_cost(self.leaf, self.quadratic)

    def fold(self) -> None:
        """Fold the optimised rows back into the full correction table."""
        if self.leaf is not None:
            with torch.no_grad():
                self.full[self.ids] = self.leaf.detach()

    def final(self) -> np.ndarray:
        """(V, 3) float32 albedo in [0, 1]."""
        self.fold()
        with torch.no_grad():
            alb = self.mean + (self.basis @ self.param if self.param is not None else self.full)
            return alb.clamp(0, 1).cpu().numpy().astype(np.float32)


def _landmark_points(kind: FaceModel, model: MorphableModel, fit: FitResult,
                     landmarks_px: np.ndarray | None, vertex_ids: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corners (K, C), barycentric weights (K, C), targets (K, 2) px) of one photo's
    landmark term: the given vertices, else the model's 68 iBUG vertices (FLAME: its
    barycentric landmark embedding); targets default to the fit's own projections."""
    if vertex_ids is not None:
        corners = np.asarray(vertex_ids, np.int64)[:, None]
        bary = np.ones(corners.shape)
    elif isinstance(kind, FlameFaceModel):
        emb = flame_embedding(kind.flame)
        corners, bary = np.asarray(emb.corners, np.int64), np.asarray(emb.bary, np.float64)
    else:
        corners = np.asarray(model.landmark_ids["ibug68"], np.int64)[:, None]
        bary = np.ones(corners.shape)
    if landmarks_px is None:
        verts = np.asarray(fit.verts_px, np.float64)[:, :2]
        landmarks_px = (verts[corners] * bary[:, :, None]).sum(1)
    return corners, bary, np.asarray(landmarks_px, np.float64)


def refine_photometric_multi(
    model: MorphableModel | FaceModel,
    fits: Sequence[FitResult],
    images: Sequence[np.ndarray],
    landmarks_px: Sequence[np.ndarray] | None = None,
    landmark_vertex_ids: Sequence[np.ndarray] | None = None,
    config: PhotometricConfig = PhotometricConfig(),  # noqa: B008  (frozen)
    albedo_init: np.ndarray | None = None,
) -> MultiPhotometricResult:
    """Refine the landmark fits (scaled orthographic or perspective cameras) of one or more
    photos of one person photometrically (analysis by synthesis, Blanz & Vetter, SIGGRAPH
    1999): the identity (shape, albedo) is shared, pose, expression, FLAME joints and light
    are per photo.

    The objective is, summed over the photos,

        w_pix · mean_pixels ρ(I(p) − albedo · SH(n)) + w_lm · mean ‖landmark residual‖² / σ²
        + priors (expression, joints, second-order light; shape and albedo counted once),

    over each photo's face-skin mask with occluder rejection (`PhotometricConfig`).

    Args:
        model: the model of the fits (a `MorphableModel` or its `FaceModel` kind); FLAME
            vertices are skinned (the fits' ``flame_pose`` is the start), other kinds use
            their linear part.
        fits: per-photo fits sharing one shape (the first one's is the start).
        images: (H, W, 3) uint8 photos, one per fit.
        landmarks_px, landmark_vertex_ids: per photo, landmark targets (K, 2) in image
            pixels and their vertices; default each fit's projected 68 iBUG landmarks.
        config: the settings (`PhotometricConfig`).
        albedo_init: (V, 3) albedo the per-vertex correction starts from (models without an
            albedo basis; default mean skin colour `SKIN_RGB`).
    """
    if not fits or len(fits) != len(images):
        raise ValueError("photometric refinement: need one image per fit (at least one)")
    t_start = time.perf_counter()
    dev = torch_device(config.device)
    f32 = dict(dtype=torch.float32, device=dev)
    rng = np.random.default_rng(config.seed)
    timings = {"raster": 0.0, "forward": 0.0, "backward": 0.0}
    kind = face_model(model)
    base = kind.base
    ks = base.num_shape
    flame = isinstance(kind, FlameFaceModel)
    basis = _cached(base, "basis")
    mesh = (FlameMesh(kind, basis, f32) if flame
            else LinearMesh(base, basis, f32, _cached(base, "basis_by_coeff")))
    prior = kind.prior() if flame else GaussianPrior.standard(ks + base.num_expression)
    nc = ks + base.num_expression
    shape_cost, expr_cost, joint_cost = (
        TorchGaussian(GaussianPrior(prior.mean[sl], prior.sigma[sl]), torch.float32, dev)
        for sl in (slice(0, ks), slice(ks, nc), slice(nc, None)))
    # blendshape (ICT) weights: projected onto their box after every step, with the
    # elastic-net sparsity cost of the landmark fit (`facefit.fit.blendshape`) in place of
    # the Gaussian prior
    box = kind.box() if kind.kind == "ict" else None  # type: ignore[attr-defined]
    normals = config.level_normals
    stencil = (_cached(base, "stencil") if {"stencil", "tangents"} & set(normals)
               else None)
    triangles = np.asarray(base.triangles, np.int64)
    photos = []
    for i, (fit, img) in enumerate(zip(fits, images, strict=True)):
        corners, bary, px = _landmark_points(
            kind, base, fit, None if landmarks_px is None else landmarks_px[i],
            None if landmark_vertex_ids is None else landmark_vertex_ids[i])
        data = prepare_photo(fit, img, config.size, config.levels, normals, corners, bary, px,
                             dev, config.skin_forehead, config.skin_outline_scale)
        joints = None
        if flame:
            pose = fit.extras.get("flame_pose")
            joints = (np.zeros((kind.num_joints, 3)) if pose is None
                      else np.asarray(pose, np.float64))
        photos.append(PhotoState(data, mesh, joints, stencil, triangles, f32))

    free = config.is_free
    shape = torch.as_tensor(fits[0].shape_coeffs, **f32).clone().requires_grad_(free("shape"))
    for ph in photos:
        ph.expr.requires_grad_(free("expression"))
        ph.joint_u.requires_grad_(free("joints"))
        for p in (ph.omega, ph.log_s, ph.trans):
            p.requires_grad_(free("pose"))
    albedo = Albedo(base, albedo_init, free("albedo"), f32, config)
    spec = torch.zeros(1, **f32, requires_grad=config.specular)
    lr = config.learning_rate
    lm_weight = config.landmark_weight_for(len(photos))
    n_lm = float(np.mean([ph.num_landmarks for ph in photos]))
    w_prior = config.coeff_prior_for([f.yaw_deg for f in fits])

    def coeffs(ph: PhotoState) -> torch.Tensor:
        return torch.cat([shape, ph.expr])

    def renderer(i: int) -> Callable[[], dict[str, torch.Tensor]]:
        ph = photos[i]
        return lambda: ph.render(coeffs(ph), albedo.active(i), spec if config.specular else None)

    def refresh(li: int, optimised: bool = True) -> None:
        """Rasterise every photo at level ``li``; ``optimised=False`` for a raster that is
        only evaluated (the initial and final errors: no step operator, albedo held)."""
        t = time.perf_counter()
        for ph in photos:
            ph.rasterise(ph.data.pyramid[li], coeffs(ph), config.level_max_pixels(li), rng,
                         operator=optimised)
        albedo.refresh(photos, config.lr_albedo_vertex * lr,
                       config.albedo_free_at(li, len(photos)) and optimised)
        timings["raster"] += time.perf_counter() - t

    def reject_outliers() -> list[float]:
        return [ph.reject_outliers(renderer(i), config.outlier_sigmas)
                for i, ph in enumerate(photos)]

    def objective() -> torch.Tensor:
        e = w_prior * shape_cost(shape) / max(n_lm, 1.0)
        e = e + albedo.cost(config, n_lm)
        for i, ph in enumerate(photos):
            out = renderer(i)()
            coeff_cost = expr_cost(ph.expr) if box is None else blendshape_cost(ph.expr)
            if len(mesh.free_joints):
                coeff_cost = coeff_cost + joint_cost(ph.joint_vector())
            e = e + (pixel_loss(out, ph.act, config.image_loss, config.pixel_sigma)
                     + landmark_loss(out["lm"], ph.lm_target, lm_weight,
                                     config.landmark_sigma_px)
                     + w_prior * coeff_cost / max(ph.num_landmarks, 1)
                     + config.light_prior * light_cost(ph.sh))
        return e

    def leaf_pixels(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Photo i's per-vertex albedo at its raster's pixels as ``mean_px + W @ leaf``:
        ((P, 3) mean_px, W, Wᵀ), the mean's pixels once per raster, W sparse."""
        act = photos[i].act
        assert act is not None and albedo.leaf is not None
        if "albedo" not in act.cache:
            rows = albedo.photo_rows[i][act.pix_vids]
            act.cache["albedo"] = (
                dr.interpolate(albedo.photo_means[i], act.pix_vids, act.samp.bary),
                *interpolation_matrices(rows, act.samp.bary, len(albedo.leaf)))
        return act.cache["albedo"]

    def albedo_gradient() -> None:
        """The per-vertex albedo's gradient of `analytic_objective` with everything else
        held (the ``albedo_after`` phase): the pixels' samples and shading, constants then,
        are those the last `analytic_objective` left in each raster's cache, so a step
        costs the albedo's sparse products only."""
        leaf = albedo.leaf
        with torch.no_grad():
            g_leaf = 2.0 * (albedo.quadratic @ leaf) if albedo.quadratic is not None else 0.0
            for i, ph in enumerate(photos):
                mean_px, w_leaf, w_leaf_t = leaf_pixels(i)
                observed, irradiance = ph.act.cache["shading"]
                _, g_r = pixel_term(observed, mean_px + w_leaf @ leaf, irradiance,
                                    ph.act.weight, config.pixel_sigma)
                g_leaf = g_leaf + w_leaf_t @ (-g_r * irradiance)
            leaf.grad = g_leaf

    def analytic_objective() -> torch.Tensor:
        """`objective` and its gradient written out (`facefit.fit.photometric.gradient`):
        sets the parameters' ``grad`` and returns the value."""
        from facefit.fit.blendshape import DEFAULT_RIDGE, DEFAULT_SPARSITY

        with torch.no_grad():
            w_shape = w_prior / max(n_lm, 1.0)
            rs = (shape - shape_cost.mean) / shape_cost.sigma
            e = w_shape * (rs * rs).sum()
            g_shape = (2.0 * w_shape) * rs / shape_cost.sigma
            leaf = albedo.leaf if albedo.opt is not None else None
            g_leaf = None
            if leaf is not None and albedo.quadratic is not None:
                q_leaf = albedo.quadratic @ leaf
                e = e + (leaf * q_leaf).sum()
                g_leaf = 2.0 * q_leaf
            for i, ph in enumerate(photos):
                act = ph.act
                assert act is not None
                active = albedo.active(i)
                if leaf is None:  # held: interpolated once per raster
                    if act.held_albedo is None or act.held_albedo[0] is not active:
                        act.held_albedo = (active, dr.interpolate(active, act.pix_vids,
                                                                  act.samp.bary))
                    alb_px = act.held_albedo[1]
                else:
                    mean_px, w_leaf, _ = leaf_pixels(i)
                    alb_px = mean_px + w_leaf @ leaf
                terms, g = photo_objective(ph, coeffs(ph), alb_px, lm_weight,
                                           config.landmark_sigma_px, config.pixel_sigma)
                act.cache["shading"] = (g["observed"], g["irradiance"])
                w_expr = w_prior / max(ph.num_landmarks, 1)
                if box is None:
                    re = (ph.expr - expr_cost.mean) / expr_cost.sigma
                    e_expr, g_expr = (re * re).sum(), 2.0 * re / expr_cost.sigma
                else:
                    e_expr = DEFAULT_SPARSITY * ph.expr.sum() + DEFAULT_RIDGE * (
                        ph.expr * ph.expr).sum()
                    g_expr = DEFAULT_SPARSITY + 2.0 * DEFAULT_RIDGE * ph.expr
                e = (e + terms + w_expr * e_expr
                     + config.light_prior * (ph.sh[4:] ** 2).sum())
                g_shape = g_shape + g["coeffs"][:ks]
                if ph.expr.requires_grad:
                    ph.expr.grad = g["coeffs"][ks:] + w_expr * g_expr
                if ph.sh.requires_grad:
                    g_sh = g["sh"]
                    g_sh[4:] += (2.0 * config.light_prior) * ph.sh[4:]
                    ph.sh.grad = g_sh
                for name, p in (("omega", ph.omega), ("log_s", ph.log_s),
                                ("trans", ph.trans)):
                    if p.requires_grad:
                        p.grad = g[name]
                if g_leaf is not None:
                    g_leaf = g_leaf + act.cache["albedo"][2] @ g["albedo_px"]
            if shape.requires_grad:
                shape.grad = g_shape
            if leaf is not None and leaf.requires_grad:
                leaf.grad = g_leaf
        return e

    def blendshape_cost(w: torch.Tensor) -> torch.Tensor:
        from facefit.fit.blendshape import DEFAULT_RIDGE, DEFAULT_SPARSITY

        return DEFAULT_SPARSITY * w.sum() + DEFAULT_RIDGE * (w * w).sum()

    def project() -> None:
        if box is None:
            return
        with torch.no_grad():
            for ph in photos:
                ph.expr.clamp_(float(box.lower[ks]), float(box.upper[ks]))

    project()
    # initial light at the coarsest level, initial error at the finest
    refresh(0)
    for i, ph in enumerate(photos):
        ph.init_light(renderer(i), config.outlier_sigmas)
    refresh(len(config.levels) - 1, optimised=False)
    initial = reject_outliers()
    for ph in photos:
        ph.sh.requires_grad_(free("light"))

    groups = []
    if free("pose"):
        for ph in photos:
            groups += [{"params": [p], "lr": config.lr_pose * lr}
                       for p in (ph.omega, ph.log_s, ph.trans)]
    lr_coeffs = config.lr_coeffs_for(len(photos)) * lr
    if free("shape"):
        groups.append({"params": [shape], "lr": lr_coeffs})
    for ph in photos:
        if free("expression"):
            groups.append({"params": [ph.expr], "lr": lr_coeffs})
        if free("joints") and len(mesh.free_joints):
            groups.append({"params": [ph.joint_u], "lr": lr_coeffs})
        if free("light"):
            groups.append({"params": [ph.sh], "lr": config.lr_light * lr})
    if free("albedo") and albedo.param is not None:
        groups.append({"params": [albedo.param], "lr": config.lr_albedo * lr})
    if config.specular:
        groups.append({"params": [spec], "lr": config.lr_specular * lr})
    opt = Adam(groups) if groups else None
    base_lrs = [g["lr"] for g in groups]

    def analytic_ok() -> bool:
        """Whether `analytic_objective` serves the current rasters (else autograd)."""
        return (config.gradients == "analytic" and config.optimizer == "adam"
                and albedo.basis is None and not len(mesh.free_joints)
                and all(analytic_supported(ph, config.image_loss, config.specular, False)
                        for ph in photos))

    counts = config.level_counts(len(photos))
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=int(counts.sum()), desc="photometric", unit="it", leave=False)
    done = 0
    for li, n_level in enumerate(int(c) for c in counts):
        t_level = time.perf_counter()
        lm_weight = config.level_landmark_weight(li, len(photos))  # read by the objectives
        k_shape = config.level_shape_components(li, ks)
        losses: list[float] = []  # debug_timing: the objective at every step of the level
        it = 0
        while it < n_level:
            refresh(li)
            reject_outliers()
            block = min(config.refresh_every, n_level - it)
            params = [p for g in groups for p in g["params"]] + albedo.leaves()
            evals = [0]
            analytic = analytic_ok()

            def closure(params: list = params, evals: list = evals,
                        losses: list = losses, analytic: bool = analytic) -> torch.Tensor:
                t = time.perf_counter()
                for q in params:
                    q.grad = None
                if analytic:
                    loss = analytic_objective()
                    t2 = time.perf_counter()
                else:
                    loss = objective()
                    t2 = time.perf_counter()
                    if params:
                        loss.backward()
                timings["forward"] += t2 - t
                timings["backward"] += time.perf_counter() - t2
                evals[0] += 1
                if config.debug_timing:
                    losses.append(float(loss.detach()))
                return loss

            if config.optimizer == "lbfgs" and params:
                lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=block, max_eval=block,
                                          history_size=10, line_search_fn="strong_wolfe",
                                          tolerance_grad=1e-9, tolerance_change=1e-12)
                lbfgs.step(closure)
                project()
            else:
                for j in range(block):
                    decay = config.lr_floor + (1 - config.lr_floor) * 0.5 * (
                        1 + np.cos(np.pi * (it + j) / n_level))
                    if opt is not None:
                        for g, base_lr in zip(opt.param_groups, base_lrs, strict=True):
                            g["lr"] = base_lr * decay
                    if albedo.opt is not None:
                        albedo.opt.param_groups[0]["lr"] = config.lr_albedo_vertex * lr * decay
                    closure()
                    if k_shape < ks and shape.grad is not None:
                        shape.grad[k_shape:] = 0.0
                    if opt is not None:
                        opt.step()
                        project()
                    if albedo.opt is not None:
                        albedo.opt.step()
            n = max(evals[0], 1)
            it += n
            done += n
            if bar is not None:
                bar.update(n)
        if config.debug_timing:
            act = photos[0].act
            print(f"level {act.level.mask.shape[0]}: pixels {len(act.samp.pixel)} vertices "
                  f"{len(act.ids)} {1e3 * (time.perf_counter() - t_level) / max(n_level, 1):.1f}"
                  " ms/it; objective every 5 steps "
                  + " ".join(f"{v:.1f}" for v in losses[::5] + losses[-1:]))
    if bar is not None:
        bar.close()
    last = len(config.levels) - 1
    if (config.albedo_after and free("albedo") and albedo.basis is None
            and not config.albedo_free_at(last, len(photos))):
        # the albedo the outputs carry, fitted with everything else held at its final value
        # (on the finest level's last raster and outlier mask)
        albedo.refresh(photos, config.lr_albedo_vertex * lr, True)
        analytic = analytic_ok()
        for j in range(config.albedo_after):
            albedo.leaf.grad = None
            if analytic and j:
                albedo_gradient()
            elif analytic:
                analytic_objective()  # leaves each raster's samples and shading cached
            else:
                objective().backward()
            albedo.opt.param_groups[0]["lr"] = config.lr_albedo_vertex * lr * (
                config.lr_floor + (1 - config.lr_floor) * 0.5 * (
                    1 + np.cos(np.pi * j / config.albedo_after)))
            albedo.opt.step()
    refresh(len(config.levels) - 1, optimised=False)
    final = reject_outliers()

    alb = albedo.final()
    a = shape.detach().cpu().numpy().astype(np.float32)
    timings_ms = {key: val * 1e3 for key, val in timings.items()}
    timings_ms["total"] = (time.perf_counter() - t_start) * 1e3
    results = []
    for ph, e0, e1 in zip(photos, initial, final, strict=True):
        pose, lm_err = ph.image_camera(coeffs(ph))
        expr = ph.expr.detach().cpu().numpy().astype(np.float32)
        fit = ph.data.fit
        if flame:
            new_fit = flame_result(kind.flame, FlameFit(
                a.astype(np.float64), expr.astype(np.float64), ph.joints(), pose.rotation,
                pose.scale, pose.translation,
                fit.residual_px, fit.num_landmarks, fit.iterations, (), fit.camera))
        else:
            new_fit = make_result(base, a, expr, pose, fit.camera,
                                  fit.residual_px, fit.num_landmarks, fit.iterations)
            if box is not None:
                new_fit.extras["blendshape_weights"] = expr.copy()
        results.append(PhotometricResult(
            new_fit, ph.sh.detach().cpu().numpy().astype(np.float32), alb, e1, e0, lm_err,
            done, dict(timings_ms), ph.data.box, config.size))
    return MultiPhotometricResult(a, base.vertices(a), alb, results, timings_ms)


def refine_photometric(
    model: MorphableModel | FaceModel,
    fit: FitResult,
    image_rgb: np.ndarray,
    landmarks_px: np.ndarray | None = None,
    landmark_vertex_ids: np.ndarray | None = None,
    config: PhotometricConfig = PhotometricConfig(),  # noqa: B008  (frozen)
    albedo_init: np.ndarray | None = None,
) -> PhotometricResult:
    """Refine a landmark fit photometrically: `refine_photometric_multi`
    with one photo (the same loop, optimiser, normals and schedule).

    Args:
        model: the model of ``fit`` (FLAME keeps its jaw and neck skinning).
        fit: the landmark fit to start from.
        image_rgb: (H, W, 3) uint8 photo.
        landmarks_px: (K, 2) landmark targets in image pixels; default the fit's own 68
            projected landmarks (keeps the refinement close to the landmark fit).
        landmark_vertex_ids: (K,) vertex of each target (default the model's ``ibug68``).
        config: the settings (`PhotometricConfig`).
        albedo_init: (V, 3) albedo the per-vertex correction starts from (models without an
            albedo basis; default mean skin colour).
    """
    return refine_photometric_multi(
        model, [fit], [image_rgb], None if landmarks_px is None else [landmarks_px],
        None if landmark_vertex_ids is None else [landmark_vertex_ids], config,
        albedo_init).results[0]


def best_refinement(
    model: MorphableModel | FaceModel,
    starts: Sequence[Sequence[FitResult]],
    images_rgb: Sequence[np.ndarray],
    config: PhotometricConfig = PhotometricConfig(),  # noqa: B008  (frozen)
    landmarks_px: Sequence[np.ndarray] | None = None,
    landmark_vertex_ids: Sequence[np.ndarray] | None = None,
) -> tuple[int, MultiPhotometricResult]:
    """(index, result) of the joint refinement (`refine_photometric_multi`) of the photos
    ``images_rgb`` that explains them best, the lowest mean
    `PhotometricResult.photometric_error`, of the start sets ``starts``: the same faces'
    landmark fits under different camera models (`facefit.fit.camera.camera_candidates`: the
    scaled orthographic camera and a pinhole one where the focal length is unknown). One
    photo: ``starts`` of one fit each, ``images_rgb`` of one image. ``landmarks_px``,
    ``landmark_vertex_ids``: `refine_photometric_multi`'s landmark targets. On the shape
    benchmark's one-photo renders of the default model's own faces (seed 2, 50 each;
    `benchmarks/README.md`, "Which camera when") this kept the pinhole camera at the image
    diagonal for 49 close-ups (nose 18 cm from the lens) and 48 at 49 cm, and the scaled
    orthographic camera for 49 distant faces."""
    best: tuple[int, MultiPhotometricResult, float] | None = None
    for i, fits in enumerate(starts):
        res = refine_photometric_multi(model, list(fits), list(images_rgb), landmarks_px,
                                       landmark_vertex_ids, config)
        err = float(np.mean([r.photometric_error for r in res.results]))
        if best is None or err < best[2]:
            best = (i, res, err)
    if best is None:
        raise ValueError("best_refinement: no start")
    return best[0], best[1]
