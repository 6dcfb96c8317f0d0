"""Profiled training shards: one ``.npz`` per 300-W source face, written atomically.

Each shard holds ``K`` views (crops of `crop_view`) of one face made by
`facefit.regress.profiling.synthesise_view`: target yaw uniform in [-max_yaw, max_yaw], pitch
and roll jitter, a left-right mirror with probability 1/2 and a small crop jitter, all drawn
from ``numpy.random.default_rng([seed, index])`` so a shard is the same whatever order or
process makes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefit.fit.camera import euler_from_rotation
from facefit.io.atomic import atomic_path
from facefit.model.morphable_model import MorphableModel
from facefit.regress.profiling import (
    crop_view,
    fit_crop,
    mirror_view,
    read_300w_face,
    synthesise_view,
)

SHARD_KEYS = ("images", "pose8", "shape", "expression", "landmarks_68", "yaw_deg")


def profile_face(model: MorphableModel, jpg: str | Path, index: int, views: int = 20,
                 seed: int = 0, size: int = 120, max_yaw: float = 90.0,
                 jitter_deg: float = 12.0) -> dict[str, np.ndarray]:
    """``views`` profiled crops of one 300-W face and their labels (arrays of `SHARD_KEYS`)."""
    rng = np.random.default_rng([seed, index])
    image, pts = read_300w_face(jpg)
    fit = fit_crop(model, image, pts)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in SHARD_KEYS}
    for _ in range(views):
        yaw = rng.uniform(-max_yaw, max_yaw) - fit.yaw_deg
        pitch, roll = rng.normal(0.0, jitter_deg / 2, 2).clip(-jitter_deg, jitter_deg)
        v = synthesise_view(model, image, fit, yaw, pitch, roll)
        v = crop_view(v, size, shift=tuple(rng.uniform(-0.05, 0.05, 2)),
                      zoom=float(rng.uniform(0.92, 1.08)))
        if rng.random() < 0.5:
            v = mirror_view(model, v)
        rows["images"].append(v.image)
        rows["pose8"].append(v.pose8)
        rows["shape"].append(v.shape)
        rows["expression"].append(v.expression)
        rows["landmarks_68"].append(v.landmarks_68)
        rows["yaw_deg"].append(np.float32(euler_from_rotation(v.rotation)[0]))
    return {k: np.stack(vals) for k, vals in rows.items()}


def write_shard(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write a shard atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def read_shard(path: str | Path) -> dict[str, np.ndarray]:
    """Read a shard; a clear error naming the file if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in SHARD_KEYS}
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a profiled shard ({e})") from e
    return out
