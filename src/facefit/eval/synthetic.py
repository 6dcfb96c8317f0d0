"""Synthetic ground truth: faces sampled from the model's priors, rendered and re-fitted.

Each face draws identity and expression coefficients from their N(0, 1) priors (truncated
at ±3σ), a head pose (yaw uniform in ±90°, pitch ±30°, roll ±20°, the pose ranges of
AFLW2000-3D; Zhu et al., CVPR 2016), Lambertian + ambient lighting from a random frontal
direction with a tinted light colour, a random background (smooth colour noise, a linear
gradient or a crop of another photo) and Gaussian pixel noise, and is rendered with
facefit's numpy z-buffer rasteriser (`facefit.render.raster`) under the scaled orthographic
camera of `facefit.fit.camera`, 2× supersampled. The default model has no albedo: the skin
colour is the per-vertex colour of facefit's own reconstruction of ``examples/astronaut.png``
(computed at run time), with a random skin tone and smooth random variation per face, so
that MediaPipe's detector sees eyes, brows and lips; without that photo a mean skin tone is
used. Synthesising training/evaluation faces from a morphable model's priors follows
Richardson et al., "3D Face Reconstruction by Learning from Synthetic Data", 3DV 2016.

Metrics, per fitting method:

* detection rate: faces where the pipeline found a face (no face found is counted as a
  miss, never dropped);
* 68-point NME with the AFLW2000-3D protocol (`facefit.eval.landmarks.nme_bbox`): mean
  distance between the fit's 68 projected landmark vertices (hidden ones included) and the
  ground truth projected 68 landmark vertices, divided by ``sqrt(w·h)`` of the ground-truth
  box, per |yaw| bucket, their balanced mean and the plain mean;
* pose error: mean absolute yaw, pitch and roll differences (degrees; Euler angles are
  ill-conditioned near |yaw| = 90°) and the geodesic rotation error
  ``arccos((tr(R_fitᵀ R_gt) - 1) / 2)`` (Huynh, "Metrics for 3D Rotations", JMIV 2009);
* dense vertex error: mean per-vertex Euclidean distance between the fitted and the true
  model-frame meshes (identity + expression), after a rigid Kabsch/Procrustes alignment
  (Kabsch, Acta Cryst. 1976) and without alignment ("direct", the coefficient difference
  alone). `MorphableModel` vertices are millimetres, so model units are mm here
  (``mm_per_unit`` converts for other models).

Methods: the whole pipeline (`facefit.Reconstructor`: MediaPipe + landmark fit), the
photometric refinement when `facefit.fit.photometric.refine_photometric` exists, an upper
bound that fits the exact projected 68 landmarks (no detector) with
`facefit.fit.landmark_fit.fit_points`, and the mean face as a no-fit baseline (vertex error
only).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facefit.eval.landmarks import BUCKET_NAMES, nme_bbox, yaw_bucket
from facefit.fit.camera import euler_from_rotation, rotation_from_euler
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.fit.core.rotation import umeyama
from facefit.fit.result import FitResult
from facefit.model.morphable_model import MorphableModel

YAW_RANGE_DEG = 90.0
PITCH_RANGE_DEG = 30.0
ROLL_RANGE_DEG = 20.0
COEFF_CLIP = 3.0
SKIN_TONE = (0.78, 0.58, 0.46)
"""Fallback mean skin albedo (linear RGB in [0, 1]) when the example photo is unavailable."""
EXAMPLE_PHOTO = Path(__file__).resolve().parents[3] / "examples" / "astronaut.png"


# ---------------------------------------------------------------------------------------
# Sampling and rendering


@dataclass(frozen=True, eq=False)
class SyntheticFace:
    """One rendered face with its ground truth.

    Attributes:
        image: (H, W, 3) uint8 RGB render.
        shape_coeffs, expression_coeffs: (Ks,), (Ke,) float32 true coefficients (N(0, 1) units).
        rotation: (3, 3) model-to-view rotation; yaw_deg, pitch_deg, roll_deg: its angles.
        scale: pixels per model unit; translation: (2,) pixel position of the model origin.
        verts_model: (V, 3) float32 true mesh in the model frame (model units).
        verts_px: (V, 3) float32 the mesh in image space (x, y pixels, depth larger = farther).
        landmarks_68: (68, 2) float64 projected 68 landmark vertices, hidden ones included.
        mask: (H, W) bool, pixels covered by the face.
        background: ``"noise"``, ``"gradient"`` or ``"image"``.
    """

    image: np.ndarray
    shape_coeffs: np.ndarray
    expression_coeffs: np.ndarray
    rotation: np.ndarray
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    scale: float
    translation: np.ndarray
    verts_model: np.ndarray
    verts_px: np.ndarray
    landmarks_68: np.ndarray
    mask: np.ndarray
    background: str


def project_orthographic(points: np.ndarray, rotation: np.ndarray, scale: float,
                         translation: np.ndarray) -> np.ndarray:
    """(N, 3) image-space points of model-frame ``points`` under the scaled orthographic camera
    of `facefit.fit.camera`: x = s·X + tx, y = -s·Y + ty, depth = -s·Z of the view-frame X, Y, Z."""
    camera = ScaledOrthographicCamera(np.asarray(rotation, np.float64), float(scale),
                                      np.asarray(translation, np.float64))
    return camera.image_points(points)


@functools.lru_cache(maxsize=2)
def _example_photo_colours(model: MorphableModel) -> tuple[np.ndarray, np.ndarray] | None:
    """(V, 3) float32 albedo in [0, 1] from facefit's reconstruction of the example photo, and
    the photo with the face painted out (a background source); None if unavailable."""
    if not EXAMPLE_PHOTO.is_file():
        return None
    try:
        from facefit.io.image import load_image
        from facefit.reconstruct import Reconstructor

        photo = load_image(EXAMPLE_PHOTO)
        recs = Reconstructor(model=model, texture_size=256).reconstruct(photo, max_faces=1)
    except Exception:  # noqa: BLE001 - no detector / model data: fall back to a skin tone
        return None
    if not recs or recs[0].vertex_colors is None:
        return None
    colours = recs[0].vertex_colors.astype(np.float32) / 255.0
    x0, y0, x1, y1 = (int(round(float(v))) for v in recs[0].face.box)
    pad = int(0.25 * max(x1 - x0, y1 - y0))
    bg = photo.copy()
    # Remove the face (and a margin) so background crops never contain a detectable face.
    y0, y1 = max(0, y0 - 2 * pad), min(bg.shape[0], y1 + pad)
    x0, x1 = max(0, x0 - pad), min(bg.shape[1], x1 + pad)
    bg[y0:y1, x0:x1] = bg[y0:y1, x0:x1].mean((0, 1)).astype(np.uint8)
    return colours, bg


def base_albedo(model: MorphableModel) -> np.ndarray:
    """(V, 3) float32 per-vertex albedo in [0, 1]: the model's own mean albedo, else the
    example photo's colours (see the module docstring), else a uniform skin tone."""
    if model.albedo_mean is not None:
        return np.clip(np.asarray(model.albedo_mean, np.float32), 0.0, 1.0)
    got = _example_photo_colours(model)
    if got is not None:
        return got[0]
    return np.tile(np.asarray(SKIN_TONE, np.float32), (model.num_vertices, 1))


def _smooth_field(points: np.ndarray, rng: np.random.Generator, waves: int = 4,
                  wavelength: tuple[float, float] = (40.0, 160.0)) -> np.ndarray:
    """(N,) smooth random field in [-1, 1] over 3D points: a mean of random plane waves."""
    d = rng.standard_normal((waves, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*wavelength, size=waves)
    phase = rng.uniform(0, 2 * np.pi, size=waves)
    return np.sin(points @ (d * k[:, None]).T + phase).mean(1)


def _background(rng: np.random.Generator, h: int, w: int, sources: Sequence[np.ndarray]
                ) -> tuple[np.ndarray, str]:
    """(h, w, 3) float32 background in [0, 1] and its kind."""
    import cv2

    kinds = ["noise", "gradient"] + (["image"] if sources else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "noise":
        k = int(rng.integers(2, 12))
        low = rng.uniform(0, 1, size=(k, k, 3)).astype(np.float32)
        bg = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        bg += rng.normal(0, 0.05, size=bg.shape).astype(np.float32)
    elif kind == "gradient":
        c0, c1 = rng.uniform(0, 1, size=(2, 3))
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * np.cos(ang) + yy * np.sin(ang)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        bg = (c0 + (c1 - c0) * t[..., None]).astype(np.float32)
    else:
        src = sources[int(rng.integers(len(sources)))]
        side = int(rng.integers(min(src.shape[:2]) // 4, min(src.shape[:2]) // 2 + 1))
        y = int(rng.integers(0, src.shape[0] - side + 1))
        x = int(rng.integers(0, src.shape[1] - side + 1))
        crop = src[y:y + side, x:x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        bg = cv2.resize(np.ascontiguousarray(crop), (w, h),
                        interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    return np.clip(bg, 0.0, 1.0), kind


def render_face(
    model: MorphableModel,
    verts_model: np.ndarray,
    albedo: np.ndarray,
    rotation: np.ndarray,
    scale: float,
    translation: np.ndarray,
    size: tuple[int, int],
    light_dir: np.ndarray,
    light_colour: np.ndarray,
    ambient: float,
    background: np.ndarray,
    supersample: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Lambert + ambient render of a mesh over a background, in [0, 1] float32.

    Args:
        verts_model: (V, 3) model-frame vertices; albedo: (V, 3) per-vertex albedo.
        rotation, scale, translation: the scaled orthographic camera (`project_orthographic`).
        size: (width, height) in pixels; background: (H, W, 3) float32.
        light_dir: direction towards the light in image space (x right, y down, z away).
        light_colour: (3,) RGB intensity of the directional light; ambient: ambient fraction.
        supersample: render at this factor and average down (anti-aliased edges).

    Returns:
        (H, W, 3) float32 image and (H, W) bool face mask (coverage above one half).
    """
    import cv2

    from facefit.render.raster import interpolate, rasterize
    from facefit.render.shading import vertex_normals

    w, h = size
    f = int(supersample)
    verts = project_orthographic(verts_model, rotation, scale, translation)
    hi = verts.copy()
    hi[:, :2] = f * verts[:, :2] + (f - 1) / 2.0  # integer pixel centres at both resolutions
    hi[:, 2] *= f
    raster = rasterize(hi, model.triangles, h * f, w * f)
    normals = interpolate(raster, vertex_normals(verts, model.triangles))
    normals /= np.maximum(np.linalg.norm(normals, axis=2, keepdims=True), 1e-12)
    normals *= np.where(normals[..., 2:] > 0, -1.0, 1.0).astype(np.float32)  # back faces
    light = np.asarray(light_dir, np.float32) / np.linalg.norm(light_dir)
    lambert = np.maximum(normals @ light, 0.0)[..., None]
    rgb = interpolate(raster, albedo) * (ambient + (1 - ambient) * lambert
                                         * np.asarray(light_colour, np.float32))
    cover = raster.mask.astype(np.float32)
    if f > 1:
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        cover = cv2.resize(cover, (w, h), interpolation=cv2.INTER_AREA)
    out = rgb + (1 - cover[..., None]) * background  # rgb is premultiplied by coverage
    return np.clip(out, 0.0, 1.0).astype(np.float32), cover > 0.5


def sample_face(
    model: MorphableModel,
    rng: np.random.Generator,
    size: int = 320,
    albedo: np.ndarray | None = None,
    backgrounds: Sequence[np.ndarray] | None = None,
    pose_deg: tuple[float, float, float] | None = None,
    face_fraction: tuple[float, float] = (0.3, 0.42),
    noise_sigma: tuple[float, float] = (1.0, 6.0),
) -> SyntheticFace:
    """Sample and render one face (see the module docstring).

    Args:
        model: the morphable model.
        rng: random generator (all randomness comes from it).
        size: image side in pixels.
        albedo: (V, 3) base albedo in [0, 1]; default `base_albedo`.
        backgrounds: uint8 photos to crop backgrounds from; default the example photo with its
            face removed.
        pose_deg: fixed (yaw, pitch, roll) instead of a random pose.
        face_fraction: range of the frontal 68-landmark box side ``sqrt(w·h)`` / image side.
        noise_sigma: range of the Gaussian pixel-noise standard deviation (0-255 levels).
    """
    if albedo is None:
        albedo = base_albedo(model)
    if backgrounds is None:
        got = _example_photo_colours(model) if model.albedo_mean is None else None
        backgrounds = [got[1]] if got is not None else []
    alpha = np.clip(rng.standard_normal(model.num_shape), -COEFF_CLIP, COEFF_CLIP)
    beta = np.clip(rng.standard_normal(model.num_expression), -COEFF_CLIP, COEFF_CLIP)
    alpha, beta = alpha.astype(np.float32), beta.astype(np.float32)
    if pose_deg is None:
        pose_deg = (float(rng.uniform(-YAW_RANGE_DEG, YAW_RANGE_DEG)),
                    float(rng.uniform(-PITCH_RANGE_DEG, PITCH_RANGE_DEG)),
                    float(rng.uniform(-ROLL_RANGE_DEG, ROLL_RANGE_DEG)))
    yaw, pitch, roll = pose_deg
    rot = rotation_from_euler(yaw, pitch, roll)
    verts = model.vertices(alpha, beta)
    ids = np.asarray(model.landmark_ids["ibug68"])
    lm = verts[ids].astype(np.float64)
    box = np.ptp(lm[:, :2], axis=0)
    scale = float(rng.uniform(*face_fraction)) * size / float(np.sqrt(box[0] * box[1]))
    centre = project_orthographic(lm, rot, scale, np.zeros(2))[:, :2].mean(0)
    translation = size / 2.0 - centre + rng.uniform(-0.06, 0.06, size=2) * size
    tone = rng.uniform(0.55, 1.2) * rng.normal(1.0, 0.05, size=3)
    var = 1.0 + 0.08 * _smooth_field(verts.astype(np.float64), rng)[:, None]
    alb = np.clip(albedo * tone * var, 0.0, 1.0).astype(np.float32)
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.3, 1.5)])
    light_colour = rng.uniform(0.75, 1.1) * rng.normal(1.0, 0.05, size=3)
    ambient = float(rng.uniform(0.25, 0.6))
    bg, kind = _background(rng, size, size, backgrounds)
    rgb, mask = render_face(model, verts, alb, rot, scale, translation, (size, size), light,
                            light_colour, ambient, bg)
    rgb += rng.normal(0, rng.uniform(*noise_sigma) / 255.0, size=rgb.shape).astype(np.float32)
    image = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    verts_px = project_orthographic(verts, rot, scale, translation).astype(np.float32)
    return SyntheticFace(
        image=image, shape_coeffs=alpha, expression_coeffs=beta, rotation=rot,
        yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll, scale=scale, translation=translation,
        verts_model=verts, verts_px=verts_px, landmarks_68=verts_px[ids, :2].astype(np.float64),
        mask=mask, background=kind)


def sample_faces(model: MorphableModel, n: int, seed: int = 0, size: int = 320
                 ) -> list[SyntheticFace]:
    """``n`` faces; face i depends only on (seed, i), so a larger n extends a smaller set."""
    return [sample_face(model, np.random.default_rng([seed, i]), size) for i in range(n)]


# ---------------------------------------------------------------------------------------
# Metrics


def geodesic_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Angle in degrees of the rotation ``r_aᵀ r_b`` (geodesic distance on SO(3))."""
    c = (np.trace(np.asarray(r_a, np.float64).T @ np.asarray(r_b, np.float64)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def euler_errors_deg(r_fit: np.ndarray, r_gt: np.ndarray) -> np.ndarray:
    """(3,) absolute yaw, pitch and roll differences in degrees, wrapped to [0, 180]."""
    d = np.subtract(euler_from_rotation(r_fit), euler_from_rotation(r_gt))
    return np.abs((d + 180.0) % 360.0 - 180.0)


def vertex_error(pred: np.ndarray, gt: np.ndarray, align: str = "rigid") -> float:
    """Mean per-vertex Euclidean distance between two (V, 3) meshes in the same units.

    ``align``: ``"none"`` (as given), ``"rigid"`` (rotation + translation minimising the
    squared distances, Kabsch 1976) or ``"similarity"`` (plus a uniform scale, Umeyama 1991).
    """
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if align != "none":
        if align not in ("rigid", "similarity"):
            raise ValueError(f"align must be 'none', 'rigid' or 'similarity', got {align!r}")
        p = umeyama(p, g, with_scale=align == "similarity").apply(p)
    return float(np.linalg.norm(p - g, axis=1).mean())


@dataclass
class MethodScores:
    """Per-face scores of one fitting method (NaN where it found no face).

    Attributes:
        name: row label; found: (N,) bool; nme: (N,) AFLW2000-3D NME (fraction);
        euler_err: (N, 3) |Δyaw|, |Δpitch|, |Δroll| degrees; geodesic: (N,) degrees;
        vert_rigid, vert_direct, vert_similarity: (N,) mean vertex error in model units;
        landmarks: (N, 68, 2) the fitted 68 landmarks (NaN where missing);
        vertex_only: True for the mean-face baseline (no landmarks or pose).
    """

    name: str
    found: np.ndarray
    nme: np.ndarray
    euler_err: np.ndarray
    geodesic: np.ndarray
    vert_rigid: np.ndarray
    vert_direct: np.ndarray
    vert_similarity: np.ndarray
    landmarks: np.ndarray
    vertex_only: bool = False


def score_fits(name: str, model: MorphableModel, faces: Sequence[SyntheticFace],
               fits: Sequence[FitResult | None]) -> MethodScores:
    """Score one method's fits (None = no face found) against the faces' ground truth."""
    n = len(faces)
    found = np.array([f is not None for f in fits], bool)
    lms = np.full((n, 68, 2), np.nan)
    eul = np.full((n, 3), np.nan)
    geo, vr, vd, vs = (np.full(n, np.nan) for _ in range(4))
    for i, (face, fit) in enumerate(zip(faces, fits, strict=True)):
        if fit is None:
            continue
        lms[i] = np.asarray(fit.landmarks_68_2d, np.float64)
        eul[i] = euler_errors_deg(fit.rotation, face.rotation)
        geo[i] = geodesic_deg(fit.rotation, face.rotation)
        pred = model.vertices(fit.shape_coeffs, fit.expression_coeffs)
        vr[i] = vertex_error(pred, face.verts_model, "rigid")
        vd[i] = vertex_error(pred, face.verts_model, "none")
        vs[i] = vertex_error(pred, face.verts_model, "similarity")
    gt = np.stack([f.landmarks_68 for f in faces]) if n else np.zeros((0, 68, 2))
    nme = nme_bbox(lms, gt) if n else np.zeros(0)
    return MethodScores(name, found, nme, eul, geo, vr, vd, vs, lms)


def mean_face_scores(model: MorphableModel, faces: Sequence[SyntheticFace]) -> MethodScores:
    """The no-fit baseline: the model's mean face, vertex errors only."""
    n = len(faces)
    mean = model.vertices()
    nan = np.full(n, np.nan)
    return MethodScores(
        "mean face (no fit)", np.ones(n, bool), nan.copy(), np.full((n, 3), np.nan), nan.copy(),
        np.array([vertex_error(mean, f.verts_model, "rigid") for f in faces]),
        np.array([vertex_error(mean, f.verts_model, "none") for f in faces]),
        np.array([vertex_error(mean, f.verts_model, "similarity") for f in faces]),
        np.full((n, 68, 2), np.nan), vertex_only=True)


def fit_exact_landmarks(model: MorphableModel, face: SyntheticFace,
                        landmark_sigma: float = 0.02, iterations: int = 5) -> FitResult:
    """The upper bound of the landmark fit: `fit_points` on the exact projected 68 landmark
    vertices (no detector). The 51 inner points use `ibug68_correspondence`; the 17 jaw
    points are the jaw vertices' exact projections, so they are fitted as fixed vertices (not
    silhouette-matched). The prior weight is the pipeline's (``landmark_sigma`` × box side)."""
    from facefit.fit.camera import Camera
    from facefit.fit.correspondence import ibug68_correspondence
    from facefit.fit.landmark_fit import fit_points, make_result

    corr = ibug68_correspondence(model)
    ids68 = np.asarray(model.landmark_ids["ibug68"], np.int64)
    index = np.concatenate([corr.landmark_index, corr.contour_index])
    vids = np.concatenate([corr.vertex_ids, ids68[corr.contour_index]])
    pts = face.landmarks_68[index]
    box = np.ptp(pts, axis=0)
    shape, expr, pose, rms, k = fit_points(
        model, pts, vids, landmark_sigma_px=landmark_sigma * float(np.sqrt(box[0] * box[1])),
        iterations=iterations)
    return make_result(model, shape, expr, pose, Camera(), rms, k, iterations)


def pick_fit(recs: Sequence[Any], gt_landmarks: np.ndarray) -> FitResult | None:
    """The fit of the reconstruction that belongs to the rendered face (`select_face`)."""
    from facefit.eval.predictions import select_face

    if not recs:
        return None
    return recs[select_face([np.asarray(r.face.box) for r in recs], gt_landmarks)].fit


def _refine_all(refine: Callable[..., Any], model: MorphableModel,
                faces: Sequence[SyntheticFace], fits: Sequence[FitResult | None]
                ) -> tuple[list[FitResult | None], str | None]:
    """Photometric refinement of each landmark fit (None stays None); stops at the first
    error and returns its one-line message instead."""
    out: list[FitResult | None] = []
    for face, fit in zip(faces, fits, strict=True):
        if fit is None:
            out.append(None)
            continue
        try:
            res = refine(model, fit, face.image)
        except Exception as exc:  # noqa: BLE001 - reported as a note, never silently
            return out, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        out.append(getattr(res, "fit", res))
    return out, None


def _photometric() -> Callable[..., Any] | None:
    try:
        from facefit.fit.photometric import refine_photometric  # type: ignore[import-not-found]
    except ImportError:
        return None
    return refine_photometric


# ---------------------------------------------------------------------------------------
# Report


@dataclass
class SyntheticReport:
    """Scores of every method on one synthetic set (see the module docstring)."""

    model_name: str
    seed: int
    size: int
    yaw_deg: np.ndarray
    methods: list[MethodScores]
    mm_per_unit: float = 1.0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def _row(self, m: MethodScores) -> dict[str, Any]:
        b = yaw_bucket(self.yaw_deg[:len(m.found)])  # subset rows score the first faces
        buckets = [_mean(m.nme[b == k]) for k in range(3)]
        mm = self.mm_per_unit
        return {
            "found": int(m.found.sum()), "num_faces": len(m.found),
            "detection_rate": _f(m.found.mean()) if len(m.found) else None,
            "bucket_nme": [_f(v) for v in buckets], "balanced_nme": _f(np.mean(buckets)),
            "mean_nme": _f(_mean(m.nme)),
            "yaw_err_deg": _f(_mean(m.euler_err[:, 0])),
            "pitch_err_deg": _f(_mean(m.euler_err[:, 1])),
            "roll_err_deg": _f(_mean(m.euler_err[:, 2])),
            "geodesic_err_deg": _f(_mean(m.geodesic)),
            "geodesic_err_deg_median": _f(_median(m.geodesic)),
            "vertex_err_units_rigid": _f(_mean(m.vert_rigid)),
            "vertex_err_mm_rigid": _f(mm * _mean(m.vert_rigid)),
            "vertex_err_mm_direct": _f(mm * _mean(m.vert_direct)),
            "vertex_err_mm_similarity": _f(mm * _mean(m.vert_similarity)),
        }

    def table(self) -> str:
        """Plain-text table: NME in %, pose errors in degrees, vertex errors in mm."""
        n = len(self.yaw_deg)
        b = yaw_bucket(self.yaw_deg)
        lines = [f"synthetic faces ({self.model_name} priors, n={n}, seed={self.seed}, "
                 f"{self.size}x{self.size} px): NME % of GT 68-landmark box, "
                 "mean |pose error| deg, mean vertex error mm",
                 f"{'method':<30}{'found':>8}{'0-30':>6}{'30-60':>6}{'60-90':>6}{'bal.':>6}"
                 f"{'mean':>6}{'yaw':>6}{'pitch':>6}{'roll':>6}{'geod.':>6}{'mm rigid':>9}"
                 f"{'mm direct':>10}"]

        def p(v: float | None, k: float = 100.0, w: int = 6) -> str:
            return f"{'-':>{w}}" if v is None else f"{k * v:{w}.2f}"

        for m in self.methods:
            r = self._row(m)
            found = "-" if m.vertex_only else f"{r['found']}/{r['num_faces']}"
            lines.append(
                f"{m.name:<30}{found:>8}" + "".join(p(v) for v in r["bucket_nme"])
                + p(r["balanced_nme"]) + p(r["mean_nme"]) + p(r["yaw_err_deg"], 1)
                + p(r["pitch_err_deg"], 1) + p(r["roll_err_deg"], 1)
                + p(r["geodesic_err_deg"], 1) + p(r["vertex_err_mm_rigid"], 1, 9)
                + p(r["vertex_err_mm_direct"], 1, 10))
        lines.extend(self.notes)
        lines.append("legend: found = faces with a detection / faces; 0-30, 30-60, 60-90 = "
                     "mean NME (%) per |yaw| bucket over found faces; bal. = mean of the "
                     "bucket NMEs; mean = over found faces; yaw/pitch/roll/geod. = mean "
                     "absolute pose error (deg); mm rigid = mean vertex error after rigid "
                     "alignment; mm direct = without alignment; '-' = not applicable")
        pipe = self.methods[0]
        lines.append(f"faces per yaw bucket: {[int((b == k).sum()) for k in range(3)]}, "
                     f"no face found per bucket: "
                     f"{[int((~pipe.found & (b == k)).sum()) for k in range(3)]}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary and per-face values (NaN as None)."""
        return {
            "protocol": "synthetic faces from the model priors; NME / sqrt(w*h) of the GT "
                        "68-landmark box (AFLW2000-3D), pose errors in degrees, mean "
                        "per-vertex error after rigid alignment",
            "model": self.model_name, "seed": self.seed, "size": self.size,
            "num_faces": len(self.yaw_deg), "buckets": list(BUCKET_NAMES),
            "bucket_counts": [int((yaw_bucket(self.yaw_deg) == k).sum()) for k in range(3)],
            "mm_per_unit": self.mm_per_unit, "notes": self.notes, "seconds": self.seconds,
            "methods": {m.name: self._row(m) for m in self.methods},
            "per_face": {m.name: {
                "found": m.found.tolist(), "nme": [_f(v) for v in m.nme],
                "geodesic_deg": [_f(v) for v in m.geodesic],
                "vertex_err_rigid": [_f(v) for v in m.vert_rigid]} for m in self.methods},
            "yaw_deg": self.yaw_deg.tolist(),
        }


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _median(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def _f(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def evaluate_synthetic(
    n: int,
    seed: int = 0,
    model: MorphableModel | None = None,
    reconstructor: Any = None,
    size: int = 320,
    faces: Sequence[SyntheticFace] | None = None,
    progress: bool = False,
    photometric: bool = True,
    photometric_n: int | None = None,
) -> tuple[SyntheticReport, list[SyntheticFace]]:
    """Render ``n`` faces (or score the given ``faces``) and score every method.

    Args:
        n: number of faces (ignored when ``faces`` is given).
        seed: random seed of the set.
        model: the morphable model (default `facefit.model.load_default_model`).
        reconstructor: runs the pipeline (default ``facefit.Reconstructor(model,
            texture_size=0)``); anything with ``reconstruct(image)`` works.
        size: image side in pixels.
        faces: pre-rendered faces (e.g. in tests).
        progress: one line per face on stderr.
        photometric: also score `facefit.fit.photometric.refine_photometric` (started from
            the pipeline's landmark fit) when that module exists.
        photometric_n: refine only the first this many faces (it is slow on a CPU); they
            are then shown beside the landmark fit on the same faces.
    """
    if model is None:
        from facefit.model import load_default_model

        model = load_default_model()
    if reconstructor is None:
        from facefit.reconstruct import Reconstructor

        reconstructor = Reconstructor(model=model, texture_size=0)
    t0 = time.perf_counter()
    faces = list(faces) if faces is not None else sample_faces(model, n, seed, size)
    pipeline: list[FitResult | None] = []
    exact: list[FitResult | None] = []
    for i, face in enumerate(faces):
        fit = pick_fit(reconstructor.reconstruct(face.image), face.landmarks_68)
        pipeline.append(fit)
        exact.append(fit_exact_landmarks(model, face))
        if progress:
            status = ("no face" if fit is None else
                      f"geodesic error {geodesic_deg(fit.rotation, face.rotation):.1f} deg")
            print(f"[{i + 1}/{len(faces)}] yaw {face.yaw_deg:+6.1f}: {status}", file=sys.stderr)
    methods = [score_fits("facefit pipeline (landmarks)", model, faces, pipeline)]
    notes: list[str] = []
    refine = _photometric() if photometric else None
    if refine is None:
        notes.append("photometric: not available" + (
            "" if photometric else " (disabled)"))
    else:
        k = len(faces) if photometric_n is None else min(photometric_n, len(faces))
        refined, error = _refine_all(refine, model, faces[:k], pipeline[:k])
        if error is None:
            if k < len(faces):  # the landmark fit on the same faces, for a fair comparison
                methods.append(score_fits(f"landmark fit (same {k})", model, faces[:k],
                                          pipeline[:k]))
                methods.append(score_fits(f"photometric (first {k})", model, faces[:k],
                                          refined))
            else:
                methods.append(score_fits("photometric refinement", model, faces, refined))
        else:
            notes.append(f"photometric: not available (refine_photometric failed: {error})")
    methods.append(score_fits("landmark fit on exact 68 pts", model, faces, exact))
    methods.append(mean_face_scores(model, faces))
    yaw = np.array([f.yaw_deg for f in faces], np.float64)
    rep = SyntheticReport(model.name, seed, faces[0].image.shape[0] if faces else size, yaw,
                          methods, notes=notes, seconds=time.perf_counter() - t0)
    return rep, faces


def contact_sheet(faces: Sequence[SyntheticFace], cols: int = 8, side: int = 128,
                  labels: Sequence[str] | None = None) -> np.ndarray:
    """(rows·side, cols·side, 3) uint8 grid of the first renders, each labelled with its
    index and true yaw (and ``labels[k]`` below, e.g. the fit's error), for a quick look."""
    import cv2

    faces = list(faces)[: cols * 4]
    rows = max(1, -(-len(faces) // cols))
    sheet = np.zeros((rows * side, cols * side, 3), np.uint8)
    for k, f in enumerate(faces):
        r, c = divmod(k, cols)
        tile = np.ascontiguousarray(cv2.resize(f.image, (side, side),
                                               interpolation=cv2.INTER_AREA))
        texts = [(f"#{k} yaw {f.yaw_deg:+.0f}", 12)]
        if labels is not None and k < len(labels) and labels[k]:
            texts.append((labels[k], side - 5))
        for text, y in texts:
            cv2.putText(tile, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 2,
                        cv2.LINE_AA)
            cv2.putText(tile, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1,
                        cv2.LINE_AA)
        sheet[r * side:(r + 1) * side, c * side:(c + 1) * side] = tile
    return sheet


def example_labels(report: SyntheticReport) -> list[str]:
    """Per face: the pipeline's NME (%) and rigid vertex error (mm), or "no face"."""
    pipe = report.methods[0]
    return [("no face" if not found else f"NME {100 * e:.1f}% {report.mm_per_unit * v:.1f}mm")
            for found, e, v in zip(pipe.found, pipe.nme, pipe.vert_rigid, strict=False)]
