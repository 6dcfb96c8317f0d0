"""`facefit.video.workers`: ``facefit video`` with decoding + tracking and overlay rendering
+ encoding in worker processes writes the same files as one process, in frame order, and
passes a worker's failure on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    from facefit.video.stream import VideoWriter

    w = VideoWriter(path, 25.0)
    for f in frames:
        w.write(f)
    w.close()
    return path


def _decoded(path: Path) -> np.ndarray:
    from facefit.video.stream import iter_frames, open_video

    reader, info = open_video(path)
    return np.stack(list(iter_frames(reader, info)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((256, 256)))
    return _write(tmp_path_factory.mktemp("clip") / "moving.mp4",
                  [np.roll(img, (i, 2 * i), axis=(0, 1)) for i in range(12)])


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_worker_processes_write_the_files_of_one_process(clip: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Every output (JSON lines, overlay mp4, GLBs, CSV, page) byte for byte the same with
    and without the worker processes (forked or spawned; frames and meshes in shared
    memory, or through the queues where there is none), and the same counts."""
    from facefit.model import load_default_model
    from facefit.video import workers
    from facefit.video.pipeline import track_video

    model = load_default_model()
    runs = {par: track_video(clip, tmp_path / str(par), model, identity_frames=3,
                             parallel=par) for par in (False, True)}
    for method in ("fork", "spawn"):
        monkeypatch.setattr(workers, "START_METHOD", method)
        runs[method] = track_video(clip, tmp_path / method, model, identity_frames=3,
                                   parallel=True)
    monkeypatch.setattr(workers, "SHM_DIR", str(tmp_path / "no_shm"))  # statvfs fails
    runs["queues"] = track_video(clip, tmp_path / "queues", model, identity_frames=3,
                                 parallel=True)
    (serial, files) = runs[False]
    for run in (True, "fork", "spawn", "queues"):
        st = runs[run][0]
        assert (st.frames, st.faces, st.detections) == (
            serial.frames, serial.faces, serial.detections) == (12, 12, 1)
    names = sorted(p.name for p in (tmp_path / "False").iterdir())
    assert files.overlay is not None and files.overlay.name in names and len(names) == 6
    for run in ("True", "fork", "spawn", "queues"):
        assert names == sorted(p.name for p in (tmp_path / run).iterdir())
        for name in names:
            assert (tmp_path / run / name).read_bytes() == (tmp_path / "False" / name
                                                            ).read_bytes(), (run, name)


def test_overlay_process_writes_frames_in_order(tmp_path: Path) -> None:
    """Frames without a mesh go through unchanged and in the order submitted: the file
    decodes to the same frames as one written in this process."""
    from facefit.model import load_default_model
    from facefit.video.workers import OverlayProcess

    rng = np.random.default_rng(0)
    frames = [np.full((48, 64, 3), 10 + 20 * i, np.uint8) for i in range(12)]
    for f in frames:
        f[8:24, 8:40] = rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)
    model = load_default_model()
    proc = OverlayProcess(model.mean, model.triangles, 3.0, tmp_path / "w.mp4", 25.0)
    for f in frames:
        proc.submit(f, None, 1.0, None)
    proc.close()
    got = _decoded(tmp_path / "w.mp4")
    want = _decoded(_write(tmp_path / "here.mp4", frames))
    assert got.shape == (12, 48, 64, 3)
    np.testing.assert_array_equal(got, want)
    assert np.all(np.diff(got[:, 40:, 50:].mean(axis=(1, 2, 3))) > 15)  # in order


def test_overlay_worker_failure_is_raised_here(tmp_path: Path) -> None:
    """A worker's exception (here: a mesh whose vertices the triangles index past) is raised
    in the main process instead of hanging or being lost."""
    from facefit.model import load_default_model
    from facefit.video.workers import OverlayProcess

    model = load_default_model()
    proc = OverlayProcess(model.mean, model.triangles, 3.0, tmp_path / "w.mp4", 25.0)
    bad = np.zeros((3, 3), np.float32)
    with pytest.raises(IndexError):
        for _ in range(40):  # more than the queue holds: submit sees the failure too
            proc.submit(np.zeros((48, 64, 3), np.uint8), bad, 1.0, None)
        proc.close()
    proc.abort()
    assert not proc._stage.process.is_alive()


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_truncated_clip_fails_in_the_tracking_worker(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A truncated file (a Matroska clip cut short: fewer frames than its duration says)
    decoded in the tracking worker: exit 1, one line, nothing written, as in one process."""
    from facefit.video.pipeline import track_video
    from facefit.video.stream import VideoError

    img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((128, 128)))
    whole = _write(tmp_path / "whole.mkv", [np.roll(img, 3 * i, axis=1) for i in range(40)])
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    errors = {}
    for par in (False, True):
        with pytest.raises(VideoError) as exc:
            track_video(cut, tmp_path / f"out{par}", identity_frames=2, parallel=par)
        errors[par] = str(exc.value)
        assert list((tmp_path / f"out{par}").iterdir()) == []
    assert errors[True] == errors[False]
    assert "truncated or corrupt video" in errors[True] and errors[True].endswith(
        "(stopped: no results written for this clip)")


def test_frame_ring_hands_arrays_over_by_slot() -> None:
    """`FrameRing`: an array copied into a free slot reads back in place (read-only, from
    another mapping too), its slot is found from the view alone, and a released slot takes
    the next array; other shapes are left to the queue (None)."""
    from facefit.video.workers import FrameRing

    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 255, (4, 5, 3), dtype=np.uint8) for _ in range(3))
    ring = FrameRing((4, 5, 3), 2)
    other = FrameRing.attach(ring.handle())
    try:
        s0, s1 = ring.put(a), ring.put(b)
        assert sorted((s0, s1)) == [0, 1]  # type: ignore[type-var]
        view = ring.view(s0)  # type: ignore[arg-type]
        np.testing.assert_array_equal(view, a)
        np.testing.assert_array_equal(other.view(s1), b)  # type: ignore[arg-type]
        assert not view.flags.writeable
        assert ring.slot_of(view) == s0 and ring.slot_of(ring.view(s1)) == s1  # type: ignore[arg-type]
        assert ring.slot_of(a) is None and ring.slot_of(view[1:]) is None
        assert ring.put(np.zeros((5, 4, 3), np.uint8)) is None
        ring.release(s1)  # type: ignore[arg-type]
        assert ring.put(c) == s1
        np.testing.assert_array_equal(other.view(s1), c)  # type: ignore[arg-type]
        meshes = FrameRing((7, 3), 1, np.float32)
        x = rng.normal(size=(7, 3)) * 1e3
        np.testing.assert_array_equal(meshes.view(meshes.put(x)), x.astype(np.float32))  # type: ignore[arg-type]
        meshes.close()
    finally:
        other.close()
        ring.close()


def test_shared_slots_fit_the_shared_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """A ring holds what half the free shared memory holds, at most what is wanted, and is
    not made (0) when that is under ``least`` or there is no shared memory."""
    import os

    from facefit.video import workers

    monkeypatch.setattr(workers, "SHM_DIR", str(tmp_path))
    st = os.statvfs(tmp_path)
    half = st.f_bavail * st.f_frsize // 2
    assert workers.shared_slots(1, 10) == 10
    assert workers.shared_slots(half // 5, 10) == 5
    assert workers.shared_slots(half // 3, 10) == 0  # under least=4
    assert workers.shared_slots(half // 3, 10, least=2) == 3
    monkeypatch.setattr(workers, "SHM_DIR", str(tmp_path / "missing"))
    assert workers.shared_slots(1, 10) == 0


def test_linear_mesh_is_the_projected_expression_mesh() -> None:
    """`LinearMesh.at` (what the overlay worker draws for a linear model): the identity mesh
    plus the expression offsets, projected, as an independent per-vertex sum computes it;
    with a float32 basis bit for bit the product numpy casts for each call (the cast is
    only made once)."""
    from facefit.fit.core.camera import ScaledOrthographicCamera
    from facefit.fit.core.rotation import rodrigues
    from facefit.video.workers import LinearMesh

    rng = np.random.default_rng(3)
    v, e = 500, 7
    neutral = rng.normal(0, 50, (v, 3)).astype(np.float32)
    basis = rng.normal(0, 1, (v, 3, e)).astype(np.float32)
    expr = rng.normal(0, 1, e)
    pose = ScaledOrthographicCamera(rodrigues(np.array([0.1, 0.6, -0.05]))[0], 1.7,
                                    np.array([320.0, 240.0]))
    mesh = LinearMesh(neutral, basis.reshape(-1, e))
    got = mesh.at(expr, pose)
    assert got.shape == (v, 3) and got.dtype == np.float64
    moved = neutral.astype(np.float64) + (basis.astype(np.float64) * expr).sum(2)
    view = moved @ pose.rotation.T
    want = np.column_stack([1.7 * view[:, 0] + 320.0, -1.7 * view[:, 1] + 240.0,
                            -1.7 * view[:, 2]])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    xy, depth = pose.project(neutral + (basis.reshape(-1, e) @ expr).reshape(-1, 3))
    assert np.array_equal(got, np.column_stack([xy, depth]))
    assert np.array_equal(mesh.at(expr, pose), got)  # the cached cast again


def test_start_method_forks_only_without_new_native_threads(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Workers are forked (on Linux) while no native thread has started since the module
    was imported, spawned once one has (a pool a forked child would inherit without its
    threads); `START_METHOD` overrides the choice."""
    import sys

    from facefit.video import workers

    monkeypatch.setattr(workers, "START_METHOD", None)
    native = workers._native_threads()
    monkeypatch.setattr(workers, "_NATIVE_AT_IMPORT", native)
    assert workers.start_method() == ("fork" if sys.platform == "linux" else "spawn")
    monkeypatch.setattr(workers, "_NATIVE_AT_IMPORT", native - 1)  # one started since
    assert workers.start_method() == "spawn"
    monkeypatch.setattr(workers, "START_METHOD", "fork")
    assert workers.start_method() == "fork"
