"""Landmarks from facefit's own network (`facefit.regress.predictor`) behind the detector
interface, per face or where MediaPipe's dense mesh is weak.

`NetworkLandmarkDetector` wraps a face detector (MediaPipe's, with its MTCNN profile
fallback, by default): each face it finds is cropped from its 68-point box (`box68`: the
detector's box mapped to the 68 landmarks' box, or MediaPipe's 468 points mapped to iBUG 68
for a face without one, e.g. a tracked face) and landmarked by the network (`PASSES` passes).
``source`` decides what each face keeps:

* ``"network"``: the network's 68 points (hidden ones included: the AFLW2000-3D convention)
  and their depth;
* ``"auto"``: per face, by the network's |yaw| when MediaPipe's mesh is confident (score at
  least ``min_score``; else the network's points): MediaPipe's dense points under
  ``yaw_threshold`` degrees, the network's from ``network_only`` (by default the same 30°: a
  switch), and in between, where ``network_only`` is set higher, the 68 points of both,
  blended with MediaPipe's weight falling linearly from 1 to 0 across the range
  (`mediapipe_weight`; MediaPipe's 68 are those of the default model fitted to its 468
  points). A network face keeps the confident MediaPipe face it replaces
  (`NetworkFace.mediapipe`): MediaPipe's mesh follows the silhouette that 300-W's jaw points
  mark, and the 300-W points are fused with it. A face that keeps MediaPipe's points is read
  by the network to the end too and carries that reading (`MediaPipeFace`): its fit stays
  MediaPipe's, its AFLW-convention 68 points average the two
  (`facefit.fit.points_aflw.NETWORK_SHARE`).

The network reads upright faces: each crop is turned in the image plane so that the head
stands upright in it, the first by the lean of MediaPipe's eye line (`first_lean_deg`), later
ones by the network's own (``inplane_deg`` of `facefit.regress.predictor.RegressionResult`). On
AFLW2000-3D dev this took the network's balanced NME from 4.96 to 4.55 %.

Network faces are `NetworkFace` objects of scheme ``"ibug68_fixed"``: the fitters put all 68
points on their fixed model vertices, the jaw included (the network's convention), instead of
matching the jaw to the silhouette as for 300-W style ``"ibug68"`` points (with ground-truth
AFLW2000-3D points plus 2 % noise, the silhouette matching costs 5.0 % balanced NME against
1.5 % on fixed vertices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from facefit.detect.base import FaceLandmarks, LandmarkDetector
from facefit.fit.correspondence import IBUG68_FIXED, mediapipe_to_ibug68
from facefit.fit.result import FitResult
from facefit.model.face_model import FaceModel
from facefit.model.morphable_model import MorphableModel
from facefit.regress.predictor import RegressionPredictor, RegressionResult, average_results

SOURCES = ("auto", "mediapipe", "network")
# |yaw| (degrees, the network's estimate) under which `auto` keeps MediaPipe's points alone
# (decided on the first pass: the other faces get PASSES - 1 more, the last one's yaw decides;
# SURE_FRONTAL before session 11; the sweep under NETWORK_ONLY found 10-35 within 0.03 points)
YAW_THRESHOLD = 30.0
# |yaw| from which `auto` keeps the network's points alone; in between it blends. Chosen on the
# even-numbered half of AFLW2000-3D dev (sorted images; model selection only, never training),
# the odd half held out (benchmarks/aflw2000.py, blends of the two fits' landmarks, second pass
# not zoomed): balanced NME (even / odd) 5.46 / 5.44 % for the hard switch at 55° it replaced;
# blending to 65°: 5.38 / 5.34, to 75: 5.36 / 5.30, to 80: 5.36 / 5.30, to 90: 5.37 / 5.31.
# With REFINE_ZOOM's second pass the even half read 5.29 at 75°, 5.28 at 80, 5.27 at 85, 5.28
# at 90: 80 until session 18. Since the network's crops are turned upright (LEAN_FROM_MESH) the
# blend helps less (even half, YAW_THRESHOLD / NETWORK_ONLY: 30 / 30 4.79 %, 30 / 40 4.81,
# 30 / 55 4.82, 30 / 80 4.87; 20 / 30 4.77, 10 / 40 4.76, 35 / 35 4.78; odd half 4.28-4.36 for
# all of them), but a switch at 30 costs HELEN's 300-W points (`landmarks_68_2d_contour`,
# inter-ocular NME 4.116 % and 3 failures with the blend to 55 or 80, 4.181 % and 8 failures
# with the switch): 55 until session 20. Since then a network face of `auto` keeps the
# confident MediaPipe face it replaces (`NetworkFace.mediapipe`), whose points the 300-W fusion
# uses as it does a blend's (`facefit.fit.points300w.with_detector_points`), so the switch no
# longer costs HELEN (4.119 % and 3 failures at 30, 4.116 and 3 at 55), and with the recheck
# and turned crops the switch at 30 reads (cached detections, `auto` + fit, all / even / odd)
# 4.415 / 4.627 / 4.206 % against 4.431 / 4.642 / 4.223 at 40, 4.442 / 4.655 / 4.233 at 45,
# 4.452 / 4.662 / 4.246 at 55: `auto` switches at YAW_THRESHOLD, the blend is an option.
NETWORK_ONLY = 30.0
PASSES = 2  # network passes for the faces `auto` does not leave to MediaPipe after the first
# Each later pass crops from the previous pass's 68-landmark box scaled by this about its
# centre (a crop 0.9 x 1.5 = 1.35 times the box side where training crops were 1.5 times it;
# train-aflw21's crops too, 1.47-1.50 by the network's own points: a closer look helps, for
# no reason the training framing gives). Chosen on the even half of AFLW2000-3D dev as
# NETWORK_ONLY, from the first pass's box (balanced NME even / odd of the network's points
# alone): 1.0 6.25 / 6.06 %, 0.95 6.17 / 5.92, 0.9 6.11 / 5.93, 0.85 6.22 / 6.01, 0.8 6.45 /
# 6.28. benchmarks/aflw2000.py at 0.9: network + fit 6.25 / 6.06 -> 6.11 / 5.93, `auto`
# 5.37 / 5.31 -> 5.30 / 5.30 (its 60-90 bucket 7.87 -> 7.72, the others within 0.01).
REFINE_ZOOM = 0.9
# The last pass of a face turned at least ZOOMS_FROM_YAW degrees (by the previous pass) crops it
# at each of REFINE_ZOOMS (REFINE_ZOOM first, whose pose is kept) and averages the landmarks.
# Chosen on the even half of AFLW2000-3D dev as NETWORK_ONLY (scratch script on the cached
# detections of benchmarks/aflw2000.py, balanced NME all / even / odd): `auto` with one zoom
# 4.57 / 4.82 / 4.32 %, three from 30 degrees 4.54 / 4.78 / 4.30, three on every face the same
# (its 0-30 faces keep MediaPipe's points); the network alone 4.55 / 4.77 / 4.33, 4.51 / 4.71 /
# 4.30 and 4.49 / 4.70 / 4.28. Landmark CPU time per AFLW2000-3D image (one thread): `auto`
# 2.98 -> 4.13 ms; from 30 degrees the frontal faces, most of a user's photos, pay nothing.
REFINE_ZOOMS = (0.9, 0.8, 1.0)
ZOOMS_FROM_YAW = 30.0
# ... and two more crops at the first zoom, turned by each of REFINE_TURNS degrees from the
# face's lean (in-plane rotation as test-time augmentation). Chosen on the even half as
# REFINE_ZOOMS, with the recheck below (the network's points alone, all / even / odd): without
# 4.438 / 4.611 / 4.269 %; +-4 degrees 4.436 / 4.611 / 4.265; +-6 4.419 / 4.607 / 4.235; +-10
# 4.420 / 4.608 / 4.235; +-15 4.430 / 4.617 / 4.246; +-4 and +-8 4.419 / 4.613 / 4.228; +-6
# instead of the zooms 4.442 / 4.633 / 4.255.
REFINE_TURNS = (-6.0, 6.0)
# The first crop of a MediaPipe face is turned upright by the lean of its mesh's eye line
# (`first_lean_deg`) when that lean is LEAN_FROM_MESH[0] to LEAN_FROM_MESH[1] degrees; later
# crops by the network's own lean (`RegressionResult.inplane_deg`). Chosen on the even half of
# AFLW2000-3D dev as NETWORK_ONLY (balanced NME even / odd of the network's points alone,
# scratch script, detections of benchmarks/aflw2000.py): upright crops 5.24 / 4.68 %; later
# crops turned by the network's lean 5.09 / 4.37; the first crop too by the mesh's lean from
# 10 degrees 4.79 / 4.38, from 20 4.78 / 4.36, from 30 4.77 / 4.33, from 30 without the upper
# bound 5.05 / 4.33 (one mesh upside down on a profile, image01839: 7 -> 71 %). The bound was
# 90 until session 22; 135 changes no dev face (none leans 90-135: image01839's mesh leans
# 178) and lets photos turned by 90 degrees keep their lean when it overshoots 90 (every 4th
# dev photo turned by 90, `auto` + fit per yaw bucket: 5.64 / 15.93 / 12.44 -> 4.87 / 7.31 /
# 7.25 %, a scratch script; `benchmarks/detection.py --turned 4 --turn-deg 90` now prints
# 5.17 / 7.31 / 7.23 before the detector read quarter-turned photos too). Faces the detector
# found in a turned photo (`FaceLandmarks.found_turned`) reach 180.
LEAN_FROM_MESH = (30.0, 135.0)
# A turned face's answer (last-pass |yaw| at least ZOOMS_FROM_YAW) is checked by one more pass
# (`fixed_point_residual`): where that pass moves the 68 points by more than RECHECK_RESIDUAL
# (their mean move over the answer's 68-point box side, the square root of its area) the
# first crop probably missed the face's extent, so the whole chain of passes is run again
# from the first crop zoomed by each of RECHECK_ZOOMS and the answer that one more pass moves
# least is kept (3DDFA's passes converge to a fixed point on a face they read well). The
# fixed-point residual follows the error (correlation 0.74 on the turned faces of AFLW2000-3D
# dev; the first crop's box is the detector's, so 1.3 and 0.8 bracket its usual scale error).
# Chosen on the even half of AFLW2000-3D dev as NETWORK_ONLY (scratch script on the cached
# detections of benchmarks/aflw2000.py; the network's points alone, balanced NME all / even /
# odd): 4.507 / 4.713 / 4.303 % without; the residual bar at 0.015 4.442 / 4.606 / 4.283, at
# 0.02 4.438 / 4.611 / 4.269 (22 of 362 turned faces re-run), at 0.03 4.442 / 4.614 / 4.274;
# selection by the spread of the last pass's zooms instead 4.49-4.52; the landmark-wise median
# of seven chains (zooms 0.8-1.6, shifts, the mesh's box) 4.50; the best of those seven by the
# error itself (an oracle) 4.10. Costs one more pass (two crops) a turned face.
RECHECK_RESIDUAL = 0.02
RECHECK_ZOOMS = (1.3, 0.8)
# MediaPipe mesh vertices at the outer eye corners (the subject's right, then left)
_MESH_EYE_CORNERS = (33, 263)


@dataclass(frozen=True, eq=False)
class NetworkFace(FaceLandmarks):
    """A face landmarked by the network: 68 iBUG points in the AFLW2000-3D convention.

    Attributes:
        regression: the network's full answer (parameters, pose).
        source: ``"network"``, or ``"blend"`` for `auto`'s blend of the network's and
            MediaPipe's 68 points (`blend_face`).
        mediapipe_weight: MediaPipe's weight in the blend (0 for the network's own points).
        mediapipe: the MediaPipe face of a blend (its 468 points), or the confident one a
            network face of `auto` replaces, else None.
    """

    regression: RegressionResult | None = None
    source: str = "network"
    mediapipe_weight: float = 0.0
    mediapipe: FaceLandmarks | None = None


@dataclass(frozen=True, eq=False)
class MediaPipeFace(FaceLandmarks):
    """A MediaPipe face (its 468 points, which the fit uses) that `auto` kept, with the
    network's reading of it: ``regression``, the network's final answer (every pass, in
    AFLW's convention, as a network face's). The fit's AFLW-convention 68 points average it in
    (`facefit.fit.points_aflw.with_aflw_convention`); a photometric refinement starts from it
    (`refinement_face`)."""

    regression: RegressionResult | None = None
    source: str = "mediapipe"


def with_reading(face: FaceLandmarks, result: RegressionResult) -> MediaPipeFace:
    """MediaPipe's ``face`` carrying the network's reading ``result`` (`MediaPipeFace`)."""
    base = {f.name: getattr(face, f.name) for f in fields(FaceLandmarks)}
    return MediaPipeFace(**base, regression=result)


def landmark_source(face: FaceLandmarks) -> str:
    """``"network"``, ``"mediapipe"``, ``"blend"`` (both, `blend_face`) or the scheme name of
    another detector's face."""
    source = getattr(face, "source", None)
    if source is not None:
        return str(source)
    return "mediapipe" if face.scheme == "mediapipe468" else face.scheme


def box68(face: FaceLandmarks) -> np.ndarray:
    """The 68-landmark box of a detection (the crop the network expects): the face
    detector's box mapped to the 68 landmarks' (``face.detector_box``) when the face has one,
    else the box of its landmarks (MediaPipe's 468 mapped to iBUG 68).

    The detector's box first: MediaPipe's mesh drifts off turned heads (towards the hair or
    the background) while the detector's box stays on the face. On 737 train-aflw21 faces
    in 450 px canvases (``python benchmarks/train_crops.py``: NME on the visible points after
    two network passes) the crop from the detector's box scores 6.55 / 7.75 / 9.63 %
    (|yaw| 0-30 / 30-60 / 60+) against 6.70 / 7.70 / 10.57 % from the mesh's box.
    """
    if face.detector_box is not None:
        return np.asarray(face.detector_box, np.float64)
    pts = np.asarray(face.points_px, np.float64)
    if face.scheme == "mediapipe468":
        pts = mediapipe_to_ibug68(pts)
    elif len(pts) < 5:  # no landmarks to speak of: the detector's box
        return np.asarray(face.box, np.float64)
    return np.r_[pts.min(0), pts.max(0)]


def refine_boxes(boxes: np.ndarray, zoom: float | np.ndarray = REFINE_ZOOM) -> np.ndarray:
    """(..., 4) boxes [x0, y0, x1, y1] scaled by ``zoom`` about their centres: the crop of a
    network pass after the first, from the previous pass's 68-landmark boxes."""
    b = np.asarray(boxes, np.float64)
    centre = (b[..., :2] + b[..., 2:]) / 2
    half = (b[..., 2:] - b[..., :2]) * (zoom / 2)
    return np.concatenate([centre - half, centre + half], axis=-1)


def first_lean_deg(face: FaceLandmarks, span: tuple[float, float] = LEAN_FROM_MESH) -> float:
    """The lean in the image plane (degrees, `facefit.regress.predictor.inplane_deg`'s
    convention) by which the network's first crop of ``face`` is turned: its MediaPipe
    mesh's eye line (outer corners) when that lean is within ``span`` in magnitude, else 0
    (small leans, faces without a mesh, and meshes upside down, which are wrong on profiles,
    unless the detector found the face in a turned photo: `FaceLandmarks.found_turned`, whose
    span reaches 180°)."""
    if face.scheme != "mediapipe468":
        return 0.0
    if face.found_turned:
        span = (span[0], 180.0)
    pts = np.asarray(face.points_px, np.float64)
    d = pts[_MESH_EYE_CORNERS[1]] - pts[_MESH_EYE_CORNERS[0]]
    lean = float(np.degrees(np.arctan2(d[1], d[0])))
    return lean if span[0] <= abs(lean) <= span[1] else 0.0


def network_face(result: RegressionResult, score: float,
                 mediapipe: FaceLandmarks | None = None) -> NetworkFace:
    """A `NetworkFace` of one network answer; ``mediapipe``: the MediaPipe face it replaces,
    kept for the 300-W points (`facefit.fit.points300w.with_detector_points`)."""
    lm = result.landmarks_68_3d
    depth = lm[:, 2] - lm[:, 2].mean()
    return NetworkFace(result.box.astype(np.float32), float(score),
                       np.ascontiguousarray(lm[:, :2], np.float32), depth.astype(np.float32),
                       IBUG68_FIXED, regression=result, mediapipe=mediapipe)


class NetworkLandmarkDetector:
    """Faces of ``detector`` with landmarks by the network (``source="network"``) or per
    face by the network, the detector or both (``source="auto"``, see the module docstring).

    Args:
        detector: finds the faces (MediaPipe's detector and mesh when None).
        source: ``"network"`` or ``"auto"``.
        yaw_threshold: `auto` keeps MediaPipe's points alone below this network |yaw|
            (degrees).
        network_only: `auto` keeps the network's points alone from this |yaw| (degrees); in
            between it blends them (`mediapipe_weight`).
        min_score: `auto` uses MediaPipe's points only at this detection score or more.
        predictor: the network (the packaged weights when None).
        passes: network passes for the faces that keep the network's points (2: a second
            crop from the first pass's landmarks).
        model: the linear model whose fit to MediaPipe's 468 points gives their 68 points
            for a blend (the default model, loaded on first use, when None: its 68 landmark
            vertices are the network's).
        zooms: the last pass's crops of a face turned ``zooms_from_yaw`` degrees or more (by
            the pass before): `refine_boxes` at each zoom, their landmarks averaged
            (`facefit.regress.predictor.average_results`; the first zoom's pose is kept).
        zooms_from_yaw: |yaw| (degrees) from which the last pass averages ``zooms``; other
            faces get one crop at `REFINE_ZOOM`.
        turns: the last pass of such a face also crops it at the first of ``zooms`` turned by
            each of these angles (degrees) from its lean, averaged in too.
        recheck: the `fixed_point_residual` over which a face turned ``zooms_from_yaw`` or
            more is read again from first crops zoomed by each of ``recheck_zooms`` (the
            answer with the smallest residual kept); None: never.
        recheck_zooms: the zooms of those first crops (about the 68-point box's centre).
    """

    scheme = IBUG68_FIXED

    def __init__(self, detector: LandmarkDetector | None = None, source: str = "auto",
                 yaw_threshold: float = YAW_THRESHOLD, min_score: float = 0.5,
                 predictor: RegressionPredictor | None = None, passes: int = PASSES,
                 network_only: float = NETWORK_ONLY, model: MorphableModel | None = None,
                 zooms: tuple[float, ...] = REFINE_ZOOMS, zooms_from_yaw: float = ZOOMS_FROM_YAW,
                 turns: tuple[float, ...] = REFINE_TURNS, recheck: float | None = RECHECK_RESIDUAL,
                 recheck_zooms: tuple[float, ...] = RECHECK_ZOOMS) -> None:
        if source not in ("auto", "network"):
            raise ValueError(f"source must be 'auto' or 'network', got {source!r}")
        if network_only < yaw_threshold:
            raise ValueError(f"network_only ({network_only}) must be at least yaw_threshold "
                             f"({yaw_threshold})")
        if detector is None:
            from facefit.detect.mediapipe import MediaPipeDetector

            detector = MediaPipeDetector()
        self.detector = detector
        self.source = source
        self.yaw_threshold = float(yaw_threshold)
        self.network_only = float(network_only)
        self.min_score = float(min_score)
        self.predictor = predictor if predictor is not None else RegressionPredictor()
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        self.passes = int(passes)
        if not zooms or any(not z > 0 for z in zooms):
            raise ValueError(f"zooms must be positive, got {zooms!r}")
        self.zooms = tuple(float(z) for z in zooms)
        self.zooms_from_yaw = float(zooms_from_yaw)
        if not all(np.isfinite(turns)):
            raise ValueError(f"turns must be finite, got {turns!r}")
        self.turns = tuple(float(t) for t in turns)
        if any(not z > 0 for z in recheck_zooms):
            raise ValueError(f"recheck_zooms must be positive, got {recheck_zooms!r}")
        self.recheck = None if recheck is None else float(recheck)
        self.recheck_zooms = tuple(float(z) for z in recheck_zooms)
        self._model = model

    @property
    def model(self) -> MorphableModel:
        """The model of the blends' MediaPipe fits (`model`)."""
        if self._model is None:
            from facefit.model.bfm_3ddfa import load_default_model

            self._model = load_default_model()
        return self._model

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        """Faces in an (H, W, 3) uint8 RGB image, best first, each landmarked by its source."""
        return self.landmark_faces(image_rgb, self.detector.detect(image_rgb,
                                                                   max_faces=max_faces))

    def first_pass(self, image_rgb: np.ndarray, faces: list[FaceLandmarks]
                   ) -> list[RegressionResult]:
        """The network's first pass on each face, cropped from its 68-point box (`box68`),
        turned upright by the lean of its mesh (`first_lean_deg`)."""
        if not faces:
            return []
        return self._first_crops(image_rgb, np.stack([box68(f) for f in faces]),
                                 np.array([first_lean_deg(f) for f in faces]))

    def _first_crops(self, image_rgb: np.ndarray, boxes: np.ndarray, angles_deg: np.ndarray
                     ) -> list[RegressionResult]:
        """The network's first pass on (N, 4) 68-point boxes turned by (N,) leans."""
        # without the mirrored crop: its yaw decides `auto` and its box crops the second pass
        return self.predictor.predict_batch(image_rgb, boxes=boxes, angles_deg=angles_deg,
                                            flip=None if self.passes == 1 else False)

    def _later_passes(self, image_rgb: np.ndarray, results: list[RegressionResult]
                      ) -> list[RegressionResult]:
        """``results`` (first passes) after the ``passes - 1`` later passes: each cropped from
        the previous pass's upright box scaled by `REFINE_ZOOM` and turned by its lean, the
        last one of a face turned ``zooms_from_yaw`` or more averaging the crops at
        ``zooms`` and those turned by ``turns``."""
        many = tuple((z, 0.0) for z in self.zooms) + tuple((self.zooms[0], t) for t in self.turns)
        results = list(results)
        for step in range(self.passes - 1):
            if not results:
                break
            last = step == self.passes - 2
            crops = [many if last and abs(r.yaw_deg) >= self.zooms_from_yaw
                     else ((REFINE_ZOOM, 0.0),) for r in results]  # (zoom, turn) a crop
            boxes = np.concatenate([refine_boxes(r.upright_box[None],
                                                 np.array([z for z, _ in c])[:, None])
                                    for r, c in zip(results, crops, strict=True)])
            angles = np.concatenate([[r.inplane_deg + t for _, t in c]
                                     for r, c in zip(results, crops, strict=True)])
            again = self.predictor.predict_batch(image_rgb, boxes=boxes, angles_deg=angles)
            at = np.cumsum([0] + [len(c) for c in crops])
            results = [average_results(again[at[k]:at[k + 1]]) for k in range(len(results))]
        return results

    def _rechecked(self, image_rgb: np.ndarray, faces: list[FaceLandmarks],
                   results: list[RegressionResult]) -> list[RegressionResult]:
        """``results`` of ``faces`` (their last passes), each turned face whose
        `fixed_point_residual` exceeds ``recheck`` replaced by the answer of least residual
        among it and the chains of passes from its first crop zoomed by ``recheck_zooms``."""
        turned = [i for i, r in enumerate(results) if abs(r.yaw_deg) >= self.zooms_from_yaw]
        if self.recheck is None or not turned:
            return results
        res = fixed_point_residual(self.predictor, image_rgb, [results[i] for i in turned])
        best = {i: (e, results[i]) for i, e in zip(turned, res, strict=True) if e > self.recheck}
        if not best:
            return results
        # every doubted face at every zoom, one batch a pass
        again = [(i, z) for z in self.recheck_zooms for i in best]
        boxes = np.stack([refine_boxes(box68(faces[i]), z) for i, z in again])
        angles = np.array([first_lean_deg(faces[i]) for i, _ in again])
        alt = self._later_passes(image_rgb, self._first_crops(image_rgb, boxes, angles))
        for (i, _), r, e in zip(again, alt, fixed_point_residual(self.predictor, image_rgb, alt),
                                strict=True):
            if e < best[i][0]:
                best[i] = (e, r)
        return [best[i][1] if i in best else r for i, r in enumerate(results)]

    def landmark_faces(self, image_rgb: np.ndarray, faces: list[FaceLandmarks],
                       first: list[RegressionResult] | None = None,
                       source: str | None = None, reading: bool = True
                       ) -> list[FaceLandmarks]:
        """``faces`` found in ``image_rgb`` by another detector (or tracked), each landmarked
        by its source: the network's points or, in ``auto``, the face itself where
        `keeps_mediapipe` or a `blend_face` of both where `mediapipe_weight` is between 0 and
        1. Every face gets one network pass (given as ``first`` when already run,
        `first_pass`). In ``auto`` a face whose first-pass |yaw| is under ``yaw_threshold``
        keeps MediaPipe's points (a `MediaPipeFace`, carrying the network's final reading);
        every face gets ``passes - 1`` more passes,
        each cropped from the previous pass's landmarks (3DDFA's two-step scheme; their box
        in the head's upright frame scaled by `REFINE_ZOOM`, `refine_boxes`, the crop turned
        by the previous pass's lean; the last pass of a face turned ``zooms_from_yaw`` or more
        averages the crops at ``zooms``), and the last pass's yaw decides (a first crop that
        missed the face under-estimates the yaw). A turned face that one more pass would move
        by more than ``recheck`` is read again from zoomed first crops (`_rechecked`). The
        answers are then moved into AFLW's annotation convention
        (`RegressionPredictor.in_aflw_convention`). ``source``: ``"network"`` or ``"auto"``
        for this call (default: the detector's). ``reading`` False: a face that keeps
        MediaPipe's points after the first pass is returned as it came, without the later
        passes (the video tracker, which uses no reading, checks frontal faces so)."""
        source = self.source if source is None else source
        if source not in ("auto", "network"):
            raise ValueError(f"source must be 'auto' or 'network', got {source!r}")
        if not faces:
            return []
        results = list(first) if first is not None else self.first_pass(image_rgb, faces)
        auto = source == "auto"
        kept = [auto and keeps_mediapipe(f, r, self.yaw_threshold, self.min_score)
                for f, r in zip(faces, results, strict=True)]
        idx = [i for i, k in enumerate(kept) if reading or not k]
        if idx:
            later = self._later_passes(image_rgb, [results[i] for i in idx])
            later = self._rechecked(image_rgb, [faces[i] for i in idx], later)
            for i, r in zip(idx, later, strict=True):
                results[i] = self.predictor.in_aflw_convention(r)
        out: list[FaceLandmarks] = []
        for f, r, keep in zip(faces, results, kept, strict=True):
            if keep:  # `auto` kept MediaPipe's points after the first pass
                out.append(with_reading(f, r) if reading else f)
                continue
            w = (mediapipe_weight(f, r, self.yaw_threshold, self.network_only, self.min_score)
                 if auto else 0.0)
            if w >= 1.0:
                out.append(with_reading(f, r))
            elif w <= 0.0:
                confident = auto and confident_mediapipe(f, self.min_score)
                out.append(network_face(r, f.score, f if confident else None))
            else:
                out.append(blend_face(self.model, f, r, w, image_rgb.shape[1::-1]))
        return out


def fixed_point_residual(predictor: RegressionPredictor, image_rgb: np.ndarray,
                         results: list[RegressionResult]) -> np.ndarray:
    """(N,) how far one more network pass moves each answer's 68 points: their mean move
    over the square root of the area of the answer's 68-point box (a fraction; the pass is
    cropped as a later pass is, `refine_boxes` of the upright box at `REFINE_ZOOM`, turned by
    the answer's lean)."""
    if not results:
        return np.zeros(0)
    again = predictor.predict_batch(
        image_rgb, boxes=refine_boxes(np.stack([r.upright_box for r in results])),
        angles_deg=np.array([r.inplane_deg for r in results]))
    new = np.stack([a.landmarks_68_px for a in again]).astype(np.float64)
    old = np.stack([r.landmarks_68_px for r in results]).astype(np.float64)
    box = np.stack([r.box for r in results]).astype(np.float64)
    sides = np.sqrt(np.maximum(np.prod(box[:, 2:] - box[:, :2], axis=1), 1e-9))
    return np.linalg.norm(new - old, axis=2).mean(1) / sides


def landmark_detector(detector: LandmarkDetector, landmarks: str, model_kind: str = "linear"
                      ) -> tuple[LandmarkDetector, str]:
    """(the detector that gives each face its ``landmarks`` source, the source in effect).

    ``"auto"`` means ``"mediapipe"`` for models that are not linear (FLAME's jaw and the
    bilinear outline are fitted from MediaPipe's dense points; the network's points and the
    yaw threshold were measured with linear models). Raises ValueError for an unknown source.
    """
    if landmarks not in SOURCES:
        raise ValueError(f"landmarks must be one of {', '.join(map(repr, SOURCES))}, got "
                         f"{landmarks!r}")
    if landmarks == "auto" and model_kind != "linear":
        landmarks = "mediapipe"
    if landmarks == "mediapipe":
        return detector, landmarks
    return NetworkLandmarkDetector(detector, source=landmarks), landmarks


def refinement_face(detector: LandmarkDetector, image_rgb: np.ndarray, face: FaceLandmarks
                    ) -> FaceLandmarks:
    """The face whose landmark fit starts a photometric refinement of ``face`` (found by
    ``detector`` in ``image_rgb``): the network's reading (`NetworkLandmarkDetector` with
    source ``"network"``) of a face for which ``auto`` kept MediaPipe's points, else ``face``.
    The network's fit is the better start for the shape (`benchmarks/shape.py`, one photo, 100
    subjects, seed 2: NoW median on ICT identities -13.3 % of the mean face's against -12.3
    % from MediaPipe's fit; on the default model's own faces 2.36 / 1.74 mm rigid / similarity
    vertex error against 2.43 / 1.86, its pitch error -2.3 +- 1.9 degrees against -3.6 +- 3.3),
    while MediaPipe's points stay the better 2D landmarks of a face within 30 degrees."""
    if isinstance(face, MediaPipeFace) and face.regression is not None:
        return network_face(face.regression, face.score)
    if (isinstance(detector, NetworkLandmarkDetector) and detector.source == "auto"
            and landmark_source(face) == "mediapipe"):
        return detector.landmark_faces(image_rgb, [face], source="network")[0]
    return face


def refinement_starts(model: MorphableModel | FaceModel, detector: LandmarkDetector,
                      image_rgb: np.ndarray, face: FaceLandmarks, fits: Sequence[FitResult]
                      ) -> list[FitResult]:
    """The landmark fits photometric refinements of ``face`` (found by ``detector`` in
    ``image_rgb``) start from, one per fit of ``fits`` (the face's landmark fits, one per
    camera tried: `facefit.fit.camera.camera_candidates`): ``fits``, unless
    `refinement_face` reads the face anew (the network's points for a face whose landmarks
    ``auto`` kept from MediaPipe; read once), then `facefit.fit.face_fit.fit_face` of that
    reading with each fit's camera. What `facefit.Reconstructor`, the shape and synthetic
    benchmarks and ``benchmarks/photometric.py`` start their one-photo refinements from."""
    from facefit.fit.face_fit import fit_face

    start = refinement_face(detector, image_rgb, face)
    if start is face:
        return list(fits)
    return [fit_face(model, start, image_rgb.shape[1::-1], camera=f.camera.kind,
                     focal_px=f.camera.focal_px) for f in fits]


def refinement_faces(detector: LandmarkDetector, images: Sequence[np.ndarray],
                     faces: Sequence[FaceLandmarks]) -> list[FaceLandmarks] | None:
    """`refinement_face` of each of ``faces`` (one per image of ``images``), or None when
    every face comes back unchanged: then the landmark fit of ``faces`` is the start."""
    starts = [refinement_face(detector, img, f) for img, f in zip(images, faces, strict=True)]
    return None if all(a is b for a, b in zip(starts, faces, strict=True)) else starts


def confident_mediapipe(face: FaceLandmarks, min_score: float = 0.5) -> bool:
    """Whether ``face`` is a MediaPipe face (468 points) scored at least ``min_score``: the
    faces whose points `auto` may keep, blend or fuse."""
    return face.scheme == "mediapipe468" and face.score >= min_score


def keeps_mediapipe(face: FaceLandmarks, result: RegressionResult,
                    yaw_threshold: float = YAW_THRESHOLD, min_score: float = 0.5) -> bool:
    """`auto`'s rule for MediaPipe's points alone: ``face``'s score is at least
    ``min_score`` and the network's |yaw| is below ``yaw_threshold`` degrees."""
    return confident_mediapipe(face, min_score) and abs(result.yaw_deg) < yaw_threshold


def mediapipe_weight(face: FaceLandmarks, result: RegressionResult,
                     yaw_threshold: float = YAW_THRESHOLD, network_only: float = NETWORK_ONLY,
                     min_score: float = 0.5) -> float:
    """MediaPipe's weight in `auto`'s landmarks of ``face`` in [0, 1]: 0 for a face that is not
    a confident MediaPipe face (score under ``min_score``), else 1 under ``yaw_threshold``
    degrees of network |yaw|, 0 from ``network_only`` and linear in between."""
    if not confident_mediapipe(face, min_score):
        return 0.0
    span = max(network_only - yaw_threshold, 1e-9)
    return float(np.clip((network_only - abs(result.yaw_deg)) / span, 0.0, 1.0))


def blend_face(model: MorphableModel, face: FaceLandmarks, result: RegressionResult,
               weight: float, image_size: tuple[int, int]) -> NetworkFace:
    """A `NetworkFace` (source ``"blend"``) whose 68 points and depth are ``weight`` times
    those of ``model`` fitted to MediaPipe's ``face`` (the projected 68 landmark vertices,
    `facefit.fit.landmark_fit.fit_landmarks`, scaled orthographic) plus ``1 - weight`` times
    the network's ``result``; ``image_size`` is (width, height) in pixels."""
    from facefit.fit.landmark_fit import fit_landmarks

    mp = np.asarray(fit_landmarks(model, face, image_size).landmarks_68_3d, np.float64)
    net = np.asarray(result.landmarks_68_3d, np.float64)
    mp[:, 2] -= mp[:, 2].mean()
    net[:, 2] -= net[:, 2].mean()
    pts = weight * mp + (1.0 - weight) * net
    box = np.r_[pts[:, :2].min(0), pts[:, :2].max(0)].astype(np.float32)
    return NetworkFace(box, float(face.score), np.ascontiguousarray(pts[:, :2], np.float32),
                       pts[:, 2].astype(np.float32), IBUG68_FIXED, regression=result,
                       source="blend", mediapipe_weight=float(weight), mediapipe=face)
