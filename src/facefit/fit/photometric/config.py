"""`PhotometricConfig`: every setting of a photometric refinement in one dataclass."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

IMAGE_LOSSES = ("l2", "huber", "gradient")
NORMALS = ("stencil", "tangents", "face", "vertex")
OPTIMIZERS = ("adam", "lbfgs")
GRADIENTS = ("analytic", "autograd")
FREE_PARAMETERS = ("pose", "shape", "expression", "joints", "light", "albedo")
SKIN_RGB = (0.72, 0.53, 0.44)
"""Default mean skin albedo (linear-ish RGB in [0, 1]) for models without albedo."""
ONE_PHOTO_ITERATIONS = 100
"""Default steps of a refinement of one photo (`PhotometricConfig.iterations` None)."""
ONE_PHOTO_LR_COEFFS = 0.05
"""Default Adam step of the shape, expression and joint parameters of a refinement of one
photo (`PhotometricConfig.lr_coeffs` None)."""
JOINT_ITERATIONS = 250
"""Default steps of a joint refinement of several photos (`PhotometricConfig.iterations`
None). 100, the one-photo default, left it unconverged: on six photos of a face (shape
benchmark, seed 2, n = 12, `benchmarks/README.md`) 100 / 150 / 250 / 400 steps read in-model
NoW median 0.256 / 0.226 / 0.203 / 0.207 mm (vertex error rigid 2.14 / 1.88 / 1.56 / 1.41,
similarity 1.29 / 1.23 / 1.18 / 1.21 mm) and ICT 25.1 / 26.8 / 27.5 % below the mean face
(100 / 150 / 250), for 2.1 / 3.1 / 5.1 / 7.3 s a subject. One photo keeps 100 (250 there:
in-model 2.44 -> 2.41 mm, level, for twice the time)."""
JOINT_LR_COEFFS = 0.1
"""Default Adam step of the shape, expression and (FLAME) joint parameters of a joint
refinement of several photos (`PhotometricConfig.lr_coeffs` None; one photo: 0.05; measured
on linear models only, no FLAME data here). Six photos, 250 steps (shape
benchmark, n = 12, `benchmarks/README.md`): in-model rigid / similarity vertex error 1.56 /
1.18 -> 1.50 / 1.17 mm on seed 2 and 1.74 / 1.02 -> 1.69 / 1.02 on seed 3, ICT 27.5 -> 28.1 %
below the mean face, for the same time. One photo stays at 0.05 (0.1 there: in-model 2.44 ->
2.52 mm, ICT 16.8 -> 17.4 %, opposite ways)."""


@dataclass(frozen=True)
class PhotometricConfig:
    """Settings of `facefit.fit.photometric.refine_photometric_multi` (and of
    `refine_photometric`, the same refinement with one photo).

    Schedule:
        iterations: optimiser steps over all pyramid levels (L-BFGS: objective evaluations);
            None: `iterations_for`'s default for the number of photos,
            `ONE_PHOTO_ITERATIONS` for one and `JOINT_ITERATIONS` for several.
        size: side in pixels of the finest level (a square crop around each face).
        skin_forehead: how far above the brows the pixel term reaches, in nose lengths
            (landmark 27 to 30; `facefit.fit.photometric.data.skin_mask`).
        skin_outline_scale: the jaw line of the pixel term's mask scaled about the nose's
            centre (> 1: more of the cheeks towards the ears and under the chin). Past
            the landmarks' own mask (0.7, 1; the least) only pixels of the skin's colour count
            (`facefit.fit.photometric.data.skin_coloured`). 1.5 and 1.2 (were 0.7 and 1):
            the forehead and the cheeks' sides carry the shading of the face's shape; on
            the shape benchmark (seed 2, n = 24) ICT one photo -14.9 -> -16.8 % against the
            mean face, in-model 2.60 -> 2.44 mm rigid vertex error, six photos -24.2 ->
            -25.1 % and 2.18 -> 2.14 mm (benchmarks/README.md, Shape).
        levels: downsampling factors of the pyramid, coarse to fine.
        level_share: fraction of ``iterations`` per level (the rest goes to the last).
        refresh_every: re-rasterise (visibility, outliers) every this many steps.
        max_pixels: at most this many skin pixels per photo and raster refresh, a random
            subset (not with the gradient loss, which needs the whole grid); one number, or
            one per level.
        coarse_pixels: at most this many on every level but the finest (None: no further
            limit). 3000 (was 8000): the middle level (112 px, ~6,200 skin pixels) moves the
            objective little, and its steps cost most; on 8 train-300w photos the final
            photometric RMS stayed 0.036 (shape benchmark: see benchmarks/README.md).
        normals: ``"stencil"`` (smooth normals by central differences over four
            neighbours, `facefit.render.differentiable.normal_stencil`; on linear models
            from one sparse-built matrix, `facefit.fit.photometric.objective.LinearMesh.
            stencil_operator`), ``"tangents"`` (the same two stencil differences
            interpolated to each pixel and crossed there, `LinearMesh.pixel_operator`: on
            8 train-300w photos 25-30 % less CPU than ``"stencil"``; shape benchmark, seed 1,
            n = 16: ICT 1.412 vs 1.406 mm, in-model 0.403 vs 0.397 mm), ``"face"`` (each
            pixel's triangle normal: fastest, biased on irregular meshes) or ``"vertex"``
            (area-weighted vertex normals; needs the whole one-ring, slowest); one name, or
            one per level.
        coarse_normals: the normals of every level but the finest when ``normals`` is one
            name (None: ``normals`` everywhere). ``"tangents"``: the step matrix has 9 rows
            per sampled pixel instead of 9 per visible vertex (~1,500 pixels against ~4,500
            vertices at the coarse level), while the finest level keeps ``normals``.
        seed: seed of the random pixel subsets.

    Objective (Blanz & Vetter, SIGGRAPH 1999):
        image_loss: ``"l2"``, ``"huber"`` or ``"gradient"`` (gradient correlation, Sariyanidi
            et al., ECCV 2020).
        pixel_sigma: colour noise (intensity units, image in [0, 1]) of the pixel term.
        outlier_sigmas: pixels whose residual exceeds this many robust sigmas (and 0.1) are
            rejected as occluders at each raster refresh.
        landmark_sigma_px: landmark noise in pixels at the finest level.
        landmark_weight: weight of each photo's landmark term; None: 2 for one photo, 1 for
            several (the joint fit: the targets anchor the identity to the landmark fit, whose
            identity is biased by the detector; on 3 in-model subjects x 3 photos, seed 7, the
            identity error was 2.49 mm at 3 and 2.31 mm at 1, landmark fit 2.97 mm). One
            photo: 2 (was 3) gave lower scan errors on both shape-benchmark seeds (16 ICT + 16
            in-model subjects each: ICT 1.394 -> 1.389 and 1.415 -> 1.398 mm, in-model
            0.371 -> 0.363 and 0.400 -> 0.387 mm, vertex errors lower too). 0.5 lowers the
            ICT scan error further (1.389 -> 1.369 and 1.398 -> 1.354 mm) but costs 2D
            accuracy (AFLW2000-3D dev, 60 images: balanced NME after refinement 5.75 ->
            6.28 %) and, with accurate targets (true landmarks + 1 px noise, 3 synthetic
            faces), image-space dense error: 28.7 % -> 19.1 % below the landmark fit's
            (benchmarks/README.md, Shape, session 11).
        level_landmark_scale: per pyramid level, a factor on the landmark weight (None: 1
            everywhere), e.g. ``(1, 1, 0)`` drops the landmark term at the finest level.
        specular: add a Phong specular term with a fitted strength (shared by the photos).

    Priors (weights; `facefit.fit.photometric.priors`):
        coeff_prior: weight of the model's Gaussian prior on shape, expression and joint
            parameters (`facefit.model.face_model.FaceModel.prior`), per landmark-term unit.
            0.5 (was 1): with the albedo held on the coarse levels, a weaker pull to the mean
            shape lets the pixels move it further (shape benchmark, 8 subjects, seed 0: ICT
            9.0 → 11.7 % below the mean face, in-model median 0.380 → 0.389 mm).
        turned_prior: ``(from_deg, full_deg, factor)``: ``coeff_prior`` counts 1x for a start
            fit within ``from_deg`` of frontal (the most frontal photo's |yaw| when there
            are several), ``factor``x from ``full_deg`` on, linearly in between; None: 1x
            everywhere. A turned head shows one side of the face, and its pixels pin the
            identity less than a frontal one's, while the prior that suits frontal photos
            lets them bend it (eval synthetic, painted faces, seed 0: the 27 refined faces
            past 60° of yaw gained 3.11 -> 3.08 mm at 1x, 16 worse than the landmark fit;
            coeff_prior 2 / 4 / 8 / 32 there: 2.90 / 2.86 / 2.87 / 3.04 mm; the 34 faces at
            30-60°: 2.63 mm at 0.5, 2.59 at 1-2, 2.63 at 4). The shape benchmark's photos,
            within 30°, keep 1x, where 0.5 measured best (above).
        albedo_prior, albedo_smoothness, albedo_symmetry: size, mesh-Laplacian smoothness and
            left/right symmetry of a per-vertex albedo correction (per vertex); with an
            albedo basis, ``albedo_prior`` weights its N(0, 1) coefficient prior.
        light_prior: weight of the N(0, 1) prior on the second-order SH coefficients.

    Optimiser:
        optimizer: ``"adam"`` or ``"lbfgs"`` (strong-Wolfe line search, restarted at each
            raster refresh).
        learning_rate: multiplier of the Adam step sizes below.
        lr_pose, lr_coeffs, lr_light, lr_albedo, lr_albedo_vertex, lr_specular: Adam step
            sizes of the pose (units of 0.01 rad, 0.01 log-scale and crop pixels), of the
            shape, expression and joint parameters (prior-whitened), of the SH light, of the
            albedo basis coefficients, of the per-vertex albedo correction and of the
            specular strength. ``lr_coeffs`` None: `lr_coeffs_for`'s default for the number
            of photos, `ONE_PHOTO_LR_COEFFS` for one and `JOINT_LR_COEFFS` for several.
        lr_floor: the step sizes decay from 1 to this fraction (cosine) within each level.
        free: the parameter groups that are optimised (`FREE_PARAMETERS`); the others stay
            at their start values.
        shape_components: the leading identity coefficients that Adam optimises (the rest
            stay at their start values); one count, or one per level (coarse to fine);
            None: all.
        gradients: ``"analytic"`` (Adam on a linear mesh with stencil or tangent normals,
            the L2 loss, no specular term and no albedo basis: the objective's gradient
            written out, `facefit.fit.photometric.gradient`; autograd otherwise) or
            ``"autograd"`` (always). The same steps to float32 rounding.
        albedo_levels: the pyramid levels (indices into ``levels``, negative from the
            end) at which a model without an albedo basis optimises its per-vertex albedo
            correction; None: all; ``"auto"`` (default, `albedo_levels_for`): none for one
            photo, the finest for several. Held at the skin colour while the shape settles,
            the correction cannot paint in shading that the shape should explain (the
            shape-albedo ambiguity of one photo): on the shape benchmark (8 subjects, seed 0)
            holding it on the coarse levels took the ICT scan error from 5.7 % to 9.0 % below
            the mean face's and the in-model median from 0.425 to 0.380 mm; holding it on
            every level too, one photo (`benchmarks/shape.py --seed 2`, 100 subjects a row):
            ICT -13.3 -> -15.5 %, in-model vertex error 2.36 / 1.74 -> 2.33 / 1.70 mm (rigid /
            similarity) while the in-model median rose 0.344 -> 0.356 mm; with 6 photos (30
            subjects) ICT -22.4 -> -23.0 % but the in-model median 0.248 -> 0.295 mm, so
            joint fits free it on the finest level.
        albedo_after: steps of a last phase at the finest level, run when the albedo was held
            there, in which only the per-vertex albedo correction moves (shape, expression,
            pose and light held at their final values): the albedo the result carries
            (`PhotometricResult.albedo`, the albedo map); 0: none (the skin colour is
            returned). Not counted in ``iterations`` (nor in `PhotometricResult.iterations`).

    Run:
        device: torch device (default CUDA when available, else the CPU).
        progress: show a tqdm progress bar.
        debug_timing: print pixels, active vertices, ms per step and the objective
            every 5 steps (its convergence) for each level.
    """

    iterations: int | None = None
    size: int = 224
    skin_forehead: float = 1.5
    skin_outline_scale: float = 1.2
    levels: tuple[int, ...] = (4, 2, 1)
    level_share: tuple[float, ...] = (0.5, 0.3, 0.2)
    refresh_every: int = 20
    max_pixels: int | tuple[int, ...] = 8000
    coarse_pixels: int | None = 3000
    normals: str | tuple[str, ...] = "stencil"
    coarse_normals: str | None = "tangents"
    seed: int = 0
    image_loss: str = "l2"
    pixel_sigma: float = 0.01
    outlier_sigmas: float = 3.0
    landmark_sigma_px: float = 3.0
    landmark_weight: float | None = None
    level_landmark_scale: tuple[float, ...] | None = None
    specular: bool = False
    coeff_prior: float = 0.5
    turned_prior: tuple[float, float, float] | None = (30.0, 75.0, 8.0)
    albedo_prior: float = 1.0
    albedo_smoothness: float = 30.0
    albedo_symmetry: float = 10.0
    light_prior: float = 0.1
    optimizer: str = "adam"
    learning_rate: float = 1.0
    lr_pose: float = 0.2
    lr_coeffs: float | None = None
    lr_light: float = 0.02
    lr_albedo: float = 0.02
    lr_albedo_vertex: float = 0.01
    lr_specular: float = 0.01
    lr_floor: float = 1.0
    free: tuple[str, ...] = FREE_PARAMETERS
    shape_components: int | tuple[int, ...] | None = None
    gradients: str = "analytic"
    albedo_levels: tuple[int, ...] | str | None = "auto"
    albedo_after: int = 20
    device: str | None = None
    progress: bool = False
    debug_timing: bool = False

    def __post_init__(self) -> None:
        if self.image_loss not in IMAGE_LOSSES:
            raise ValueError(f"image_loss must be one of {IMAGE_LOSSES}, got {self.image_loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.gradients not in GRADIENTS:
            raise ValueError(f"gradients must be one of {GRADIENTS}, got {self.gradients!r}")
        if self.skin_forehead < 0.7 or self.skin_outline_scale < 1:
            raise ValueError("skin_forehead must be >= 0.7 and skin_outline_scale >= 1 (the "
                             f"landmarks' own mask), got {self.skin_forehead} and "
                             f"{self.skin_outline_scale}")
        if not self.levels or len(self.level_share) < len(self.levels):
            raise ValueError("need at least one level and a level_share per level")
        normals = self.level_normals
        if len(normals) != len(self.levels) or any(n not in NORMALS for n in normals):
            raise ValueError(f"normals must be one of {NORMALS} (or one per level), "
                             f"got {self.normals!r} (coarse_normals {self.coarse_normals!r})")
        if not isinstance(self.max_pixels, int) and len(self.max_pixels) != len(self.levels):
            raise ValueError(f"max_pixels: one number or one per level, got {self.max_pixels!r}")
        if (self.iterations is not None and self.iterations < 0) or self.size < 8 \
                or self.refresh_every < 1:
            raise ValueError("iterations must be >= 0, size >= 8 and refresh_every >= 1")
        if self.albedo_after < 0:
            raise ValueError(f"albedo_after must be >= 0, got {self.albedo_after}")
        n = len(self.levels)
        if isinstance(self.albedo_levels, str) and self.albedo_levels != "auto":
            raise ValueError(f"albedo_levels: 'auto', None or level indices, got "
                             f"{self.albedo_levels!r}")
        if self.albedo_levels not in (None, "auto") and any(
                not -n <= int(i) < n for i in self.albedo_levels):
            raise ValueError(f"albedo_levels must index levels ({-n}..{n - 1}), got "
                             f"{self.albedo_levels!r}")
        for name in ("level_landmark_scale", "shape_components"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, int) and len(v) != n:
                raise ValueError(f"{name}: one value per level ({n}), got {v!r}")
        if self.turned_prior is not None and (
                len(self.turned_prior) != 3 or not 0 <= self.turned_prior[0] < self.turned_prior[1]
                or self.turned_prior[2] < 1):
            raise ValueError("turned_prior: (from_deg, full_deg, factor) with 0 <= from_deg < "
                             f"full_deg and factor >= 1, got {self.turned_prior!r}")
        unknown = set(self.free) - set(FREE_PARAMETERS)
        if unknown:
            raise ValueError(f"free: unknown parameter groups {sorted(unknown)}; "
                             f"known: {FREE_PARAMETERS}")

    @property
    def level_normals(self) -> tuple[str, ...]:
        """The normals of each pyramid level."""
        n = self.normals
        if not isinstance(n, str):
            return tuple(n)
        coarse = n if self.coarse_normals is None else self.coarse_normals
        return (coarse,) * (len(self.levels) - 1) + (n,)

    def level_max_pixels(self, level: int) -> int | None:
        """The pixel budget of pyramid level ``level`` (index into ``levels``); None with
        the gradient loss (the whole grid)."""
        if self.image_loss == "gradient":
            return None
        m = self.max_pixels
        limit = int(m if isinstance(m, int) else m[level])
        if self.coarse_pixels is not None and level % len(self.levels) != len(self.levels) - 1:
            limit = min(limit, int(self.coarse_pixels))
        return limit

    def iterations_for(self, n_photos: int) -> int:
        """``iterations``, or its default for a refinement of ``n_photos`` photos:
        `ONE_PHOTO_ITERATIONS` for one, `JOINT_ITERATIONS` for several."""
        if self.iterations is not None:
            return int(self.iterations)
        return ONE_PHOTO_ITERATIONS if n_photos == 1 else JOINT_ITERATIONS

    def lr_coeffs_for(self, n_photos: int) -> float:
        """``lr_coeffs``, or its default for a refinement of ``n_photos`` photos:
        `ONE_PHOTO_LR_COEFFS` for one, `JOINT_LR_COEFFS` for several."""
        if self.lr_coeffs is not None:
            return float(self.lr_coeffs)
        return ONE_PHOTO_LR_COEFFS if n_photos == 1 else JOINT_LR_COEFFS

    def level_counts(self, n_photos: int = 1) -> np.ndarray:
        """(levels,) steps per pyramid level of a refinement of ``n_photos`` photos:
        ``level_share`` of `iterations_for`, the rest to the last."""
        total = self.iterations_for(n_photos)
        shares = np.asarray(self.level_share, np.float64)[:len(self.levels)]
        counts = np.floor(shares / shares.sum() * total).astype(int)
        counts[-1] = total - counts[:-1].sum()
        return counts

    def albedo_levels_for(self, n_photos: int) -> tuple[int, ...] | None:
        """``albedo_levels``, or its ``"auto"`` value for ``n_photos`` photos: none (the
        albedo held on every level) for one photo, the finest for several."""
        if self.albedo_levels != "auto":
            return self.albedo_levels  # type: ignore[return-value]
        return () if n_photos == 1 else (-1,)

    def albedo_free_at(self, level: int, n_photos: int = 1) -> bool:
        """Whether the per-vertex albedo correction is optimised at pyramid level ``level``
        (index into ``levels``) of a refinement of ``n_photos`` photos: ``"albedo"`` is free
        and `albedo_levels_for` is None or holds the level."""
        n = len(self.levels)
        levels = self.albedo_levels_for(n_photos)
        return self.is_free("albedo") and (levels is None or level % n in {
            int(i) % n for i in levels})

    def coeff_prior_for(self, yaws_deg: Sequence[float]) -> float:
        """The weight of the coefficient prior for photos whose start fits have these yaws
        (degrees): ``coeff_prior`` times the ``turned_prior`` factor of the most frontal."""
        if self.turned_prior is None or not len(yaws_deg):
            return float(self.coeff_prior)
        start, full, factor = (float(v) for v in self.turned_prior)
        t = np.clip((min(abs(float(y)) for y in yaws_deg) - start) / max(full - start, 1e-9),
                    0.0, 1.0)
        return float(self.coeff_prior) * (1.0 + (factor - 1.0) * float(t))

    def landmark_weight_for(self, n_photos: int) -> float:
        """``landmark_weight``, or its default for ``n_photos`` photos (see the class)."""
        if self.landmark_weight is not None:
            return float(self.landmark_weight)
        return 2.0 if n_photos == 1 else 1.0

    def level_landmark_weight(self, level: int, n_photos: int) -> float:
        """The landmark weight at pyramid level ``level``: `landmark_weight_for` times
        ``level_landmark_scale``."""
        w = self.landmark_weight_for(n_photos)
        return w if self.level_landmark_scale is None else w * float(
            self.level_landmark_scale[level])

    def level_shape_components(self, level: int, num_shape: int) -> int:
        """How many leading identity coefficients are optimised at pyramid level ``level``."""
        k = self.shape_components
        if k is None:
            return num_shape
        return min(num_shape, int(k if isinstance(k, int) else k[level]))

    def is_free(self, group: str) -> bool:
        """Whether the parameter group ``group`` (`FREE_PARAMETERS`) is optimised."""
        return group in self.free


def parse_settings(items: Sequence[str]) -> dict[str, object]:
    """`PhotometricConfig` keyword arguments from ``KEY=VALUE`` strings (a benchmark's
    ``--option``): each value a Python literal (``0.5``, ``(1, 1, 0.25)``, ``None``) or, when
    it is none, the bare word as a string (``optimizer=lbfgs``). Raises ValueError naming an
    item without ``=`` or a key that is not a setting."""
    known = {f.name for f in fields(PhotometricConfig)}
    settings: dict[str, object] = {}
    for item in items:
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or key not in known:
            raise ValueError(f"{item!r}: expected KEY=VALUE with KEY a PhotometricConfig "
                             "setting")
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key] = value
    return settings
