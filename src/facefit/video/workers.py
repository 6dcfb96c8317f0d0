"""``facefit video`` on two cores: decoding + tracking and overlay rendering + encoding in
their own processes beside the main one (identity pass, per-frame fit, JSON lines, GLB).

A three-stage pipeline in the order of the frames: `TrackerProcess` decodes the clip and
tracks the face (MediaPipe's mesh and facefit's network, the costliest part of a frame)
ahead of the main loop, from the start, while the main process still fits the clip's
identity; `OverlayProcess` renders each overlay frame (`facefit.render.overlay`) and hands it
to the H.264 writer after the main loop has fitted it. Each stage is one process fed through
a bounded queue (memory stays flat whatever the clip's length), so frames leave every stage
in the order they came, and every stage runs the same code on the same inputs as the
one-process loop: the outputs are the same, frame for frame. Processes are spawned (not
forked: a child forked from a process whose OpenCV thread pool has run can hang on it), and
an exception in a worker is raised again in the main process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facefit.detect.base import FaceLandmarks

QUEUE_FRAMES = 8
"""Frames the overlay stage may hold in its queue (a 640x480 frame is 0.9 MB)."""
LOOKAHEAD_BYTES = 128 << 20
"""Frames the tracking stage may hold ahead of the fit: up to this many bytes of them (140
frames of 640x480, 5.6 s at 25 fps: it tracks on while the identity pass runs)."""
_POLL_S = 0.5


def cores_available() -> int:
    """How many cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class WorkerError(RuntimeError):
    """A worker process died without saying why (killed, out of memory)."""


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives the queue to the main process (it pickles, and its class can
    be called again with its args, as unpickling does: `copy.copy` rebuilds it that way),
    else a RuntimeError with its type and message."""
    import copy
    import pickle

    try:
        pickle.dumps(exc)
        copy.copy(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _Stage:
    """One spawned worker process with an inbox and an outbox (both bounded)."""

    def __init__(self, target: Callable[..., None], *args: Any, outbox_size: int = QUEUE_FRAMES
                 ) -> None:
        ctx = mp.get_context("spawn")
        self.inbox: Any = ctx.Queue(QUEUE_FRAMES)
        self.outbox: Any = ctx.Queue(outbox_size)
        self.process = ctx.Process(target=target, args=(*args, self.inbox, self.outbox),
                                   daemon=True)
        self.process.start()
        self._closed = False

    def put(self, item: Any) -> None:
        """Queue ``item`` for the worker, waiting while its queue is full; raises the
        worker's exception if it has failed."""
        while True:
            try:
                self.inbox.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                self._check()

    def get(self) -> Any:
        """The worker's next message; raises the worker's exception if it failed."""
        while True:
            try:
                msg = self.outbox.get(timeout=_POLL_S)
            except queue.Empty:
                self._check()
                continue
            if msg[0] == "error":
                self.abort()
                raise msg[1]
            return msg

    def _check(self) -> None:
        if self.process.is_alive():
            return
        try:  # it may have reported its error just before it ended
            msg = self.outbox.get(timeout=_POLL_S)
        except queue.Empty:
            msg = None
        self.abort()
        if msg is not None and msg[0] == "error":
            raise msg[1]
        raise WorkerError(f"video worker ended unexpectedly (exit {self.process.exitcode})")

    def abort(self) -> None:
        """Stop the worker at once (nothing more is written by it)."""
        if self._closed:
            return
        self._closed = True
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        for q in (self.inbox, self.outbox):
            q.cancel_join_thread()
            q.close()


def _report(outbox: Any, exc: BaseException) -> None:
    outbox.put(("error", _picklable(exc)))


def _start_worker() -> None:
    """In a worker: one BLAS thread, and end this process as soon as its parent does (a
    killed parent would never read its queue nor stop it; a worker blocked on a full queue,
    or flushing its queue at exit, would wait forever)."""
    import threading
    from multiprocessing.connection import wait

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core's worth of work: BLAS threads would only contend
    parent = mp.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


# -- overlay rendering and encoding ------------------------------------------------------


def _overlay_main(mean: np.ndarray, triangles: np.ndarray, max_cell_px: float,
                  path: str, fps: float, inbox: Any, outbox: Any) -> None:
    """Worker: render each queued (frame, mesh, scale, landmarks) and write it, in order."""
    _start_worker()
    try:
        from facefit.render.overlay import OverlayRenderer
        from facefit.video.stream import VideoWriter

        painter = OverlayRenderer(mean, triangles, max_cell_px=max_cell_px)
        writer = VideoWriter(path, fps)
        try:
            while (job := inbox.get()) is not None:
                writer.write(render_job(painter, *job))
        finally:
            writer.close()
        outbox.put(("done",))
    except BaseException as exc:  # noqa: BLE001 - passed to the main process
        _report(outbox, exc)


def render_job(painter: Any, frame: np.ndarray, mesh_px: np.ndarray | None, scale: float,
               landmarks: np.ndarray | None) -> np.ndarray:
    """One overlay frame: ``frame`` itself where no face was fitted (``mesh_px`` None), else
    the mesh (V, 3: x, y px, depth) drawn at ``scale`` px/mm with ``landmarks`` (N, 2 px)."""
    if mesh_px is None:
        return np.asarray(frame)
    return painter.render(np.asarray(frame), mesh_px, scale, landmarks)


class OverlayProcess:
    """Overlay frames rendered (`facefit.render.overlay.OverlayRenderer` of ``mean``,
    ``triangles``, ``max_cell_px``) and written to ``path`` (H.264, `VideoWriter`) by a
    worker process, in the order `submit` gets them."""

    def __init__(self, mean: np.ndarray, triangles: np.ndarray, max_cell_px: float,
                 path: str | Path, fps: float) -> None:
        self._stage = _Stage(_overlay_main, np.asarray(mean), np.asarray(triangles),
                             float(max_cell_px), str(path), float(fps))

    def submit(self, frame: np.ndarray, mesh_px: np.ndarray | None, scale: float,
               landmarks: np.ndarray | None) -> None:
        """Queue one frame (see `render_job`; the mesh goes as float32, as it is drawn)."""
        mesh = None if mesh_px is None else np.asarray(mesh_px, np.float32)
        self._stage.put((frame, mesh, scale, landmarks))

    def close(self) -> None:
        """Wait for every queued frame to be written and the file closed; raises the worker's
        exception if it failed."""
        self._stage.put(None)
        self._stage.get()
        self._stage.abort()

    def abort(self) -> None:
        """Stop without finishing the file."""
        self._stage.abort()


# -- decoding and tracking ---------------------------------------------------------------


def _tracker_main(source: str, landmarks: str, model_kind: str, max_frames: int | None,
                  inbox: Any, outbox: Any) -> None:
    """Worker: decode ``source`` and track its face, sending (frame, face, re-detected) per
    frame, then ("end", full detections)."""
    _start_worker()
    try:
        from facefit.detect.mediapipe import MediaPipeDetector
        from facefit.detect.network import landmark_detector
        from facefit.video import stream
        from facefit.video.track import FaceTracker

        reader, info = stream.open_video(source)
        detector = MediaPipeDetector()
        landmarker, used = landmark_detector(detector, landmarks, model_kind)
        tracker = FaceTracker(detector, landmarks=landmarker if used != "mediapipe" else None)
        frames = stream.iter_frames(reader, info)
        try:
            for i, frame in enumerate(frames):
                if max_frames is not None and i >= max_frames:
                    break
                face, detected = tracker.update(frame)
                outbox.put(("frame", frame, face, detected))
        finally:
            frames.close()
        outbox.put(("end", tracker.detections))
    except BaseException as exc:  # noqa: BLE001 - passed to the main process
        _report(outbox, exc)


class TrackerProcess:
    """Frames of the video file ``source`` decoded and tracked (`FaceTracker` with a new
    `MediaPipeDetector` and the ``landmarks`` source for ``model_kind``, as `track_video`
    builds them) by a worker process, ahead of the caller by up to `LOOKAHEAD_BYTES` of
    frames of ``size`` (width, height).

    Iterate `tracked` for (frame, face or None, re-detected) in frame order; `detections`
    is the tracker's count of full detections once the iteration has ended. A decoding
    error (`facefit.video.stream.VideoError`: truncated, corrupt) is raised by the
    iteration where the one-process loop raises it, after the frames before it."""

    def __init__(self, source: str | Path, landmarks: str, model_kind: str,
                 size: tuple[int, int], max_frames: int | None = None) -> None:
        ahead = int(np.clip(LOOKAHEAD_BYTES // max(3 * size[0] * size[1], 1), QUEUE_FRAMES,
                            1024))
        self._stage = _Stage(_tracker_main, str(source), landmarks, model_kind, max_frames,
                             outbox_size=ahead)
        self.detections = 0

    def tracked(self) -> Iterator[tuple[np.ndarray, FaceLandmarks | None, bool]]:
        try:
            while True:
                msg = self._stage.get()
                if msg[0] == "end":
                    self.detections = int(msg[1])
                    return
                yield msg[1], msg[2], msg[3]
        finally:
            self._stage.abort()

    def abort(self) -> None:
        """Stop the worker (when the caller stops early)."""
        self._stage.abort()
