"""``facefit video`` on two cores: decoding + tracking and overlay rendering + encoding in
their own processes beside the main one (identity fit, per-frame fit, JSON lines, GLB).

A three-stage pipeline in the order of the frames: `TrackerProcess` first detects the faces
of the identity frames (spread over the clip; its detector loaded once for both passes, none
in the main process), then decodes the clip and tracks the face (MediaPipe's mesh and
facefit's network, the costliest part of a frame) ahead of the main loop while the main
process still fits the clip's identity; `OverlayProcess` renders each overlay frame
(`facefit.render.overlay`) and hands it to the H.264 writer after the main loop has fitted
it. Each stage is one process fed through a bounded queue (memory stays flat whatever the
clip's length), so frames leave every stage in the order they came, and every stage runs the
same code on the same inputs as the one-process loop: the outputs are the same, frame for
frame. Frames and overlay meshes travel in shared memory (`FrameRing`: only slot numbers go
through the queues); a linear model's overlay mesh is made in the overlay worker from the
frame's expression and pose (`LinearMesh`), off the main process's path. An exception in a
worker is raised again in the main process.

Workers are forked while this process has started no native thread pool since this module
was imported (`start_method`: ``facefit video`` itself, whose main process has only
imported the libraries by then): a forked worker starts with them imported, where a spawned
one imported them again (about 0.5 s of CPU each, on the tracking worker's path to the
identity frames). Otherwise (a caller that has run OpenCV, ONNX Runtime or MediaPipe, whose
pools a forked child would inherit without their threads) they are spawned.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import sys
import threading
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


def _native_threads() -> int:
    """Threads of this process that Python's `threading` did not start (BLAS, OpenCV, ONNX
    Runtime pools), or -1 where the OS does not list them."""
    try:
        return len(os.listdir("/proc/self/task")) - threading.active_count()
    except OSError:
        return -1


_NATIVE_AT_IMPORT = _native_threads()  # numpy's BLAS pools, started when it was imported
START_METHOD: str | None = None
"""The workers' start method: None chooses (`start_method`); "fork" or "spawn" forces it."""


def start_method() -> str:
    """``"fork"`` on Linux while this process runs no more native threads than when this
    module was imported (its BLAS pools, which are fork-safe); else ``"spawn"``: a forked
    child would inherit another pool's state (OpenCV's, ONNX Runtime's, MediaPipe's) without
    its threads. `START_METHOD` overrides it."""
    if START_METHOD is not None:
        return START_METHOD
    if sys.platform != "linux" or _NATIVE_AT_IMPORT < 0:
        return "spawn"
    return "fork" if _native_threads() <= _NATIVE_AT_IMPORT else "spawn"


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
    """One worker process (forked or spawned: `start_method`) with an inbox and an outbox
    (both bounded).

    The worker's arguments go as the inbox's first message, not as the process's own: a
    spawned process reads those only after it has started Python and imported the main
    module, and arguments larger than a pipe's buffer (the overlay's mesh, 1.7 MB) held
    `start` until then (1.1 s of the main process's time in ``facefit video``); the
    queue's feeder thread sends them in the background."""

    def __init__(self, target: Callable[..., None], *args: Any, outbox_size: int = QUEUE_FRAMES,
                 rings: tuple[FrameRing | None, ...] = ()) -> None:
        ctx = mp.get_context(start_method())
        self.inbox: Any = ctx.Queue(QUEUE_FRAMES)
        self.outbox: Any = ctx.Queue(outbox_size)
        self.inbox.put(args)
        # a ring's handle holds a queue: it goes to the process as its own argument (a
        # queue is only passed on by a process's start, never through another queue)
        handles = tuple(None if r is None else r.handle() for r in rings)
        self.process = ctx.Process(target=_worker_main, args=(
            target, handles, self.inbox, self.outbox), daemon=True)
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
                self.check()

    def get(self) -> Any:
        """The worker's next message; raises the worker's exception if it failed."""
        while True:
            try:
                msg = self.outbox.get(timeout=_POLL_S)
            except queue.Empty:
                self.check()
                continue
            if msg[0] == "error":
                self.abort()
                raise msg[1]
            return msg

    def check(self) -> None:
        """Raise the worker's exception (or `WorkerError`) if it has ended."""
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


def _worker_main(target: Callable[..., None], rings: tuple[Any, ...], inbox: Any,
                 outbox: Any) -> None:
    """A worker process's entry: `_start_worker`, then ``target(*args, *rings, inbox,
    outbox)`` with the arguments `_Stage` queued first (``rings``: `FrameRing` handles, or
    None)."""
    _start_worker()
    try:
        args = inbox.get()
    except BaseException as exc:  # noqa: BLE001 - passed to the main process
        _report(outbox, exc)
        return
    target(*args, *rings, inbox, outbox)


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


# -- frames in shared memory -------------------------------------------------------------


SHM_DIR = "/dev/shm"
"""Where POSIX shared memory lives on Linux (a tmpfs: Docker gives containers 64 MB)."""


def shared_slots(nbytes: int, wanted: int, least: int = 4) -> int:
    """How many arrays of ``nbytes`` a `FrameRing` should hold: ``wanted``, or as many as
    half the free shared memory holds; 0 (no ring: arrays through the queues) when that is
    under ``least``. Writing past a full tmpfs kills a process with SIGBUS, so the ring is
    sized before it is made."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:  # not Linux, or no such mount: the queues
        return 0
    room = (st.f_bavail * st.f_frsize) // 2 // max(int(nbytes), 1)
    slots = int(min(wanted, room))
    return slots if slots >= least else 0


class FrameRing:
    """Arrays handed between the processes in shared memory instead of pickled through
    queues: ``slots`` arrays of ``shape`` and ``dtype`` (video frames: (H, W, 3) uint8;
    overlay meshes: (V, 3) float32) and a queue of the free slots.

    A producer copies each array into a free slot (`put`, waiting for one: the slots bound
    how far it runs ahead) and sends the slot's number; a consumer reads the array in place
    (`view`) and frees the slot (`release`) when done, or hands the number on. Frames went
    through two queues, pickled and copied four times: on 250 frames of 640x480 ~0.5 s of
    CPU for each of the four, and the main process's share was on its critical path.
    Created (``name`` None) and `close` d by the main process; `attach` ed by name in the
    workers."""

    def __init__(self, shape: tuple[int, ...], slots: int, dtype: Any = np.uint8,
                 free: Any = None, name: str | None = None) -> None:
        from multiprocessing import shared_memory

        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.slots = int(slots)
        size = max(self.slots * int(np.prod(self.shape)) * self.dtype.itemsize, 1)
        self._owner = name is None
        self._shm = shared_memory.SharedMemory(name=name, create=self._owner, size=size)
        self.arrays = np.ndarray((self.slots, *self.shape), self.dtype, buffer=self._shm.buf)
        if self._owner:
            free = mp.get_context("spawn").Queue()
            for i in range(self.slots):
                free.put(i)
        self.free: Any = free
        self.handed_on = False  # True: the slots are released by an OverlayProcess

    def handle(self) -> tuple[Any, ...]:
        """What a worker `attach` es with (passed as a worker process's argument)."""
        return self.shape, self.slots, self.dtype.str, self.free, self._shm.name

    @classmethod
    def attach(cls, handle: tuple[Any, ...]) -> FrameRing:
        shape, slots, dtype, free, name = handle
        return cls(shape, slots, dtype, free, name)

    def put(self, array: np.ndarray, check: Callable[[], None] | None = None) -> int | None:
        """Copy ``array`` (cast to the ring's dtype) into a free slot, waiting for one
        (calling ``check`` while it waits, which may raise), and return its number; None
        (nothing copied) for an array of another shape."""
        if np.shape(array) != self.shape:
            return None
        while True:
            try:
                slot = int(self.free.get(timeout=_POLL_S))
                break
            except queue.Empty:
                if check is not None:
                    check()
        self.arrays[slot] = array
        return slot

    def view(self, slot: int) -> np.ndarray:
        """The array in ``slot``, read-only (valid until the slot is released)."""
        v = self.arrays[slot]
        v.flags.writeable = False
        return v

    def slot_of(self, array: np.ndarray) -> int | None:
        """The slot whose whole array ``array`` is (a `view`), else None."""
        if (array.shape != self.shape or array.dtype != self.dtype
                or not array.flags.c_contiguous):
            return None
        size = self.arrays[0].nbytes
        offset = (array.__array_interface__["data"][0]
                  - self.arrays.__array_interface__["data"][0])
        if offset < 0 or offset % size or offset // size >= self.slots:
            return None
        return offset // size

    def release(self, slot: int) -> None:
        """The slot may take the next array."""
        self.free.put(int(slot))

    def close(self) -> None:
        """Drop this process's views; the creator also removes the shared memory."""
        self.arrays = np.zeros((0, *self.shape), self.dtype)
        with contextlib.suppress(BufferError):  # a view still held: freed with it
            self._shm.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()
            self.free.cancel_join_thread()
            self.free.close()


# -- overlay rendering and encoding ------------------------------------------------------


def _overlay_main(mean: np.ndarray, triangles: np.ndarray, max_cell_px: float,
                  path: str, fps: float, frame_ring: Any, mesh_ring: Any, inbox: Any,
                  outbox: Any) -> None:
    """Worker: render each queued (frame, mesh, scale, landmarks) and write it, in order; a
    frame or mesh given as the number of a slot of its `FrameRing` (``frame_ring``,
    ``mesh_ring``: their handles, or None) is read there and the slot released once the
    frame is written; a mesh given as (expression, pose) is the `LinearMesh` last sent
    (a ("linear", neutral, basis) message) at them."""
    try:
        from facefit.render.overlay import OverlayRenderer
        from facefit.video.stream import VideoWriter

        frames = None if frame_ring is None else FrameRing.attach(frame_ring)
        meshes = None if mesh_ring is None else FrameRing.attach(mesh_ring)
        painter = OverlayRenderer(mean, triangles, max_cell_px=max_cell_px)
        writer = VideoWriter(path, fps)
        linear: LinearMesh | None = None
        try:
            while (job := inbox.get()) is not None:
                if isinstance(job[0], str):  # ("linear", neutral, basis)
                    linear = LinearMesh(job[1], linear.basis if job[2] is None  # type: ignore[union-attr]
                                        else job[2])
                    continue
                frame, mesh, scale, landmarks = job
                in_ring = isinstance(frame, int), isinstance(mesh, int)
                if isinstance(mesh, tuple):
                    mesh = linear.at(*mesh)  # type: ignore[union-attr]
                writer.write(render_job(
                    painter, frames.view(frame) if in_ring[0] else frame,  # type: ignore[union-attr]
                    meshes.view(mesh) if in_ring[1] else mesh, scale, landmarks))  # type: ignore[union-attr]
                if in_ring[0]:
                    frames.release(frame)  # type: ignore[union-attr]
                if in_ring[1]:
                    meshes.release(mesh)  # type: ignore[union-attr]
        finally:
            writer.close()
        outbox.put(("done",))
    except BaseException as exc:  # noqa: BLE001 - passed to the main process
        _report(outbox, exc)


class LinearMesh:
    """A linear model's overlay mesh at a frame's expression and pose: the clip's identity
    mesh ``neutral`` (V, 3, mm) plus ``basis`` (3V, E) @ expression, projected (`at`).

    The basis is cast once to the expression's dtype (numpy casts a float32 basis to float64
    for every float64 product: 1.9 of the 2.7 ms a 53,215-vertex mesh took a frame); the
    product is the same one, on the same numbers."""

    def __init__(self, neutral: np.ndarray, basis: np.ndarray) -> None:
        self.neutral, self.basis = neutral, basis
        self._cast: dict[np.dtype, np.ndarray] = {}

    def at(self, expression: np.ndarray, pose: Any) -> np.ndarray:
        """(V, 3) x, y px and depth of the mesh with ``expression`` (E,) seen by ``pose``
        (a `facefit.fit.core.camera.CameraPose`; a pinhole camera's depth in pixels at the
        face's distance, `facefit.fit.result.image_vertices`, so that the overlay shades
        it as a scaled orthographic one)."""
        e = np.asarray(expression)
        dtype = np.result_type(self.basis, e)
        basis = self._cast.get(dtype)
        if basis is None:
            basis = self._cast[dtype] = np.ascontiguousarray(self.basis, dtype)
        x = self.neutral + (basis @ e).reshape(-1, 3)
        if pose.focal is not None:
            from facefit.fit.result import image_vertices

            return image_vertices(pose, x)
        xy, depth = pose.project(x)
        return np.column_stack([xy, depth])


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
    worker process, in the order `submit` gets them. Meshes go through shared memory (a
    `FrameRing` of its own: a 640 KB mesh a frame pickled through a queue cost ~1.3 ms on
    each side); with ``ring``, a frame that is one of its slots (a `TrackerProcess` frame)
    goes as the slot's number, and the worker frees the slot once the frame is written."""

    def __init__(self, mean: np.ndarray, triangles: np.ndarray, max_cell_px: float,
                 path: str | Path, fps: float, ring: FrameRing | None = None) -> None:
        self._ring = ring
        # slots for the meshes queued and the one being drawn
        slots = shared_slots(12 * len(mean), QUEUE_FRAMES + 2)
        self._meshes = FrameRing((len(mean), 3), slots, np.float32) if slots else None
        try:
            self._stage = _Stage(_overlay_main, np.asarray(mean), np.asarray(triangles),
                                 float(max_cell_px), str(path), float(fps),
                                 rings=(ring, self._meshes))
        except BaseException:
            if self._meshes is not None:
                self._meshes.close()
            raise
        if ring is not None:
            ring.handed_on = True  # this worker frees the slots

    def submit(self, frame: np.ndarray, mesh_px: np.ndarray | None, scale: float,
               landmarks: np.ndarray | None) -> None:
        """Queue one frame (see `render_job`; the mesh goes as float32, as it is drawn)."""
        slot = None if self._ring is None else self._ring.slot_of(frame)
        mesh: Any = None
        if mesh_px is not None:
            mesh = None if self._meshes is None else self._meshes.put(mesh_px,
                                                                      self._stage.check)
            if mesh is None:  # no ring, or not the model's vertex count
                mesh = np.asarray(mesh_px, np.float32)
        self._stage.put((frame if slot is None else slot, mesh, scale, landmarks))

    def set_linear(self, neutral: np.ndarray, basis: np.ndarray | None = None) -> None:
        """The linear model's identity mesh (V, 3) and expression basis (3V, E; None: the
        one sent before) that `submit_linear` 's frames are drawn with (`LinearMesh`)."""
        self._stage.put(("linear", np.asarray(neutral),
                         None if basis is None else np.asarray(basis)))

    def submit_linear(self, frame: np.ndarray, expression: np.ndarray, pose: Any,
                      landmarks: np.ndarray | None) -> None:
        """Queue one frame with the `set_linear` mesh at ``expression`` and ``pose``, made
        in the worker (the main process's share of an overlay frame falls from the 53,215
        vertices' product, projection and copy to a few numbers)."""
        slot = None if self._ring is None else self._ring.slot_of(frame)
        self._stage.put((frame if slot is None else slot,
                         (np.asarray(expression), pose), pose.origin_scale()[0],
                         landmarks))

    def close(self) -> None:
        """Wait for every queued frame to be written and the file closed; raises the worker's
        exception if it failed."""
        try:
            self._stage.put(None)
            self._stage.get()
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop without finishing the file."""
        self._stage.abort()
        if self._meshes is not None:
            self._meshes.close()


# -- decoding and tracking ---------------------------------------------------------------


def _tracker_main(source: str, landmarks: str, model_kind: str, max_frames: int | None,
                  identity: tuple[int, int] | None, ring: Any, inbox: Any, outbox: Any
                  ) -> None:
    """Worker: with ``identity`` (every, total), first ("identity", faces): the first face
    (or None) of frames 0, every, 2 every, ... below total (`identity_faces`); then decode
    ``source`` and track its face, sending (frame, face, re-detected) per frame, then
    ("end", full detections). With ``ring`` (a `FrameRing`'s handle) a frame goes as the
    number of the slot it was copied to."""
    try:
        from facefit.detect.mediapipe import MediaPipeDetector
        from facefit.detect.network import landmark_detector
        from facefit.video import stream
        from facefit.video.track import FaceTracker

        detector = MediaPipeDetector()
        landmarker, used = landmark_detector(detector, landmarks, model_kind)
        if identity is not None:
            outbox.put(("identity", identity_faces(source, landmarker, *identity)))
        reader, info = stream.open_video(source)
        tracker = FaceTracker(detector, landmarks=landmarker if used != "mediapipe" else None)
        frames_out = None if ring is None else FrameRing.attach(ring)
        frames = stream.iter_frames(reader, info)
        try:
            for i, frame in enumerate(frames):
                if max_frames is not None and i >= max_frames:
                    break
                face, detected = tracker.update(frame)
                slot = None if frames_out is None else frames_out.put(frame)
                outbox.put(("frame", frame if slot is None else slot, face, detected))
        finally:
            frames.close()
        outbox.put(("end", tracker.detections))
    except BaseException as exc:  # noqa: BLE001 - passed to the main process
        _report(outbox, exc)


def identity_faces(source: str | Path, detector: Any, every: int, total: int
                   ) -> list[FaceLandmarks | None]:
    """The first face ``detector`` finds (None: none) in each of the frames 0, ``every``,
    2 ``every``, ... below ``total`` of the video file ``source``: the frames the clip's
    identity is fitted to (`facefit.video.identity.identity_of_faces`). The whole clip is
    decoded (a decoding error is raised as `facefit.video.stream.VideoError`)."""
    from facefit.video import stream

    reader, _ = stream.open_video(source, every=every)
    faces: list[FaceLandmarks | None] = []
    for k, frame in enumerate(stream.iter_frames(reader, every=every)):
        if k * every < total:
            found = detector.detect(np.ascontiguousarray(frame), max_faces=1)
            faces.append(found[0] if found else None)
    return faces


class TrackerProcess:
    """Frames of the video file ``source`` decoded and tracked (`FaceTracker` with a new
    `MediaPipeDetector` and the ``landmarks`` source for ``model_kind``, as `track_video`
    builds them) by a worker process, ahead of the caller by up to `LOOKAHEAD_BYTES` of
    frames of ``size`` (width, height).

    With ``identity`` (every, total) the worker first detects the faces the clip's
    identity is fitted to (`identity_faces`: the same detector, loaded once for both
    passes), which `identity_faces` returns and must be called for before `tracked`.

    Iterate `tracked` for (frame, face or None, re-detected) in frame order; `detections`
    is the tracker's count of full detections once the iteration has ended. A decoding
    error (`facefit.video.stream.VideoError`: truncated, corrupt) is raised by the
    iteration where the one-process loop raises it, after the frames before it."""

    def __init__(self, source: str | Path, landmarks: str, model_kind: str,
                 size: tuple[int, int], max_frames: int | None = None,
                 identity: tuple[int, int] | None = None) -> None:
        ahead = int(np.clip(LOOKAHEAD_BYTES // max(3 * size[0] * size[1], 1), QUEUE_FRAMES,
                            1024))
        # slots for the frames ahead, those queued for the overlay and those in hand (fewer
        # when shared memory is short: the tracker then waits for a free one sooner)
        slots = shared_slots(3 * size[0] * size[1], ahead + QUEUE_FRAMES + 4)
        self.ring = FrameRing((size[1], size[0], 3), slots) if slots else None
        try:
            self._stage = _Stage(_tracker_main, str(source), landmarks, model_kind,
                                 max_frames, identity, outbox_size=ahead, rings=(self.ring,))
        except BaseException:
            if self.ring is not None:
                self.ring.close()
            raise
        self._identity = identity is not None
        self.detections = 0

    def identity_faces(self) -> list[FaceLandmarks | None]:
        """The identity frames' faces (see `identity_faces`); raises the worker's exception
        (e.g. `facefit.video.stream.VideoError`) if it failed."""
        if not self._identity:
            raise RuntimeError("this TrackerProcess was started without identity frames")
        self._identity = False
        msg = self._stage.get()
        if msg[0] != "identity":
            raise RuntimeError(f"video worker: expected the identity faces, got {msg[0]!r}")
        return list(msg[1])

    def tracked(self) -> Iterator[tuple[np.ndarray, FaceLandmarks | None, bool]]:
        """(frame, face, re-detected) in frame order; a frame is a read-only view of
        `ring`, valid until the next is asked for (or, when an `OverlayProcess` takes the
        ring's frames, until it is submitted there)."""
        ring, held = self.ring, None
        try:
            while True:
                msg = self._stage.get()
                if held is not None:
                    ring.release(held)
                    held = None
                if msg[0] == "end":
                    self.detections = int(msg[1])
                    return
                frame = msg[1]
                if isinstance(frame, int) and ring is not None:
                    held = None if ring.handed_on else frame
                    frame = ring.view(frame)
                yield frame, msg[2], msg[3]
        finally:
            self._stage.abort()

    def abort(self) -> None:
        """Stop the worker (when the caller stops early)."""
        self._stage.abort()

    def close(self) -> None:
        """Stop the worker and free the shared frames (once nothing reads them: after the
        `OverlayProcess` given `ring` has ended)."""
        self._stage.abort()
        if self.ring is not None:
            self.ring.close()
