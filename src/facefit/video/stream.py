"""Reading and writing video with imageio and the ffmpeg binary that imageio-ffmpeg ships.

Frames are decoded one at a time (the reader is iterated, never turned into a list), so
memory does not grow with the clip's length. A clip whose frames are larger than the pixel
limit (`facefit.io.image.pixel_limit`, ``--max-pixels``) is refused before decoding, and a
clip that ends early (a truncated file: fewer frames than its duration and frame rate
announce, or a decoder failure mid-stream) raises `VideoError` when iteration reaches its
end, so that a caller never mistakes part of a clip for all of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facefit.io.image import pixel_limit, too_large


class VideoError(RuntimeError):
    """A video or camera cannot be opened, read to its end or written; the message is one
    line, ``"SOURCE: problem"``."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding: frame rate, size, frame estimate."""

    fps: float
    size: tuple[int, int]  # (width, height)
    frames: int | None  # estimated frame count (None for a camera)


def is_camera(source: str) -> bool:
    """Whether ``source`` names a camera (``"0"``, ``"1"``...) rather than a file."""
    return source.isdigit()


def open_video(source: str | Path, max_pixels: int | None = None, every: int = 1
               ) -> tuple[Any, VideoInfo]:
    """An imageio reader for a file or a camera index, and its `VideoInfo`.

    Frames larger than ``max_pixels`` (default `facefit.io.image.pixel_limit`) are refused
    with a `VideoError` before any frame is decoded. With ``every`` > 1 (files only) the
    reader yields frames 0, ``every``, 2 ``every``, ... (ffmpeg's ``select`` filter: the others
    are decoded but neither converted to RGB nor piped, about half the cost of reading them;
    iterate it with `iter_frames` and the same ``every``); the `VideoInfo` is the whole clip's."""
    import imageio.v2 as iio

    src = str(source)
    try:
        if is_camera(src):
            reader = iio.get_reader(f"<video{int(src)}>", "ffmpeg")
        else:
            if not Path(src).is_file():
                raise VideoError(f"{src}: no such file")
            sampled = (["-vf", f"select=not(mod(n\\,{int(every)}))", "-fps_mode", "passthrough"]
                       if every > 1 else None)
            reader = iio.get_reader(src, "ffmpeg", output_params=sampled)
    except VideoError:
        raise
    except Exception as exc:
        if is_camera(src):
            raise VideoError(f"camera {src}: not available (no working camera found)") from None
        detail = " ".join(str(exc).split("=== stderr ===")[0].split())[:200]
        raise VideoError(f"{src}: cannot decode ({detail})") from None
    meta = reader.get_meta_data()
    fps = float(meta.get("fps") or 25.0)
    size = tuple(int(v) for v in meta.get("size", (0, 0)))
    dur = meta.get("duration")
    frames = _expected_frames(dur, fps) if not is_camera(src) else None
    problem = too_large(size[0], size[1], pixel_limit(max_pixels), "frames")
    if problem:
        reader.close()
        raise VideoError(f"{src}: {problem}")
    return reader, VideoInfo(fps, (size[0], size[1]), frames)


def _expected_frames(duration: object, fps: float) -> int | None:
    try:
        d = float(duration)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return max(1, round(d * fps)) if math.isfinite(d) and d > 0 else None


def _source(reader: Any) -> str:
    request = getattr(reader, "request", None)
    return str(getattr(request, "filename", None) or getattr(request, "raw_uri", "video"))


def missing_frames_allowed(expected: int) -> int:
    """How many frames fewer than ``duration x fps`` still count as the whole clip: the
    estimate is off by a frame or two at the ends, and by a few percent for variable frame
    rates."""
    return max(2, math.ceil(0.03 * expected))


def iter_frames(reader: Any, info: VideoInfo | None = None, every: int = 1
                ) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of an imageio reader, one at a time.

    When the reader is exhausted, a clip with fewer frames than announced (``info.frames``,
    else the reader's duration x fps; minus `missing_frames_allowed`) raises `VideoError`
    ``"SOURCE: truncated or corrupt video: read N of M frames"``; a decoder failure
    mid-stream raises ``"SOURCE: truncated or corrupt video data at frame N (...)"``.
    Stopping early (closing the generator) is not an error. ``every``: the reader's sampling
    (`open_video`): frame numbers in messages count the clip's frames, and the frame count is
    not checked (the pass over every frame does that)."""
    source = _source(reader)
    if every > 1:
        expected = None
    elif info is not None:
        expected = info.frames
    else:
        try:
            meta = reader.get_meta_data()
            expected = _expected_frames(meta.get("duration"), float(meta.get("fps") or 25.0))
        except Exception:  # a camera, or a reader without metadata
            expected = None
        if source.startswith("<video"):
            expected = None
    n = 0
    try:
        try:
            for frame in reader:
                yield np.asarray(frame)[..., :3]
                n += 1
        except (RuntimeError, OSError, ValueError, IndexError, EOFError) as exc:
            if isinstance(exc, VideoError):
                raise
            detail = " ".join(str(exc).split("=== stderr ===")[0].split())[:160]
            raise VideoError(f"{source}: truncated or corrupt video data at frame {n * every}"
                             f"{f' ({detail})' if detail else ''}") from None
        if expected is not None and n < expected - missing_frames_allowed(expected):
            raise VideoError(f"{source}: truncated or corrupt video: read {n} of {expected} "
                             "frames")
    finally:
        reader.close()


class VideoWriter:
    """H.264 (libx264, yuv420p) writer; odd frame sizes are padded by one pixel."""

    def __init__(self, path: str | Path, fps: float) -> None:
        import imageio.v2 as iio

        self.path = Path(path)
        self._w = iio.get_writer(str(self.path), format="FFMPEG", fps=fps, codec="libx264",
                                 pixelformat="yuv420p", macro_block_size=1, quality=None,
                                 output_params=["-crf", "23", "-preset", "veryfast"])

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._w.append_data(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._w.close()
