"""Reading and writing video with imageio and the ffmpeg binary that imageio-ffmpeg ships.

Frames are decoded one at a time (the reader is iterated, never turned into a list), so
memory does not grow with the clip's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class VideoError(RuntimeError):
    """A video or camera cannot be opened or written; the message is one line."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding: frame rate, size, frame estimate."""

    fps: float
    size: tuple[int, int]  # (width, height)
    frames: int | None  # estimated frame count (None for a camera)


def is_camera(source: str) -> bool:
    """Whether ``source`` names a camera (``"0"``, ``"1"``...) rather than a file."""
    return source.isdigit()


def open_video(source: str | Path) -> tuple[Any, VideoInfo]:
    """An imageio reader for a file or a camera index, and its `VideoInfo`."""
    import imageio.v2 as iio

    src = str(source)
    try:
        if is_camera(src):
            reader = iio.get_reader(f"<video{int(src)}>", "ffmpeg")
        else:
            if not Path(src).is_file():
                raise VideoError(f"{src}: no such file")
            reader = iio.get_reader(src, "ffmpeg")
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
    frames = None if is_camera(src) or not dur else max(1, round(float(dur) * fps))
    return reader, VideoInfo(fps, (size[0], size[1]), frames)


def iter_frames(reader: Any) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of an imageio reader, one at a time."""
    try:
        for frame in reader:
            yield np.asarray(frame)[..., :3]
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
