"""Synthetic scenes with ground truth: faces sampled from the model's priors and rendered.

Each face draws identity and expression coefficients from their N(0, 1) priors (truncated
at ±3σ), a head pose (yaw uniform in ±90°, pitch ±30°, roll ±20°, the pose ranges of
AFLW2000-3D; Zhu et al., CVPR 2016), Lambertian + ambient lighting from a random frontal
direction with a tinted light colour, a random background (smooth colour noise, a linear
gradient or a crop of another photo) and Gaussian pixel noise, and is rendered with
facefit's numpy z-buffer rasteriser (`facefit.render.raster`) under the scaled orthographic
camera of `facefit.fit.camera`, 2× supersampled. The default model has no albedo, so the
skin is by default (``albedo="painted"``) a skin tone with brows, lips and eyes painted where
the mesh has them (`facefit.synthetic.photos.paint_features`, as in the shape benchmark), with
a random tone and smooth random variation per face. ``albedo="photo"`` uses instead the
per-vertex colours of facefit's own reconstruction of ``examples/astronaut.png`` (computed at
run time; the benchmark's texture before 2026-12-03): that photo's open smile, teeth,
creases, hair line and shading are then painted on every face whatever its expression, a
pattern no real face's skin has, which a photometric refinement explains by bending the
shape (benchmarks/README.md, Synthetic).
Synthesising training/evaluation faces from a morphable model's priors follows
Richardson et al., "3D Face Reconstruction by Learning from Synthetic Data", 3DV 2016.
`facefit.eval.synthetic` re-fits them and scores the fits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.fit.camera import rotation_from_euler
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.model.morphable_model import MorphableModel

YAW_RANGE_DEG = 90.0
PITCH_RANGE_DEG = 30.0
ROLL_RANGE_DEG = 20.0
COEFF_CLIP = 3.0
SKIN_TONE = (0.78, 0.58, 0.46)
"""Mean skin albedo (linear RGB in [0, 1]) of the painted faces (`base_albedo`)."""
EXAMPLE_PHOTO = Path(__file__).resolve().parents[3] / "examples" / "astronaut.png"


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


ALBEDOS = ("painted", "photo")
"""Choices of the synthetic faces' base albedo (see the module docstring)."""


def base_albedo(model: MorphableModel, kind: str = "painted") -> np.ndarray:
    """(V, 3) float32 per-vertex albedo in [0, 1]: the model's own mean albedo if it has one,
    else ``kind``: ``"painted"`` (`SKIN_TONE` with brows, lips and eyes painted on) or
    ``"photo"`` (the example photo's colours, a uniform skin tone without that photo)."""
    if kind not in ALBEDOS:
        raise ValueError(f"albedo {kind!r}: not one of {', '.join(ALBEDOS)}")
    if model.albedo_mean is not None:
        return np.clip(np.asarray(model.albedo_mean, np.float32), 0.0, 1.0)
    skin = np.tile(np.asarray(SKIN_TONE, np.float32), (model.num_vertices, 1))
    if kind == "painted":
        from facefit.synthetic.photos import paint_features

        return paint_features(model, skin)
    got = _example_photo_colours(model)
    return got[0] if got is not None else skin


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


def sample_faces(model: MorphableModel, n: int, seed: int = 0, size: int = 320,
                 albedo: str = "painted") -> list[SyntheticFace]:
    """``n`` faces with the base albedo ``albedo`` (`ALBEDOS`); face i depends only on
    (seed, i), so a larger n extends a smaller set."""
    base = base_albedo(model, albedo)
    return [sample_face(model, np.random.default_rng([seed, i]), size, albedo=base)
            for i in range(n)]
