"""The streaming video loop: frame → track → fit (fixed identity) → smooth → write, and
`track_video`, the library API of ``facefit video`` (``facefit.track_video``).

Each frame is decoded, processed and written before the next is read: JSON lines and the
overlay video are appended as frames come, and the animated GLB keeps only a few numbers
per frame, so memory stays flat however long the clip is. On more than one core (``facefit
video``; `track_video`'s ``parallel``) decoding + tracking run ahead in a worker process
(at most `facefit.video.workers.LOOKAHEAD_BYTES` of frames) and the overlay is rendered and
encoded behind the fit in another (`facefit.video.workers`): the same outputs, frame for
frame. Frames are fitted as the model's
kind (`facefit.model.kinds.face_model`: FLAME with its jaw and neck) with the single-photo
landmark prior (`facefit.fit.multi_image.default_landmark_sigma`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from facefit.detect.base import FaceLandmarks
from facefit.detect.mediapipe import MediaPipeDetector
from facefit.detect.network import SOURCES, landmark_detector, landmark_source
from facefit.fit.camera import Camera, checked_camera
from facefit.fit.landmark_fit import camera_sets
from facefit.fit.multi_image import ViewPoints, fit_same_person, view_from_face
from facefit.fit.points_aflw import landmark_offset_mm
from facefit.fit.result import image_vertices
from facefit.io.animated_glb import AnimatedGlb, Skeleton
from facefit.io.arkit_export import arkit_targets, write_live_link_csv, write_video_arkit_glb
from facefit.io.atomic import atomic_path
from facefit.io.html import write_video_page
from facefit.io.records import face_record, pose_record, rounded
from facefit.io.schemas import SCHEMA_VERSION
from facefit.model.bfm_3ddfa import load_default_model
from facefit.model.morphable_model import MorphableModel
from facefit.video import stream
from facefit.video.fitter import FrameFitter
from facefit.video.identity import (
    IDENTITY_REFINES,
    clip_identity,
    identity_of_faces,
    landmark_sigma_of,
)
from facefit.video.smooth import PoseExpressionSmoother
from facefit.video.track import FaceTracker
from facefit.video.workers import (
    LinearMesh,
    OverlayProcess,
    TrackerProcess,
    cores_available,
    render_job,
)

OVERLAY_CELL_PX = 3.0
"""The overlay's level of detail: cells up to 3 px (not 2): a 640x480 head then draws ~33k
instead of ~52k triangles, a third less rasterising per frame, with no visible facets under
Gouraud shading."""


@dataclass
class VideoStats:
    """What a run did: frame counts and wall-clock seconds per stage (of this process: with
    worker processes, ``track`` is the wait for the tracked frames and ``write`` includes
    the wait for room in the overlay's queue)."""

    frames: int = 0
    faces: int = 0
    detections: int = 0
    identity_views: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {
        "decode": 0.0, "track": 0.0, "fit": 0.0, "write": 0.0, "identity": 0.0})

    def fps(self, stages: Iterable[str] | None = None) -> float:
        keys = self.seconds.keys() if stages is None else stages
        total = sum(self.seconds[k] for k in keys)
        return self.frames / total if total > 0 else float("nan")


class RunningIdentity:
    """Identity estimated while streaming (camera input): every ``every``-th tracked frame
    becomes a keyframe until ``max_views`` are collected; the joint fit is redone on each new
    keyframe, then frozen. ``camera``: the frames' camera model (scaled orthographic when
    None)."""

    def __init__(self, model: MorphableModel, every: int = 10, max_views: int = 16,
                 camera: Camera | None = None) -> None:
        self.model, self.every, self.max_views = model, every, max_views
        self.camera = camera
        self.views: list[ViewPoints] = []
        self._count = 0

    def update(self, view: ViewPoints) -> np.ndarray | None:
        """New shape coefficients when this frame changed the estimate, else None."""
        self._count += 1
        if len(self.views) >= self.max_views or (self._count - 1) % self.every:
            return None
        self.views.append(view)
        return fit_same_person(self.model, self.views, camera=self.camera).shape_coeffs


def skeleton(fitter: FrameFitter) -> Skeleton | None:
    """The animated GLB's skin for the fitter's model kind (FLAME: its joints at the clip's
    neutral identity), or None for unarticulated kinds."""
    fm = fitter.face_model
    if fm.kind != "flame":
        return None
    return Skeleton.of_flame(fm.flame, fitter.neutral())  # type: ignore[attr-defined]


def _tracked(frames: Iterator[np.ndarray], tracker: FaceTracker, sec: dict[str, float]
             ) -> Iterator[tuple[np.ndarray, FaceLandmarks | None, bool]]:
    """(frame, face or None, re-detected) per frame, decoding and tracking timed in ``sec``."""
    t0 = time.perf_counter()
    for frame in frames:
        t1 = time.perf_counter()
        sec["decode"] += t1 - t0
        face, detected = tracker.update(frame)
        sec["track"] += time.perf_counter() - t1
        yield frame, face, detected
        t0 = time.perf_counter()


def _tracked_ahead(tracker: TrackerProcess, sec: dict[str, float]
                   ) -> Iterator[tuple[np.ndarray, FaceLandmarks | None, bool]]:
    """`TrackerProcess.tracked`, the wait for each frame timed as tracking in ``sec``."""
    t0 = time.perf_counter()
    for item in tracker.tracked():
        t1 = time.perf_counter()
        sec["track"] += t1 - t0
        yield item
        t0 = time.perf_counter()


def process_frames(
    frames: Iterator[np.ndarray] | None,
    fps: float,
    model: MorphableModel,
    shape: np.ndarray | None,
    tracker: FaceTracker | TrackerProcess,
    jsonl_path: Path | None = None,
    overlay: Callable[[np.ndarray], None] | OverlayProcess | None = None,
    glb_path: Path | None = None,
    smooth: bool = True,
    max_frames: int | None = None,
    progress: Callable[[int], None] | None = None,
    identity_kind: str = "clip",
    camera: Camera | None = None,
) -> VideoStats:
    """Track, fit and write every frame of ``frames`` as it comes.

    Args:
        frames: (H, W, 3) uint8 RGB frames (an iterator: never materialised); None with a
            `TrackerProcess`, which decodes its own.
        fps: frame rate (timestamps are ``i / fps``).
        model: the morphable model.
        shape: the clip's identity; None estimates it while streaming (`RunningIdentity`).
        tracker: the face tracker, or a `TrackerProcess` (decoding and tracking ahead in a
            worker process; ``max_frames`` is then its own).
        jsonl_path: per-frame JSON lines output, or None.
        overlay: callback receiving each overlay frame (e.g. a `VideoWriter.write`), or an
            `OverlayProcess` that renders and writes them in a worker process (the caller
            closes it), or None.
        glb_path: animated GLB output, or None.
        smooth: temporal filtering of pose and expression (`PoseExpressionSmoother`).
        max_frames: stop after this many frames.
        progress: called with the frame index after each frame.
        identity_kind: how ``shape`` was fitted, for the JSON lines' header (``"clip"``,
            ``"clip photometric"``); ``"running"`` when ``shape`` is None.
        camera: the frames' camera model (scaled orthographic when None; a perspective
            camera holds its focal length and principal point, `FrameFitter`).
    """
    from facefit.detect.eyes import EYES_MAX_TURN_DEG, eye_refiner
    from facefit.fit.correspondence import correspondence_for
    from facefit.model.arkit import EyelidCalibration, arkit_for_pose
    from facefit.render.overlay import OverlayRenderer

    stats = VideoStats()
    sec = stats.seconds
    sigma = landmark_sigma_of(model)
    running = RunningIdentity(model, camera=camera) if shape is None else None
    identity = np.zeros(model.num_shape, np.float32) if shape is None else shape
    try:
        pivot_ids = correspondence_for(model, "mediapipe468").vertex_ids
    except ValueError:
        pivot_ids = np.asarray(model.landmark_ids["ibug68"])
    lm68 = np.asarray(model.landmark_ids["ibug68"])
    eyelids = EyelidCalibration()  # the clip's eyelid offsets, for the ARKit blinks
    eyes = eye_refiner()  # each eye's lids landmarked on its own (None: not installed)
    lid_calibration = EyelidCalibration()  # the same for those lids
    turn_max = np.sin(np.radians(EYES_MAX_TURN_DEG))  # past it the mesh's lids
    turned = False  # the last fitted frame's head was turned past it

    def make_fitter(shape: np.ndarray) -> FrameFitter:
        sm = (PoseExpressionSmoother(pivot=model.vertices(shape, ids=pivot_ids).mean(0))
              if smooth else None)
        return FrameFitter(model, shape, sm, camera=camera)

    fitter = make_fitter(identity)
    linear = fitter.face_model.kind == "linear"  # else: the kind's vertices every frame
    expr_basis = model.expression_basis.reshape(-1, model.num_expression)
    # a linear model's overlay mesh: made by the overlay worker when there is one
    mesh_of = (LinearMesh(fitter.neutral(), expr_basis) if overlay is not None and linear
               else None)
    in_worker = isinstance(overlay, OverlayProcess) and mesh_of is not None
    if in_worker:
        overlay.set_linear(mesh_of.neutral, expr_basis)  # type: ignore[union-attr]
    painter = (OverlayRenderer(model.mean, model.triangles, max_cell_px=OVERLAY_CELL_PX)
               if overlay is not None and not isinstance(overlay, OverlayProcess) else None)
    glb: AnimatedGlb | None = None
    # JSON lines go to a temporary name, renamed only when the whole clip went through: a
    # clip that fails half-way (truncated, corrupt: `VideoError`) leaves no .jsonl behind.
    stack = contextlib.ExitStack()
    out = None
    if jsonl_path is not None:
        tmp = stack.enter_context(atomic_path(jsonl_path))
        out = stack.enter_context(open(tmp, "w", encoding="utf-8"))
    if isinstance(tracker, TrackerProcess):
        tracked = _tracked_ahead(tracker, sec)
    else:
        assert frames is not None, "frames are needed unless a TrackerProcess decodes them"
        tracked = _tracked(itertools.islice(frames, max_frames), tracker, sec)
    with stack:
        for i, (frame, face, detected) in enumerate(tracked):
            t2 = time.perf_counter()
            t = i / fps
            stats.frames += 1
            stats.detections += int(detected)
            record: dict = {"frame": i, "time_s": round(t, 4), "faces": []}
            fit = None
            if face is None:
                fitter.reset()
            else:
                stats.faces += 1
                view = view_from_face(model, face, sigma)
                if running is not None:
                    new = running.update(view)
                    if new is not None:
                        t_id = time.perf_counter()
                        identity = new
                        prev = fitter
                        fitter = make_fitter(identity)
                        fitter.warm_start_from(prev)
                        if mesh_of is not None:
                            mesh_of = LinearMesh(fitter.neutral(), expr_basis)
                            if in_worker:
                                overlay.set_linear(mesh_of.neutral)  # type: ignore[union-attr]
                        sec["identity"] += time.perf_counter() - t_id
                # the eyelids landmarked one eye at a time, for the eye shapes only (the fit
                # keeps the mesh's: a one-eye blink moves the mesh's two eyes alike)
                kind = fitter.face_model.kind  # ARKit lids: the transfer's or ICT's own
                lids = (face if eyes is None or kind not in ("linear", "ict") or turned
                        else eyes.refine(frame, face))
                fit = fitter.fit(view, t, None if lids is face or kind != "ict"
                                 else view_from_face(model, lids, sigma).points_px)
                # past EYES_MAX_TURN_DEG the mesh's lids (this frame's ARKit solve, and no
                # per-eye lids for the next frame)
                turned = abs(fitter.turn(fit.raw_pose)) > turn_max
                p = fit.pose
                lm3 = fitter.vertices(fit.params, ids=lm68)
                move = landmark_offset_mm(model, face)  # AFLW's convention, as reconstruct's
                pts, _ = p.project(lm3 if move is None else lm3 + move)
                pose = pose_record(p.rotation, p.scale, p.translation, p.kind, p.focal,
                                   p.principal)
                # ARKit weights per frame, unsmoothed: the frame's own fitted pose, not the
                # smoothed one (the solve explains this frame's raw landmarks; a lagging pose
                # on a moving head left residuals, chin against lips, that the mouth shapes
                # took up: LRS3 clip jawOpen r 0.67 -> 0.86 against the tracked inner-lip
                # gap), and a blendshape model's own raw weights (the expression filter
                # flattened them: MEAD clip, --model ict, r 0.76 smoothed, 0.86 raw)
                arkit = arkit_for_pose(model, face, fit.raw_pose, identity,
                                       fit.raw_expression, eyelids=eyelids,
                                       lids=None if lids is face or turned else lids,
                                       lid_calibration=lid_calibration)
                record["faces"].append(face_record(
                    face.box, face.score, pose, pts, fit.expression, fit.residual_px,
                    landmark_source=landmark_source(face), redetected=bool(detected),
                    raw_expression_coeffs=rounded(fit.raw_expression, 5),
                    **({} if arkit is None else {"arkit_blendshapes": arkit})))
            t3 = time.perf_counter()
            sec["fit"] += t3 - t2
            if out is not None:
                if i == 0:
                    head = {"schema_version": SCHEMA_VERSION,
                            "model": {"name": model.name, "licence": model.licence},
                            "fps": fps, "width": int(frame.shape[1]),
                            "height": int(frame.shape[0]),
                            "shape_coeffs": np.round(identity.astype(float), 5).tolist(),
                            "identity": "running" if running else identity_kind}
                    out.write(json.dumps(head) + "\n")
                out.write(json.dumps(record) + "\n")
            if in_worker and fit is not None:
                overlay.submit_linear(frame, fit.expression, fit.pose, pts)  # type: ignore[union-attr]
            elif overlay is not None:
                mesh, scale, dots = None, 1.0, None
                if fit is not None:
                    if mesh_of is not None:
                        mesh = mesh_of.at(fit.expression, fit.pose)
                    else:
                        mesh = image_vertices(fit.pose, fitter.vertices(fit.params))
                    scale, dots = fit.pose.origin_scale()[0], pts
                if painter is not None:
                    overlay(render_job(painter, frame, mesh, scale, dots))  # type: ignore[operator]
                else:
                    overlay.submit(frame, mesh, scale, dots)  # type: ignore[union-attr]
            if glb_path is not None and fit is not None:
                # a pinhole camera's head moves as its scaled orthographic counterpart's
                scale, origin = fit.pose.origin_scale()
                if glb is None:
                    glb = AnimatedGlb(np.zeros((0, 3)), model.triangles,
                                      model.expression_basis, scale,
                                      (frame.shape[1], frame.shape[0]), skeleton(fitter))
                glb.add(t, fit.pose.rotation, scale, origin, fit.expression, fit.params.joints)
            if progress is not None:
                progress(i)
            sec["write"] += time.perf_counter() - t3
    stats.detections = tracker.detections
    if glb_path is not None:
        if glb is None:
            glb = AnimatedGlb(np.zeros((0, 3)), model.triangles, model.expression_basis, 1.0,
                              (1, 1))
        glb.vertices = fitter.neutral().astype(np.float32)
        glb.skeleton = skeleton(fitter) if glb.skeleton is not None else None
        glb.write(glb_path)
    return stats


@dataclass(frozen=True)
class VideoOutputs:
    """The files `track_video` wrote (None: not asked for)."""

    jsonl: Path
    glb: Path | None
    overlay: Path | None
    csv: Path
    arkit_glb: Path | None
    html: Path | None


def track_video(
    source: str | Path,
    out_dir: str | Path,
    model: MorphableModel | None = None,
    detector: MediaPipeDetector | None = None,
    smooth: bool = True,
    overlay: bool = True,
    glb: bool = True,
    html: bool = True,
    identity_frames: int = 24,
    max_frames: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    landmarks: str = "auto",
    refine: str = "none",
    parallel: bool | None = False,
    camera: str = "auto",
    focal_px: float | None = None,
) -> tuple[VideoStats, VideoOutputs]:
    """Track and fit the face of a video file or camera and write ``OUT/STEM.*``: JSON lines
    (``.jsonl``), the animated GLB (``.glb``), the overlay video (``_overlay.mp4``), ARKit
    weights per frame (``.csv``, Live Link Face layout), the ARKit GLB (``_arkit.glb``) and a
    page (``.html``); what ``facefit video`` does.

    Args:
        source: a video file, or a camera index such as ``"0"``.
        out_dir: output folder (created if needed).
        model: the morphable model, fitted as its kind (default: the default model).
        detector: the MediaPipe detector (a new one when None).
        smooth: temporal filtering of pose and per-frame parameters.
        overlay, glb, html: write these outputs.
        identity_frames: frames spread over a file used for the clip's identity (a camera
            estimates it from keyframes while streaming, `RunningIdentity`).
        max_frames: stop after this many frames.
        progress: called with the frame index and the estimated frame count (None for a
            camera) after each frame.
        landmarks: each frame's landmark source, as for photos
            (`facefit.detect.network.landmark_detector`: ``"auto"``, ``"mediapipe"`` or
            ``"network"``; ``auto`` is MediaPipe for models that are not linear).
        refine: the clip's identity: ``"none"`` (the joint landmark fit of the
            ``identity_frames``) or ``"photometric"`` (then a joint photometric refinement of
            6 of them, `facefit.video.identity.clip_identity`: seconds more, a closer shape).
            A camera's running identity is never refined.
        parallel: a video file's decoding + tracking and overlay rendering + encoding each
            in a worker process beside the fit (`facefit.video.workers`; the same outputs);
            None: when the process may use more than one core (``facefit video``). Worker
            processes are spawned: a script that calls this must guard its own work with
            ``if __name__ == "__main__"``. Tracking stays in this process when ``detector``
            is given.
        camera: the camera model of the identity and of every frame's fit (its photometric
            refinement too): ``"scaled_orthographic"``, ``"perspective"`` (a webcam's
            close-up) or ``"auto"`` (default: perspective with a given ``focal_px``; else,
            with ``refine="photometric"``, the identity is refined with the scaled
            orthographic camera and with a pinhole one at the frame diagonal and the frames
            are fitted with the one that explained its keyframes better,
            `facefit.fit.camera.camera_candidates`; else scaled orthographic).
        focal_px: the perspective camera's focal length in pixels (default the frame's
            diagonal; the principal point is the frame's centre).

    Returns:
        (what the run did; ``identity_views`` is 0 for a running identity, the files).

    Raises:
        facefit.video.stream.VideoError: the clip cannot be opened, or is truncated or corrupt
            (then the message ends "(stopped: no results written for this clip)": nothing
            is written for it).
        OSError: ``out_dir`` cannot be created.
        KeyboardInterrupt: passed on; the partial overlay is removed, nothing else written.
    """
    if refine not in IDENTITY_REFINES:
        raise ValueError(f"refine must be one of {IDENTITY_REFINES}, got {refine!r}")
    if landmarks not in SOURCES:
        raise ValueError(f"landmarks must be one of {', '.join(map(repr, SOURCES))}, got "
                         f"{landmarks!r}")
    camera = checked_camera(camera, focal_px, auto=True)
    reader, info = stream.open_video(source)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        reader.close()
        raise
    model = load_default_model() if model is None else model
    own_detector = detector is None
    is_stream = stream.is_camera(str(source))
    # the cameras the identity tries (several: its refinement keeps one), the frames' after it
    lenses = [s[0] for s in camera_sets(camera, [focal_px], [info.size],
                                        refine == "photometric" and not is_stream)]
    lens = lenses[0]
    stem = f"camera{source}" if is_stream else Path(source).stem
    files = VideoOutputs(out / f"{stem}.jsonl", out / f"{stem}.glb" if glb else None,
                         out / f"{stem}_overlay.mp4" if overlay else None, out / f"{stem}.csv",
                         out / f"{stem}_arkit.glb" if glb else None,
                         out / f"{stem}.html" if html else None)
    overlay_tmp = out / f".{stem}_overlay.part.mp4"  # renamed when the clip is complete
    writer: stream.VideoWriter | OverlayProcess | None = None
    ahead: TrackerProcess | None = None
    workers = not is_stream and (cores_available() > 1 if parallel is None else parallel)
    # the identity pass's frames: every step-th frame below total (frame k is frame k step)
    total = info.frames or 1
    if max_frames:
        total = min(total, max_frames)
    step = max(1, total // max(identity_frames, 1))
    # the tracker worker detects them too (its detector loaded once, none in this process)
    ahead_identity = workers and own_detector and not is_stream and refine == "none"
    landmarker = relandmark = None
    if not (workers and own_detector):
        detector = MediaPipeDetector() if detector is None else detector
        landmarker, source_used = landmark_detector(detector, landmarks, model.kind)
        relandmark = landmarker if source_used != "mediapipe" else None
    n_id = 0
    kind = "clip"
    done = False
    # beside the two workers the main process gets one core: its BLAS threads would spin on
    # the others' (LRS3 clip, 2 cores: 21.4 -> 15.8 s wall for the whole command)
    blas = threadpool_limits(1, user_api="blas") if workers else None
    try:
        if workers:  # started first: they load their models while the identity is fitted
            if own_detector:
                reader.close()
                ahead = TrackerProcess(source, landmarks, model.kind, info.size, max_frames,
                                       (step, total) if ahead_identity else None)
            if overlay:
                writer = OverlayProcess(model.mean, model.triangles, OVERLAY_CELL_PX,
                                        overlay_tmp, info.fps,
                                        None if ahead is None else ahead.ring)
        shape = None
        # the ARKit GLB's targets (a per-model constant, 0.5 s) while the tracker worker
        # detects the identity frames, rather than after the clip, when one core is idle
        arkit_glb = (arkit_targets(model) if files.arkit_glb is not None and ahead_identity
                     else None)
        if not is_stream:  # first pass: identity from frames spread over the clip
            if ahead is not None and ahead_identity:
                ident = identity_of_faces(model, ahead.identity_faces(), identity_frames,
                                          camera=lenses)
            else:
                if landmarker is None:  # a photometric refinement: the frames are needed here
                    landmarker, _ = landmark_detector(MediaPipeDetector(), landmarks,
                                                      model.kind)
                # every step-th frame, the others not even converted
                r1, _ = stream.open_video(source, every=step)
                sample = (f for k, f in enumerate(stream.iter_frames(r1, every=step))
                          if k * step < total)
                ident = clip_identity(model, landmarker, sample, identity_frames,
                                      refine=refine, camera=lenses)
            if ident is not None:
                shape, n_id = ident.shape_coeffs, ident.views
                kind = "clip photometric" if ident.keyframes else "clip"
                lens = ident.camera
            else:  # no face in the sampled frames: the mean face, as a camera starts
                shape = np.zeros(model.num_shape, np.float32)
        if overlay and writer is None:
            writer = stream.VideoWriter(overlay_tmp, info.fps)
        stats = process_frames(
            None if ahead is not None else stream.iter_frames(reader), info.fps, model, shape,
            ahead if ahead is not None else FaceTracker(detector, landmarks=relandmark),
            jsonl_path=files.jsonl,
            overlay=writer.write if isinstance(writer, stream.VideoWriter) else writer,
            glb_path=files.glb, smooth=smooth, max_frames=max_frames,
            progress=None if progress is None else lambda i: progress(i, info.frames),
            identity_kind=kind, camera=lens)
        if writer is not None:
            writer.close()
        done = True
    except stream.VideoError as exc:
        raise stream.VideoError(f"{exc} (stopped: no results written for this clip)") from None
    finally:
        if blas is not None:
            blas.restore_original_limits()
        if ahead is not None:
            ahead.abort()
        if isinstance(writer, OverlayProcess) and not done:
            writer.abort()
        elif writer is not None and not done:
            writer.close()
        if ahead is not None:
            ahead.close()  # the frames in shared memory, once the overlay worker has ended
        if not done:
            overlay_tmp.unlink(missing_ok=True)  # the .jsonl and .glb are only written on success
    stats.identity_views = n_id
    if files.overlay is not None:
        os.replace(overlay_tmp, files.overlay)
    write_live_link_csv(files.jsonl)
    if files.arkit_glb is not None:
        write_video_arkit_glb(files.jsonl, model, targets=arkit_glb)
    if files.html is not None:
        write_video_page(files.jsonl)
    return stats, files
