"""Metric shape accuracy, NoW-style, on scans facefit did not make (``facefit eval shape``).

Every subject is a neutral 3D "scan" with photos of it. Each method fits the photos and
gives a neutral identity mesh (expression 0); `facefit.metrics.scan.scan_error` scores it
NoW-style (Sanyal et al., CVPR 2019: 7-landmark similarity alignment, then ICP; distance of
every scan point within 95 mm of the nose tip to the fitted surface; median, mean, std).

Data:

* ``in-model``: faces of the fitting model itself (shape N(0, 1), mild expression
  N(0, 0.5²), smooth random albedo with brows, lips and eyes painted on (`paint_features`),
  SH light, yaw within ±``max_yaw``; rendered by
  `facefit.synthetic.photos.make_synthetic_face`); the scan is the true neutral mesh's
  vertices. The mean vertex error after a rigid (Kabsch) and a similarity alignment is
  reported too (`facefit.metrics.geometry.vertex_error`), the part of the rigid one
  that the fit's size alone explains (`size_error`), and each method's head-pose error
  against the render's true pose (`pose_error_deg`; a landmark fit that starts pitched
  leaves the refinement in that basin).
* ``ict``: cross-model scans: random identities of the ICT Face Model (Li et al., CVPR 2020;
  built from light-stage scans, a different model and topology from BFM) with identity
  N(0, 1) on all its modes; photos render the ICT head (skin, eyes, mouth; its own
  triangles) with a neutral-to-mild expression (0-2 ARKit blendshapes at weights up to
  0.4), varied smooth albedo with darker brows and lips, second-order SH light and pose,
  with facefit's differentiable renderer; the scan is the vertices of the ICT face region.

Methods (one row each): ``mean face`` (no fit: the model's mean), ``landmarks`` (the landmark
fit of the detector's faces, as ``facefit reconstruct --landmarks``; several photos:
`facefit.fit.multi_image.fit_same_person`), ``photometric`` (one photo: the refinement by
`facefit.fit.photometric.refine_photometric`, started as `facefit.Reconstructor` starts it,
from the network's fit when ``auto`` kept MediaPipe's points; several photos: the joint fit of
those starts refined by `facefit.fit.photometric.refine_photometric_multi`).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.solver import solve_linear_map
from facefit.metrics.geometry import vertex_error
from facefit.metrics.scan import NOSE_TIP_INDEX, NOW_IBUG68_IDS, crop_scan, scan_error
from facefit.model.morphable_model import MorphableModel
from facefit.model.topology import plane_barycentric
from facefit.synthetic.photos import near_polyline, paint_features

METHODS = ("mean face", "landmarks", "photometric")
ICT_EXPRESSIONS = ("jawOpen", "mouthSmile_L", "mouthSmile_R", "browInnerUp_L",
                   "browInnerUp_R", "mouthFunnel", "eyeSquint_L", "eyeSquint_R",
                   "mouthFrown_L", "mouthFrown_R", "cheekPuff_L", "mouthPucker")
"""Blendshapes drawn for the mild expressions of ICT photos."""
FIT_POINTS = 2000
"""Scan points the NoW alignment is refined on (a fixed random subset; all are scored)."""


@dataclass(frozen=True, eq=False)
class ShapeSubject:
    """One scanned subject and its photos.

    Attributes:
        scan: (S, 3) float64 neutral scan points, mm.
        scan_landmarks: (7, 3) NoW landmarks of the scan (`NOW_IBUG68_IDS` order), mm.
        images: (H, W, 3) uint8 photos.
        true_vertices: (V, 3) the true neutral mesh in the fitting model's topology (in-model
            data only; for the mean vertex error), else None.
        yaw_deg: the yaw of each photo.
        true_rotations: (3, 3) model-to-view rotation of each photo (in-model data only, for
            `pose_error_deg`), else empty.
    """

    scan: np.ndarray
    scan_landmarks: np.ndarray
    images: list[np.ndarray]
    true_vertices: np.ndarray | None = None
    yaw_deg: tuple[float, ...] = ()
    true_rotations: tuple[np.ndarray, ...] = ()


@dataclass
class ShapeRow:
    """Per-subject errors of one method."""

    method: str
    median_mm: list[float] = field(default_factory=list)
    mean_mm: list[float] = field(default_factory=list)
    vertex_mm: list[float] = field(default_factory=list)
    vertex_similarity_mm: list[float] = field(default_factory=list)
    vertex_size_mm: list[float] = field(default_factory=list)
    pose_error_deg: list[list[float]] = field(default_factory=list)
    shape_coeffs: list[list[float] | None] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)  # the camera kind each fit kept
    failures: int = 0
    seconds: float = 0.0

    def record(self, model: MorphableModel, shape: np.ndarray | None,
               subject: ShapeSubject) -> np.ndarray:
        """Score ``shape`` (None: the mean face) on ``subject`` (`score`), append the errors
        and the coefficients; returns the per-scan-point distances."""
        med, mean, vtx, dist = score(model, shape, subject)
        self.median_mm.append(med)
        self.mean_mm.append(mean)
        if vtx is not None:
            self.vertex_mm.append(vtx[0])
            self.vertex_similarity_mm.append(vtx[1])
            self.vertex_size_mm.append(vtx[2])
        self.shape_coeffs.append(None if shape is None else np.asarray(shape).tolist())
        return dist


@dataclass
class ShapeReport:
    """A benchmark table: data, photos per subject, subjects, rows."""

    data: str
    photos: int
    n: int
    rows: dict[str, ShapeRow]
    seed: int = 0
    max_yaw: float = 0.0
    clip_frames: int = 0  # > 0: each subject is a clip of that many frames, not photos
    camera: str = "scaled_orthographic"  # the fits' camera
    renders: str = ""  # how the photos were taken, when not the default ("focal 256 px")

    def table(self) -> str:
        """Text table; medians and means are over subjects of the per-subject NoW median /
        mean scan-to-mesh distances (mm)."""
        has_v = any(r.vertex_mm for r in self.rows.values())
        seen = (f"a {self.clip_frames}-frame clip" if self.clip_frames else
                f"{self.photos} photo{'s' if self.photos > 1 else ''}")
        fits = "" if self.camera == "scaled_orthographic" else f"{self.camera} fits"
        how = "".join(f", {x}" for x in (self.renders, fits) if x)
        head = (f"shape ({self.data}, {seen}, "
                f"n={self.n}, yaw ±{self.max_yaw:.0f}°, seed {self.seed}{how}): NoW-style "
                f"scan-to-mesh, mm")
        lines = [head, f"{'method':<17}{'median':>8}{'mean':>8}{'std':>8}"
                 + (f"{'vertex':>8}{'v.sim':>8}{'v.size':>8}" if has_v else "")
                 + f"{'vs mean':>9}{'failed':>8}{'s/subj':>8}"]
        base = self.rows.get("mean face")
        b = float(np.mean(base.median_mm)) if base and base.median_mm else float("nan")
        for name, r in self.rows.items():
            med = float(np.mean(r.median_mm)) if r.median_mm else float("nan")
            mean = float(np.mean(r.mean_mm)) if r.mean_mm else float("nan")
            std = float(np.std(r.median_mm)) if r.median_mm else float("nan")
            line = f"{name:<17}{med:>8.3f}{mean:>8.3f}{std:>8.3f}"
            if has_v:
                v = float(np.mean(r.vertex_mm)) if r.vertex_mm else float("nan")
                vs = (float(np.mean(r.vertex_similarity_mm)) if r.vertex_similarity_mm
                      else float("nan"))
                vz = float(np.mean(r.vertex_size_mm)) if r.vertex_size_mm else float("nan")
                line += f"{v:>8.3f}{vs:>8.3f}{vz:>8.3f}"
            rel = 100 * (med / b - 1) if np.isfinite(b) and b > 0 else float("nan")
            line += f"{rel:>8.1f}%{r.failures:>8d}{r.seconds / max(self.n, 1):>8.2f}"
            lines.append(line)
        for name, r in self.rows.items():
            if self.camera == "auto" and r.cameras:
                picked = sum(c == "perspective" for c in r.cameras)
                lines.append(f"cameras of {name} (auto, by the refinement's photometric error): "
                             f"perspective {picked}, scaled orthographic "
                             f"{len(r.cameras) - picked}")
            if r.pose_error_deg:
                e = np.asarray(r.pose_error_deg)
                cells = ", ".join(f"{k} {m:+.2f} ± {sd:.2f}" for k, m, sd in
                                  zip(("yaw", "pitch", "roll"), e.mean(0), e.std(0),
                                      strict=True))
                lines.append(f"pose error of {name} (fit - truth, degrees, mean ± sd over "
                             f"{len(e)} photos): {cells}")
        lines.append("median/mean/std: mean over subjects of each subject's median / mean "
                     "scan-to-mesh distance, std of the medians; vertex / v.sim: mean vertex "
                     "error after a rigid / similarity alignment (in-model only; an orthographic "
                     "camera cannot see the absolute size); v.size: the rigid vertex error of the "
                     "true mesh scaled to the fit's size (the part of vertex that size alone "
                     "explains); vs mean: median relative to the "
                     "mean face; failed: no face detected (scored as the mean face); s/subj: "
                     "seconds per subject of detection + landmark fit, or of the refinement")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"data": self.data, "photos": self.photos, "n": self.n, "seed": self.seed,
                "max_yaw_deg": self.max_yaw, "clip_frames": self.clip_frames,
                "camera": self.camera, "renders": self.renders,
                "protocol": "NoW-style scan-to-mesh (Sanyal et al. CVPR 2019), mm",
                "rows": {k: {"median_mm": r.median_mm, "mean_mm": r.mean_mm,
                             "vertex_mm": r.vertex_mm,
                             "vertex_similarity_mm": r.vertex_similarity_mm,
                             "vertex_size_mm": r.vertex_size_mm,
                             "pose_error_deg": r.pose_error_deg,
                             "failures": r.failures, "seconds": r.seconds,
                             "cameras": r.cameras,
                             "shape_coeffs": r.shape_coeffs} for k, r in self.rows.items()}}


# ---------------------------------------------------------------------------------------
# Subjects


def now_landmarks(vertices: np.ndarray, ibug68_ids: np.ndarray) -> np.ndarray:
    """(7, 3) NoW landmarks (`NOW_IBUG68_IDS`) of a mesh with 68 iBUG landmark vertex ids."""
    return np.asarray(vertices, np.float64)[np.asarray(ibug68_ids)[NOW_IBUG68_IDS]]


def in_model_subject(model: MorphableModel, rng: np.random.Generator, photos: int = 1,
                     max_yaw: float = 30.0, size: int = 256, features: bool = True,
                     focal_px: float | None = None) -> ShapeSubject:
    """A random face of ``model`` (shape N(0, 1)) and ``photos`` renders of it; with
    ``features`` its smooth albedo has brows, lips and eyes painted on (`paint_features`;
    the same random draws either way); ``focal_px``: close-ups by a pinhole camera of that
    focal length (`facefit.synthetic.photos.close_up`)."""
    from facefit.synthetic.photos import make_synthetic_face, smooth_albedo

    shape = rng.normal(0, 1, model.num_shape).clip(-3, 3).astype(np.float32)
    albedo = smooth_albedo(model, rng)
    if features:
        albedo = paint_features(model, albedo)
    faces = [make_synthetic_face(model, rng, size=size, max_yaw=max_yaw, shape=shape,
                                 albedo=albedo, focal_px=focal_px) for _ in range(photos)]
    truth = model.vertices(shape).astype(np.float64)
    lm = now_landmarks(truth, model.landmark_ids["ibug68"])
    from facefit.fit.camera import euler_from_rotation

    return ShapeSubject(truth, lm, [f.image for f in faces], truth,
                        tuple(float(euler_from_rotation(f.rotation)[0]) for f in faces),
                        tuple(np.asarray(f.rotation, np.float64) for f in faces))


@functools.lru_cache(maxsize=1)
def ict_render_setup(ict: object) -> dict:
    """Triangles to render, the face scan vertex ids and albedo masks of an `ICTModel`."""
    from facefit.model.io_ict import ICTModel

    assert isinstance(ict, ICTModel)
    neutral = ict.neutral.astype(np.float64)
    lm = ict.landmark_ids["ibug68"]
    # Soft masks for darker brows and lips (distance to their landmarks on the neutral head).
    def near(ids: np.ndarray, radius: float) -> np.ndarray:
        return near_polyline(neutral, neutral[lm[ids]], radius)

    face = ict.regions["face"]
    return {
        "triangles": np.concatenate([ict.region_triangles("head"),
                                     ict.region_triangles("eyes"),
                                     ict.region_triangles("teeth")]),
        "face_ids": face,
        "brows": np.maximum(near(np.arange(17, 22), 4.0), near(np.arange(22, 27), 4.0)),
        "lips": np.maximum(near(np.r_[48:60, 48], 3.0), near(np.r_[60:68, 60], 3.0)),
        "eyes": np.isin(np.arange(ict.num_vertices), ict.regions.get("eyes", [])),
        "mirror": ict.mirror_ids(),
    }


UNTEXTURED_GREY = 0.7
"""Albedo of an untextured ICT render (`ict_albedo` with ``textured`` False): the bare mesh
in one grey, as a renderer shows a mesh without a material."""


def ict_albedo(ict: object, rng: np.random.Generator, textured: bool = True) -> np.ndarray:
    """(V, 3) float32 random albedo of an ICT head: a smooth, nearly symmetric skin field
    (random tone), darker brows, reddish lips, white sclera with a dark iris; with
    ``textured`` False `UNTEXTURED_GREY` everywhere (the same random draws either way)."""
    setup = ict_render_setup(ict)
    x = ict.neutral.astype(np.float64)  # type: ignore[attr-defined]
    tone = np.array([0.72, 0.53, 0.44]) * rng.uniform(0.6, 1.15) + rng.normal(0, 0.03, 3)
    field = np.zeros((len(x), 3))
    for _ in range(10):  # smooth blobs, radius 15-40 mm (as synthetic.photos.smooth_albedo)
        c = x[rng.integers(len(x))]
        r = rng.uniform(15, 40)
        field += np.exp(-((x - c) ** 2).sum(1) / (2 * r * r))[:, None] * rng.normal(0, 1, 3)
    field = 0.8 * (field + field[setup["mirror"]]) / 2 + 0.2 * field
    field /= max(np.abs(field).max(), 1e-9)
    alb = tone * (1 + 0.12 * field)
    brow = setup["brows"][:, None] * rng.uniform(0.35, 0.7)
    alb = alb * (1 - brow)
    lip = setup["lips"][:, None] * rng.uniform(0.2, 0.45)
    alb = alb * (1 - lip) + lip * np.array([0.55, 0.25, 0.25]) * tone / tone.mean()
    eyes = setup["eyes"]
    # Sclera bright; the iris: eyeball vertices in front (largest z per eye) darker.
    alb[eyes] = 0.8
    ev = np.flatnonzero(eyes)
    for side in (x[ev, 0] < 0, x[ev, 0] >= 0):
        ids = ev[side]
        if len(ids):
            front = x[ids, 2] > x[ids, 2].max() - 4.0
            alb[ids[front]] = rng.uniform(0.1, 0.35) * np.array([0.9, 0.75, 0.6])
    if not textured:
        return np.full(alb.shape, UNTEXTURED_GREY, np.float32)
    return np.clip(alb, 0, 1).astype(np.float32)


def render_ict(ict: object, vertices: np.ndarray, albedo: np.ndarray,
               rng: np.random.Generator, size: int = 256, max_yaw: float = 30.0,
               noise: float = 0.01, face_fraction: float = 0.6, focal_px: float | None = None
               ) -> tuple[np.ndarray, float, np.ndarray]:
    """Render ICT head ``vertices`` (V, 3, mm) with its own triangles (head skin, eyes,
    mouth; not the transparent eye shells), random pose (yaw within ±``max_yaw``, pitch
    ±10°, roll ±5°), random SH light and a smooth background, scaled orthographic like
    `facefit.synthetic.photos.make_synthetic_face` (``focal_px``: a pinhole camera of that
    focal length, `facefit.synthetic.photos.close_up`). Returns the uint8 image, the yaw
    (degrees) and the (V, 3) image-space vertices."""
    import torch

    from facefit.fit.camera import rotation_from_euler
    from facefit.fit.result import image_vertices
    from facefit.synthetic.photos import close_up, frame_face, render_photo

    setup = ict_render_setup(ict)
    lm = ict.landmark_ids["ibug68"]  # type: ignore[attr-defined]
    yaw = float(rng.uniform(-max_yaw, max_yaw))
    rot = rotation_from_euler(yaw, rng.uniform(-10, 10), rng.uniform(-5, 5))
    x = np.asarray(vertices, np.float64)
    camera = frame_face(x, lm, rot, size, face_fraction, rng)
    verts, view = camera.image_points(x), None
    if focal_px is not None:
        verts = image_vertices(close_up(camera, focal_px, size), x).astype(np.float64)
        view = torch.as_tensor(x @ rot.T, dtype=torch.float32)
    image, _, _ = render_photo(verts, setup["triangles"], albedo, size, rng, noise, view)
    return image, yaw, verts


def ict_subject(ict: object, rng: np.random.Generator, photos: int = 1, max_yaw: float = 30.0,
                size: int = 256, expression: bool = True, focal_px: float | None = None,
                textured: bool = True) -> ShapeSubject:
    """A random ICT identity (N(0, 1) on every identity mode): its neutral face region as
    the scan and ``photos`` renders with mild random expressions (`render_ict`; ``focal_px``:
    close-ups by a pinhole camera; ``textured`` False: in one grey, `ict_albedo`)."""
    setup = ict_render_setup(ict)
    ident = rng.normal(0, 1, ict.num_identity).clip(-3, 3)  # type: ignore[attr-defined]
    neutral = ict.vertices(ident).astype(np.float64)  # type: ignore[attr-defined]
    albedo = ict_albedo(ict, rng, textured)
    names = list(ict.expression_names)  # type: ignore[attr-defined]
    pool = [names.index(n) for n in ICT_EXPRESSIONS if n in names]
    images, yaws = [], []
    for _ in range(photos):
        w = np.zeros(len(names))
        if expression and pool and rng.random() < 0.7:
            k = int(rng.integers(1, 3))
            w[rng.choice(pool, k, replace=False)] = rng.uniform(0.1, 0.4, k)
        verts = ict.vertices(ident, w)  # type: ignore[attr-defined]
        img, yaw, _ = render_ict(ict, verts, albedo, rng, size=size, max_yaw=max_yaw,
                                 focal_px=focal_px)
        images.append(img)
        yaws.append(yaw)
    lm7 = now_landmarks(neutral, ict.landmark_ids["ibug68"])  # type: ignore[attr-defined]
    return ShapeSubject(neutral[setup["face_ids"]], lm7, images, None, tuple(yaws))


# ---------------------------------------------------------------------------------------
# Fitting and scoring


def fit_neutral(model: MorphableModel, images: Sequence[np.ndarray], detector: object,
                photometric: bool, iterations: int | None = None,
                timings: dict | None = None, options: dict | None = None, poses: dict | None = None,
                camera: str = "scaled_orthographic", focal_px: float | None = None,
                cameras: dict | None = None
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(landmark-fit shape, photometric shape) coefficients of one subject's photos, or
    (None, None) when a photo has no detected face. One photo: `fit_landmarks` and
    `refine_photometric` (started, as `facefit.Reconstructor` starts it, from
    `facefit.detect.network.refinement_starts`); several: `fit_same_person` and
    `refine_photometric_multi` (started from the joint fit of those faces).
    ``timings``, if given, receives the seconds of ``"landmarks"`` (detection and landmark
    fit) and ``"photometric"`` (the refinement). ``options``: more keyword arguments of the
    refinement (e.g. ``landmark_weight``). ``poses``, if given, receives each photo's fitted
    (3, 3) rotation under ``"landmarks"`` and ``"photometric"``. ``camera``, ``focal_px``:
    the fits' camera, as ``facefit reconstruct --camera --focal-px`` (``"auto"`` with one
    photo and no focal length: both candidates refined, `facefit.fit.camera.camera_candidates`;
    several photos: every photo with one or the other, as ``--same-person``); ``cameras``, if
    given, receives the camera kind the refinement kept under ``"photometric"``."""
    options = dict(options or {})
    cameras = {} if cameras is None else cameras
    timings = {} if timings is None else timings
    poses = {} if poses is None else poses
    t0 = time.perf_counter()
    faces = []
    for img in images:
        found = detector.detect(img, max_faces=1)  # type: ignore[attr-defined]
        if not found:
            return None, None
        faces.append(found[0])
    if len(images) == 1:
        from facefit.fit.camera import camera_candidates
        from facefit.fit.landmark_fit import fit_landmarks

        cands = camera_candidates(camera, focal_px, photometric)
        fits = [fit_landmarks(model, faces[0], image_size=images[0].shape[1::-1], camera=c,
                              focal_px=f) for c, f in cands]
        fit = fits[0]
        timings["landmarks"] = time.perf_counter() - t0
        poses["landmarks"] = [fit.rotation]
        if not photometric:
            return fit.shape_coeffs, None
        from facefit.detect.network import refinement_starts
        from facefit.fit.photometric import PhotometricConfig, best_refinement

        t1 = time.perf_counter()
        starts = refinement_starts(model, detector, images[0], faces[0], fits)
        _, joint = best_refinement(model, [[s] for s in starts], images[:1],
                                   config=PhotometricConfig(iterations=iterations, **options))
        res = joint.results[0]
        timings["photometric"] = time.perf_counter() - t1
        poses["photometric"] = [res.fit.rotation]
        cameras["photometric"] = res.fit.camera.kind
        return fit.shape_coeffs, res.fit.shape_coeffs
    from facefit.fit.landmark_fit import camera_sets
    from facefit.fit.multi_image import fit_same_person, view_from_face

    # the photos' camera sets, as `facefit.same_person` makes them (auto: both when refining)
    sets = camera_sets(camera, [focal_px] * len(images), [img.shape[1::-1] for img in images],
                       photometric)
    views = [view_from_face(model, f) for f in faces]
    multi = fit_same_person(model, views, camera=sets[0])
    timings["landmarks"] = time.perf_counter() - t0
    poses["landmarks"] = [f.rotation for f in multi.fits]
    if not photometric:
        return multi.shape_coeffs, None
    from facefit.detect.network import refinement_faces
    from facefit.fit.photometric import PhotometricConfig, best_refinement

    t1 = time.perf_counter()
    starts = refinement_faces(detector, images, faces)  # type: ignore[arg-type]
    start_views = views if starts is None else [view_from_face(model, f) for f in starts]
    joint = [multi if starts is None and k == 0 else
             fit_same_person(model, start_views, camera=c) for k, c in enumerate(sets)]
    # targets: each fit's own projected landmarks (the default); the detected ones pull
    # the identity towards the detector's bias (see refine_photometric_multi)
    _, res = best_refinement(model, [m.fits for m in joint], list(images),
                             config=PhotometricConfig(iterations=iterations, **options))
    timings["photometric"] = time.perf_counter() - t1
    poses["photometric"] = [r.fit.rotation for r in res.results]
    cameras["photometric"] = res.results[0].fit.camera.kind
    return multi.shape_coeffs, res.shape_coeffs


def size_error(verts: np.ndarray, truth: np.ndarray) -> float:
    """Mean vertex error (mm) that the size of ``verts`` alone makes: the rigid
    `vertex_error` of the (V, 3) ``truth`` scaled by the similarity scale that maps it onto
    ``verts`` (Umeyama), i.e. |scale - 1| times the mean distance of ``truth`` from its
    centroid."""
    from facefit.fit.core.rotation import umeyama

    t = np.asarray(truth, np.float64)
    s = umeyama(t, np.asarray(verts, np.float64)).scale
    return vertex_error(t * s, t, "rigid")


def pose_error_deg(rotation: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(3,) Euler angles (yaw, pitch, roll; `facefit.fit.camera`) of a fitted (3, 3)
    ``rotation`` minus those of the ``truth``, degrees wrapped to [-180, 180)."""
    from facefit.fit.camera import euler_from_rotation

    d = np.subtract(euler_from_rotation(rotation), euler_from_rotation(truth))
    return (d + 180.0) % 360.0 - 180.0


def score(model: MorphableModel, shape: np.ndarray | None, subject: ShapeSubject
          ) -> tuple[float, float, tuple[float, float, float] | None, np.ndarray]:
    """NoW median and mean (mm), the rigid and similarity mean vertex errors and the size
    part of the rigid one (`size_error`; in-model) and the (S,) distance of every scan
    point (NaN outside the crop) of the model's neutral mesh for ``shape`` (None: the mean
    face)."""
    verts = (model.mean if shape is None else model.vertices(shape)).astype(np.float64)
    lm = now_landmarks(verts, model.landmark_ids["ibug68"])
    r = scan_error(verts, model.triangles, lm, subject.scan, subject.scan_landmarks,
                   fit_points=FIT_POINTS)
    full = np.full(len(subject.scan), np.nan)
    full[crop_scan(subject.scan, subject.scan_landmarks[NOSE_TIP_INDEX])] = r.distances
    vtx = None
    if subject.true_vertices is not None:
        vtx = (vertex_error(verts, subject.true_vertices, "rigid"),
               vertex_error(verts, subject.true_vertices, "similarity"),
               size_error(verts, subject.true_vertices))
    return r.median, r.mean, vtx, full


def fit_to_scan(model: MorphableModel, subject: ShapeSubject, rounds: int = 8,
                ridge: float = 1.0, points: int = 4000) -> np.ndarray:
    """(Ks,) float32 identity coefficients of ``model`` fitted to the scan itself in 3D: an
    estimate of the best any photo-based fit can reach under this metric (an upper bound
    of it: the optimiser is local). Each round aligns the current mesh NoW-style
    (`scan_error`), pairs (a fixed random subset of) the scan points with their closest
    points on the mesh (fixed triangle and barycentrics, so the mesh point is linear in
    the coefficients) and solves the ridge-regularised linear least squares
    (`facefit.fit.core.solve_linear_map`): it minimises the reported scan-to-mesh distance
    (non-rigid ICP with a linear model, cf. Amberg et al., CVPR 2007)."""
    from facefit.metrics.scan import SurfaceQuery

    basis = model.shape_basis.astype(np.float64)
    mean = model.mean.astype(np.float64)
    tris = np.asarray(model.triangles, np.int64)
    lm = model.landmark_ids["ibug68"]
    scan = subject.scan[crop_scan(subject.scan, subject.scan_landmarks[NOSE_TIP_INDEX])]
    if len(scan) > points:
        scan = scan[np.sort(np.random.default_rng(0).choice(len(scan), points, replace=False))]
    c = np.zeros(model.num_shape)
    prior = GaussianPrior.isotropic(c, 1.0 / np.sqrt(ridge))
    for _ in range(rounds):
        v = mean + basis @ c
        t = scan_error(v, tris, now_landmarks(v, lm), subject.scan, subject.scan_landmarks,
                       fit_points=FIT_POINTS).transform
        q = t.inverse_apply(scan)  # scan in the mesh frame
        closest, _, tri = SurfaceQuery(v, tris).closest(q)
        corner = v[tris[tri]]  # (M, 3, 3) barycentrics of the closest points
        w = plane_barycentric(closest, corner[:, 0], corner[:, 1], corner[:, 2])  # (M, 3)
        a = np.einsum("mk,mkdj->mdj", w, basis[tris[tri]]).reshape(-1, model.num_shape)
        y = q - np.einsum("mk,mkd->md", w, mean[tris[tri]])
        c = solve_linear_map(a, y, prior)
    return c.astype(np.float32)


def evaluate_shape(model: MorphableModel, subjects: Callable[[int], ShapeSubject], n: int,
                   data: str, photos: int, photometric: bool = True,
                   iterations: int | None = None, detector: object | None = None,
                   progress: bool = True, seed: int = 0,
                   max_yaw: float = 30.0, keep: dict | None = None,
                   photometric_options: dict | None = None,
                   ceiling: bool = False, camera: str = "scaled_orthographic",
                   focal_px: float | None = None, renders: str = "") -> ShapeReport:
    """Run the mean-face, landmark and (optionally) photometric rows on ``n`` subjects
    (``subjects(i)`` makes subject i). ``keep``, if given, receives per-method lists of the
    per-scan-point distances (for heat maps); ``photometric_options`` go to the refinement;
    ``ceiling`` adds the row ``3D fit to scan`` (`fit_to_scan`: no photos, the model's
    best); ``camera`` and ``focal_px``: the fits' camera (`fit_neutral`); ``renders``: how
    the photos were taken, for the table's head (e.g. ``"pinhole, focal 256 px"``)."""
    if detector is None:
        from facefit.detect.mediapipe import MediaPipeDetector

        detector = MediaPipeDetector()
    methods = (METHODS if photometric else METHODS[:2]) + (("3D fit to scan",) if ceiling
                                                           else ())
    rows = {m: ShapeRow(m) for m in methods}
    for i in range(n):
        subject = subjects(i)
        times: dict[str, float] = {}
        poses: dict[str, list[np.ndarray]] = {}
        kept: dict[str, str] = {}
        lm_shape, ph_shape = fit_neutral(model, subject.images, detector, photometric,
                                         iterations, times, photometric_options, poses,
                                         camera, focal_px, kept)
        for m, kind in kept.items():
            rows[m].cameras.append(kind)
        for m, rots in poses.items():
            if len(subject.true_rotations) == len(rots):
                rows[m].pose_error_deg += [pose_error_deg(r, t).tolist() for r, t in
                                           zip(rots, subject.true_rotations, strict=True)]
        dt = sum(times.values())
        shapes = {"mean face": None, "landmarks": lm_shape, "photometric": ph_shape}
        if ceiling:
            shapes["3D fit to scan"] = fit_to_scan(model, subject)
        for m in methods:
            if m in ("landmarks", "photometric") and lm_shape is None:
                rows[m].failures += 1
            dist = rows[m].record(model, shapes[m], subject)
            if keep is not None:
                keep.setdefault(m, []).append(dist)
            rows[m].seconds += times.get(m, 0.0)
        if progress:
            cells = " ".join(f"{m} {rows[m].median_mm[-1]:.3f}" for m in methods)
            print(f"[{i + 1}/{n}] {data} yaw {','.join(f'{y:.0f}' for y in subject.yaw_deg)}: "
                  f"{cells} ({dt:.1f} s)", file=sys.stderr, flush=True)
    return ShapeReport(data, photos, n, rows, seed, max_yaw, camera=camera, renders=renders)
