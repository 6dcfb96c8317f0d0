"""Video: jitter and accuracy of smoothing on a synthetic moving face, speed on a 640x480
clip, and memory on a long clip.

Run: ``taskset -c 0 python benchmarks/video.py [--jitter] [--speed] [--memory MINUTES]``
(no flag: all three, memory on a 10-minute clip).

1. Jitter: a known head moving smoothly (sinusoids) seen through noisy landmarks (1.5 px
   per landmark plus a 1 px shift common to the frame); identity from a joint fit of 10
   frames, pose + expression per frame. Mean landmark acceleration |x[t+1]-2x[t]+x[t-1]|
   and mean error to the noiseless truth, raw and smoothed (constant-velocity Kalman), for
   a talking head (amplitude 0.3) and a sweeping head (amplitude 1).
2. Speed: the 224x224 shared clip scaled 1.5x and padded to 640x480, looped to 250 frames
   and written to /tmp; decode + track + fit (landmark fitting with tracking; the tracker
   `facefit video` uses: MediaPipe's points, facefit's network per ``--landmarks auto``),
   then the full command (plus overlay rendering, JSON lines, GLB), on whatever cores the
   process may use (run under ``taskset -c 0`` for one core; on more than one the command
   decodes + tracks and renders + encodes the overlay in worker processes,
   `facefit.video.workers`), and the command again as its own process (``python -m
   facefit.cli video``: interpreter start-up and imports included, as a user runs it).
   Frames per second by wall time and by CPU time (the process, its workers and their
   ffmpeg processes: what the wall time would be on one idle core).
3. Memory: the same 640x480 frames looped to MINUTES minutes at 25 fps, produced by a
   generator (never stored), through the streaming loop with JSON lines and the animated
   GLB written (no overlay: at 10 fps it would take 25 minutes; ``--memory-overlay`` renders
   and discards it); RSS sampled every simulated minute and the peak (ru_maxrss).
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

SHARED = Path("/work/shared/data/videos/QoT0S2vu9m4_00002.mp4")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def padded_frames() -> list[np.ndarray]:
    """The shared clip's frames, scaled 1.5x and centred on a 640x480 canvas (55 frames)."""
    from facefit.video.stream import iter_frames, open_video

    reader, _ = open_video(SHARED)
    out = []
    for f in iter_frames(reader):
        big = cv2.resize(f, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)
        canvas = np.zeros((480, 640, 3), np.uint8)
        y, x = (480 - big.shape[0]) // 2, (640 - big.shape[1]) // 2
        canvas[y:y + big.shape[0], x:x + big.shape[1]] = big
        out.append(canvas)
    return out


def looped(frames: list[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """``n`` frames going back and forth through ``frames`` (no jump at the loop)."""
    cycle = frames + frames[-2:0:-1]
    return itertools.islice(itertools.cycle(cycle), n)


def jitter() -> None:
    from facefit.model import load_default_model
    from facefit.video.evaluate import run_synthetic_video

    model = load_default_model()
    print("\n## Jitter (synthetic, 150 frames at 25 fps, mean of 3 seeds)\n")
    print("| motion | truth accel (px) | input accel / error (px) | raw fit accel / error (px) "
          "| smoothed accel / error (px) |")
    print("|---|---|---|---|---|")
    for amp, name in ((0.3, "talking head (x0.3)"), (1.0, "sweeping head (x1)")):
        r = [run_synthetic_video(model, 150, seed=s, amplitude=amp) for s in range(3)]
        m = {k: np.mean([x[k] for x in r]) for k in r[0]}
        print(f"| {name} | {m['truth_accel_px']:.3f} | {m['input_accel_px']:.3f} / "
              f"{m['input_error_px']:.3f} | {m['raw_accel_px']:.3f} / {m['raw_error_px']:.3f} "
              f"| {m['smoothed_accel_px']:.3f} / {m['smoothed_error_px']:.3f} |")


def speed(n_frames: int = 250) -> None:
    from threadpoolctl import threadpool_limits

    from facefit.cli import main as cli
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.detect.network import landmark_detector
    from facefit.model import load_default_model
    from facefit.video.pipeline import process_frames
    from facefit.video.stream import VideoWriter, iter_frames, open_video
    from facefit.video.track import FaceTracker

    tmp = Path(tempfile.gettempdir()) / "facefit_bench"
    tmp.mkdir(exist_ok=True)
    clip = tmp / "clip_640x480.mp4"
    w = VideoWriter(clip, 25.0)
    for f in looped(padded_frames(), n_frames):
        w.write(f)
    w.close()
    model = load_default_model()
    print(f"\n## Speed ({n_frames} frames of 640x480, cores allowed: "
          f"{len(os.sched_getaffinity(0))})\n")
    shape = np.zeros(model.num_shape, np.float32)
    mp = MediaPipeDetector()
    # the tracker `facefit video` uses: MediaPipe's points, the network per `--landmarks auto`
    landmarker, used = landmark_detector(mp, "auto", model.kind)
    for overlay in (False, True):
        reader, info = open_video(clip)
        sink = (lambda img: None) if overlay else None
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        with threadpool_limits(1, user_api="blas"):  # as the CLI runs (`facefit.cli.main`)
            st = process_frames(iter_frames(reader), info.fps, model, shape,
                                FaceTracker(mp, landmarks=landmarker if used != "mediapipe"
                                            else None), overlay=sink)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0 + _children_cpu() - k0  # + the ffmpeg decoder
        s = st.seconds
        print(f"- {'with overlay rendering' if overlay else 'landmark fitting with tracking'}: "
              f"{st.frames / wall:.1f} fps wall, {st.frames / cpu:.1f} fps by CPU time "
              f"({1e3 * cpu / st.frames:.1f} ms a frame; wall per frame: decode "
              f"{1e3 * s['decode'] / st.frames:.1f} ms, track {1e3 * s['track'] / st.frames:.1f}"
              f" ms, fit {1e3 * s['fit'] / st.frames:.1f} ms, overlay/write "
              f"{1e3 * s['write'] / st.frames:.1f} ms; {st.detections} full detections)")
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    rc = cli(["video", str(clip), "-o", str(tmp / "out"), "-q"])
    wall = time.perf_counter() - t0
    main_cpu = time.process_time() - c0  # the main process: identity fit, fit, writers
    cpu = main_cpu + _children_cpu() - k0  # + workers, ffmpeg processes
    from facefit.video.workers import cores_available

    how = ("one process" if cores_available() < 2 else
           "tracking and overlay in worker processes")
    print(f"- full `facefit video` (identity pass, overlay mp4, JSON lines, GLB; model and "
          f"detector loading included; {how}): {n_frames / wall:.1f} fps wall, {wall:.1f} s; "
          f"{n_frames / cpu:.1f} fps by CPU time ({cpu:.1f} s of it, its workers and their "
          f"ffmpeg processes; {main_cpu:.1f} s of it in the main process); exit {rc}")
    # the command as a user runs it: its own process (interpreter start-up and imports
    # included; workers forked from a process that has run no native thread pool, where the
    # line above spawns them: this process has run OpenCV, MediaPipe and ONNX Runtime)
    import subprocess
    import sys

    t0, k0 = time.perf_counter(), _children_cpu()
    rc = subprocess.run([sys.executable, "-m", "facefit.cli", "video", str(clip), "-o",
                         str(tmp / "out_process"), "-q"], check=False).returncode
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - k0
    print(f"- `python -m facefit.cli video` as its own process (start-up and imports "
          f"included): {n_frames / wall:.1f} fps wall, {wall:.1f} s; {n_frames / cpu:.1f} fps "
          f"by CPU time ({cpu:.1f} s: the process, its workers and their ffmpeg processes); "
          f"exit {rc}")


def _children_cpu() -> float:
    """User + system seconds of the finished child processes (the ffmpeg decoders and
    encoder)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def memory(minutes: float, overlay: bool = False) -> None:
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.model import load_default_model
    from facefit.video.pipeline import process_frames
    from facefit.video.track import FaceTracker

    model = load_default_model()
    n = int(minutes * 60 * 25)
    tmp = Path(tempfile.gettempdir()) / "facefit_bench"
    tmp.mkdir(exist_ok=True)
    samples: list[tuple[int, float]] = []

    def progress(i: int) -> None:
        if (i + 1) % 1500 == 0 or i == 99:
            samples.append((i + 1, _rss_mb()))

    base = _rss_mb()
    t0 = time.perf_counter()
    st = process_frames(looped(padded_frames(), n), 25.0, model,
                        np.zeros(model.num_shape, np.float32), FaceTracker(MediaPipeDetector()),
                        jsonl_path=tmp / "long.jsonl",
                        overlay=(lambda img: None) if overlay else None,
                        glb_path=tmp / "long.glb", progress=progress)
    wall = time.perf_counter() - t0
    print(f"\n## Memory ({minutes:g} min at 25 fps = {n} frames of 640x480, generator input, "
          f"overlay {'rendered' if overlay else 'off'})\n")
    print(f"- RSS before the loop {base:.0f} MB; at frame: "
          + ", ".join(f"{i}: {mb:.0f} MB" for i, mb in samples))
    mb = {k: os.path.getsize(tmp / f"long.{k}") / 2**20 for k in ("jsonl", "glb")}
    print(f"- peak RSS (ru_maxrss) {_peak_mb():.0f} MB; {st.frames} frames in {wall:.0f} s "
          f"({st.frames / wall:.1f} fps); JSON lines {mb['jsonl']:.0f} MB, GLB {mb['glb']:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jitter", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--memory", type=float, default=None, metavar="MINUTES")
    ap.add_argument("--memory-overlay", action="store_true",
                    help="render (and discard) overlay frames in the memory run")
    args = ap.parse_args()
    everything = not (args.jitter or args.speed or args.memory)
    if args.jitter or everything:
        jitter()
    if args.speed or everything:
        speed()
    if args.memory or everything:
        memory(args.memory or 10.0, args.memory_overlay)


if __name__ == "__main__":
    main()
