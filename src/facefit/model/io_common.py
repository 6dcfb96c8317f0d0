"""What every model reader shares: `ModelFileError`, `PathLike` and the helpers that complete
a file's topology. A leaf of the ``facefit.model`` readers: `facefit.model.load` dispatches to
the ``io_*`` readers, which import from here, never from ``load``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from facefit.io.safe_pickle import PickleDataError
from facefit.model.topology import build_face_topology, mirror_vertex_ids

PathLike = str | os.PathLike[str]


class ModelFileError(ValueError):
    """A model file is unreadable, truncated or lacks a key; ``str()`` is one line."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


T = TypeVar("T")


def read_model_file(read: Callable[..., T], path: Path, **options: object) -> T:
    """``read(path, **options)`` (a `facefit.io.safe_pickle` reader) with a refused pickle or
    an unreadable file raised as a one-line `ModelFileError` naming ``path``."""
    try:
        return read(path, **options)
    except PickleDataError as exc:
        raise ModelFileError(path, str(exc)) from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot read file ({exc.strerror or exc})") from None


def flat_to_vertices(flat: np.ndarray) -> np.ndarray:
    """(3V,) interleaved xyz -> (V, 3); (3V, K) -> (V, 3, K)."""
    a = np.asarray(flat)
    if a.ndim == 1:
        return a.reshape(-1, 3)
    if a.ndim == 2:
        return a.reshape(-1, 3, a.shape[1])
    raise ValueError(f"expected a (3V,) or (3V, K) array, got {a.shape}")


def complete_topology(
    points: np.ndarray,
    triangles: np.ndarray | None,
    uv: np.ndarray | None,
    mirror_ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Fill in missing triangles, UVs and mirror ids for ``points`` (V, 3) with
    `facefit.model.topology` (`build_face_topology`, `mirror_vertex_ids`). Returns
    ``(triangles, uv, mirror_ids, notes)`` where ``notes`` names what was made up."""
    if not np.isfinite(points).all():
        raise ValueError("vertex positions are not finite (NaN or infinity)")
    notes: list[str] = []
    if triangles is None or uv is None:
        tri_b, uv_b = build_face_topology(np.asarray(points, np.float32))
        if triangles is None:
            triangles = tri_b
            notes.append("triangles generated")
        if uv is None:
            uv = uv_b
            notes.append("UVs generated")
    if mirror_ids is None:
        mirror_ids = mirror_vertex_ids(np.asarray(points, np.float32))
        notes.append("mirror map generated")
    return (np.asarray(triangles, np.int32), np.asarray(uv, np.float32),
            np.asarray(mirror_ids, np.int64), notes)
