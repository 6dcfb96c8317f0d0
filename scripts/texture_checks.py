"""Texture quality checks on real photos: isolated outlier texels, UV utilisation, time.

An outlier texel differs from the median of its 3x3 neighbourhood by more than 60/255 in
some channel; it is counted among the face texels: those covered by the UV layout, away
from the layout's border by one texel (for a model with a ``face`` region, such as ICT,
only the texels of that region's triangles). UV utilisation is the fraction of the texture
square covered by UV triangles (all of them, and the face region's). The photo is cropped
to the face as `facefit.reconstruct.Reconstructor` does (``crop_to_face``: larger faces are
shrunk to twice the texture side) unless ``--no-crop``. Usage::

    python scripts/texture_checks.py examples/astronaut.png ../shared/data/helen-test --limit 20
    python scripts/texture_checks.py --model ict examples/astronaut.png ../shared/data/helen-test

Fits are cached in ``--cache`` (model, image path -> fitted vertices), so that texture
changes can be re-measured without re-running detection and fitting.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import cv2
import numpy as np

from facefit.io.image import load_image
from facefit.model.morphable_model import MorphableModel
from facefit.model.named import load_named_model
from facefit.texture.extract import extract_texture, texel_footprint, uv_texels

THRESHOLD = 60


def uv_utilisation(uv: np.ndarray, triangles: np.ndarray) -> float:
    """Summed UV area of the triangles over the unit square (overlaps counted twice)."""
    a, b, c = (uv[triangles[:, i]] for i in range(3))
    return float(0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                              - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])).sum())


def outlier_fraction(texture: np.ndarray, covered: np.ndarray) -> tuple[float, int]:
    """Fraction and count of covered texels (eroded by one) that differ from their 3x3
    median by more than THRESHOLD in some channel."""
    med = cv2.medianBlur(texture, 3)
    diff = np.abs(texture.astype(np.int16) - med.astype(np.int16)).max(-1)
    inner = cv2.erode(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    bad = (diff > THRESHOLD) & inner
    return float(bad.sum() / max(inner.sum(), 1)), int(bad.sum())


def face_triangles(model: MorphableModel) -> np.ndarray:
    """(F,) bool: triangles whose vertices all lie in the model's ``face`` region (all
    triangles when it has none)."""
    face = model.extras.get("region_face")
    tri = np.asarray(model.triangles)
    if face is None:
        return np.ones(len(tri), bool)
    return np.isin(tri, np.asarray(face)).all(1)


def face_texels(model: MorphableModel, size: int) -> np.ndarray:
    """(size, size) bool: texels covered by the face region's triangles."""
    texels = uv_texels(model, size)
    keep = face_triangles(model).take(texels.triangle_id)
    covered = np.zeros(size * size, bool)
    covered[texels.index[keep]] = True
    return covered.reshape(size, size)


def fitted_vertices(paths: list[Path], cache: Path, model: MorphableModel, tag: str
                    ) -> list[tuple[Path, np.ndarray]]:
    """(image, verts_px) of the first face of each image (fits cached by model and path)."""
    from facefit.reconstruct import Reconstructor

    cache.mkdir(parents=True, exist_ok=True)
    rec = None
    out = []
    for p in paths:
        name = ("" if tag == "default" else tag + ":") + str(p.resolve())
        key = cache / (hashlib.sha1(name.encode()).hexdigest()[:16] + ".npy")
        if not key.is_file():
            rec = rec or Reconstructor(model=model, texture_size=0)
            faces = rec.reconstruct(load_image(p), max_faces=1)
            if not faces:
                continue
            np.save(key, faces[0].fit.verts_px)
        out.append((p, np.load(key)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--model", default="default", help="model name or file (default, ict)")
    parser.add_argument("--limit", type=int, default=20, help="images per folder")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-crop", action="store_true",
                        help="sample the whole photo (not the Reconstructor's face crop)")
    parser.add_argument("--cache", type=Path, default=Path("out/texture_checks"))
    parser.add_argument("--save", type=Path, default=None, help="write the textures here")
    args = parser.parse_args(argv)
    paths = []
    for item in args.inputs:
        if item.is_dir():
            paths += sorted(item.glob("*.jpg"))[: args.limit] + sorted(item.glob("*.png"))[
                : args.limit]
        else:
            paths.append(item)
    model = load_named_model(args.model)
    texels = uv_texels(model, args.size)
    layout = texels.layout
    covered = face_texels(model, args.size)
    face = face_triangles(model)
    print(f"UV utilisation: {100 * uv_utilisation(layout.uv, layout.triangle_uv):.1f} % "
          f"(face region {100 * uv_utilisation(layout.uv, layout.triangle_uv[face]):.1f} %, "
          f"face texels {100 * covered.mean():.1f} %)")
    from facefit.reconstruct import crop_to_face
    from facefit.render.shading import triangle_cross

    fracs, times = [], []
    for path, verts in fitted_vertices(paths, args.cache, model, args.model):
        image = load_image(path)
        if not args.no_crop:
            image, verts = crop_to_face(image, verts, max_side=2 * args.size)
        t0 = time.perf_counter()
        texture, _ = extract_texture(model, verts, image, size=args.size)
        times.append(time.perf_counter() - t0)
        frac, count = outlier_fraction(texture, covered)
        fracs.append(frac)
        foot = texel_footprint(triangle_cross(verts, model.triangles), texels)
        print(f"{path.name:>24s}: outlier texels {100 * frac:.3f} % ({count}), "
              f"texel footprint {foot:.2f} px, {1e3 * times[-1]:.0f} ms")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.save / (path.stem + "_texture.png")), texture[..., ::-1])
    print(f"images {len(fracs)}: outlier texels mean {100 * np.mean(fracs):.3f} %, "
          f"max {100 * np.max(fracs):.3f} %, images over 0.05 %: "
          f"{int((np.asarray(fracs) > 5e-4).sum())}; extract_texture median "
          f"{1e3 * np.median(times):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
