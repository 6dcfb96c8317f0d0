"""Synthetic ground truth: faces sampled from the model's priors and rendered
(`facefit.synthetic.scenes`), re-fitted by each method and scored against their truth.

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

Methods: the whole pipeline (`facefit.Reconstructor`: its landmarks, ``auto`` by default, +
landmark fit), the photometric refinement when `facefit.fit.photometric.refine_photometric`
exists (started as ``facefit reconstruct --refine photometric`` starts it,
`refinement_start`), an upper
bound that fits the exact projected 68 landmarks (no detector) with
`facefit.fit.landmark_fit.fit_points`, and the mean face as a no-fit baseline (vertex error
only).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facefit.eval.landmarks import BUCKET_NAMES, yaw_bucket
from facefit.fit.result import FitResult
from facefit.metrics.geometry import euler_errors_deg, geodesic_deg, vertex_error
from facefit.metrics.landmarks import nme_bbox
from facefit.model.morphable_model import MorphableModel
from facefit.synthetic.scenes import SyntheticFace, sample_faces


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


def pick_reconstruction(recs: Sequence[Any], gt_landmarks: np.ndarray) -> Any | None:
    """The reconstruction that belongs to the rendered face (`select_face`), or None."""
    from facefit.eval.predictions import select_face

    if not recs:
        return None
    return recs[select_face([np.asarray(r.face.box) for r in recs], gt_landmarks)]


def refinement_start(model: MorphableModel, reconstructor: Any, image: np.ndarray,
                     rec: Any | None) -> FitResult | None:
    """The fit a photometric refinement of ``rec`` starts from, as `facefit.Reconstructor`
    starts it (`facefit.detect.network.refinement_starts`; ``rec.fit`` for a reconstructor
    without a ``detector``), or None without a face."""
    if rec is None:
        return None
    from facefit.detect.network import refinement_starts

    detector = getattr(reconstructor, "detector", None)
    if detector is None:
        return rec.fit
    return refinement_starts(model, detector, image, rec.face, [rec.fit])[0]


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
    albedo: str = "painted"

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
                 f"{self.size}x{self.size} px, {self.albedo} albedo): NME % of GT 68-landmark box, "
                 "mean |pose error| deg, mean vertex error mm",
                 f"{'method':<30}{'found':>8}{'0-30':>6}{'30-60':>6}{'60-90':>6}{'bal.':>6}"
                 f"{'mean':>6}{'yaw':>6}{'pitch':>6}{'roll':>6}{'geod.':>6}{'mm rigid':>9}"
                 f"{'mm sim.':>8}{'mm direct':>10}"]

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
                + p(r["vertex_err_mm_similarity"], 1, 8) + p(r["vertex_err_mm_direct"], 1, 10))
        lines.extend(self.notes)
        lines.append("legend: found = faces with a detection / faces; 0-30, 30-60, 60-90 = "
                     "mean NME (%) per |yaw| bucket over found faces; bal. = mean of the "
                     "bucket NMEs; mean = over found faces; yaw/pitch/roll/geod. = mean "
                     "absolute pose error (deg); mm rigid = mean vertex error after rigid "
                     "alignment; mm sim. = after a similarity alignment (also the size, which "
                     "a scaled orthographic photo does not show); mm direct = without "
                     "alignment; '-' = not applicable")
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
            "model": self.model_name, "seed": self.seed, "size": self.size, "albedo": self.albedo,
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
    albedo: str = "painted",
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
        albedo: the faces' base albedo, ``"painted"`` or ``"photo"``
            (`facefit.synthetic.scenes.base_albedo`; ignored when ``faces`` is given).
    """
    if model is None:
        from facefit.model import load_default_model

        model = load_default_model()
    if reconstructor is None:
        from facefit.reconstruct import Reconstructor

        reconstructor = Reconstructor(model=model, texture_size=0)
    t0 = time.perf_counter()
    faces = list(faces) if faces is not None else sample_faces(model, n, seed, size, albedo)
    pipeline: list[FitResult | None] = []
    exact: list[FitResult | None] = []
    recs: list[Any | None] = []
    for i, face in enumerate(faces):
        rec = pick_reconstruction(reconstructor.reconstruct(face.image), face.landmarks_68)
        fit = None if rec is None else rec.fit
        recs.append(rec)
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
        starts = [refinement_start(model, reconstructor, f.image, r)
                  for f, r in zip(faces[:k], recs[:k], strict=True)]
        refined, error = _refine_all(refine, model, faces[:k], starts)
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
                          methods, notes=notes, seconds=time.perf_counter() - t0, albedo=albedo)
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
