"""A fake pipeline for batch tests: a Reconstructor that finds one face per image (none in
images whose name contains "noface", an error for "boom") after ``DELAY`` seconds, and an
exporter that writes one small file per face and format, then the image's JSON."""

from __future__ import annotations

import importlib
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

from facefit.io.atomic import write_text_atomic

DELAY = 0.0


class Face:
    def __init__(self, mean: float) -> None:
        self.mean = mean


class FakeReconstructor:
    def __init__(self, **kwargs: object) -> None:
        self.model = "fake-model"

    def reconstruct(self, image_rgb: np.ndarray, max_faces: int = 8,
                    focal_px: float | None = None) -> list[Face]:
        time.sleep(DELAY)
        value = float(image_rgb.mean())
        if value == 13.0:
            raise RuntimeError("boom")
        if value == 14.0:  # an exception that cannot travel back from a worker process
            exc = RuntimeError("unpicklable")
            exc.payload = lambda: None  # type: ignore[attr-defined]
            raise exc
        return [] if value == 0.0 else [Face(value)]


def fake_export(out_dir, image_path, image_rgb, recons, model, formats,
                timings_ms_extra=None, name=None) -> Path:
    stem = name or Path(image_path).stem
    for k in range(len(recons)):
        for fmt in formats:
            if fmt != "json":
                write_text_atomic(Path(out_dir) / f"{stem}_face{k}.{fmt}", f"{image_path}\n")
    return write_text_atomic(Path(out_dir) / f"{stem}.json", json.dumps(
        {"image": str(image_path), "faces": [{"mean": f.mean} for f in recons]}))


def install(setattr_, setitem) -> None:
    """Install the fakes with ``monkeypatch.setattr``/``setitem`` (or plain functions)."""
    api = importlib.import_module("facefit.reconstruct")
    setattr_(api, "Reconstructor", FakeReconstructor)
    mod = types.ModuleType("facefit.io.export")
    mod.FORMATS = ("obj", "ply", "glb", "npz", "overlay", "json")
    mod.DEFAULT_FORMATS = ("json", "glb", "overlay")
    mod.NPZ_FIELDS = ("shape_coeffs",)
    mod.needs_texture = lambda formats: bool({"obj", "ply", "glb"} & set(formats))
    mod.export_reconstructions = fake_export
    setitem(sys.modules, "facefit.io.export", mod)


def make_images(folder: Path, values: list[int], names: list[str] | None = None) -> list[Path]:
    """Small PNGs of constant grey ``values`` (0: no face, 13 and 14: reconstruction errors,
    14 with an exception that does not pickle)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, v in enumerate(values):
        p = folder / (names[i] if names else f"img{i:04d}.png")
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), v, np.uint8)).save(p)
        out.append(p)
    return out
