"""Texture quality checks on real photos: isolated outlier texels and UV utilisation.

An outlier texel differs from the median of its 3x3 neighbourhood by more than 60/255 in
some channel; it is counted among the face texels (those covered by the UV layout, away
from the layout's outer border by one texel). UV utilisation is the fraction of the texture
square covered by UV triangles. Usage::

    python scripts/texture_checks.py examples/astronaut.png ../shared/data/helen-test --limit 20

Fits are cached in ``--cache`` (image path -> fitted vertices), so that texture changes can
be re-measured without re-running detection and fitting.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import numpy as np

from facefit.io.image import load_image
from facefit.model import load_default_model
from facefit.texture.extract import extract_texture, uv_texels

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


def fitted_vertices(paths: list[Path], cache: Path) -> list[tuple[Path, np.ndarray]]:
    """(image, verts_px) of the first face of each image (fits cached by path)."""
    from facefit.reconstruct import Reconstructor

    cache.mkdir(parents=True, exist_ok=True)
    rec = None
    out = []
    for p in paths:
        key = cache / (hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:16] + ".npy")
        if not key.is_file():
            rec = rec or Reconstructor(texture_size=0)
            faces = rec.reconstruct(load_image(p), max_faces=1)
            if not faces:
                continue
            np.save(key, faces[0].fit.verts_px)
        out.append((p, np.load(key)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=20, help="images per folder")
    parser.add_argument("--size", type=int, default=512)
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
    model = load_default_model()
    texels = uv_texels(model, args.size)
    covered = np.zeros(args.size * args.size, bool)
    covered[texels.index] = True
    covered = covered.reshape(args.size, args.size)
    print(f"UV utilisation: {100 * uv_utilisation(model.uv, model.triangles):.1f} %  "
          f"(covered texels {100 * covered.mean():.1f} %)")
    fracs = []
    for path, verts in fitted_vertices(paths, args.cache):
        texture, _ = extract_texture(model, verts, load_image(path), size=args.size)
        frac, count = outlier_fraction(texture, covered)
        fracs.append(frac)
        print(f"{path.name:>24s}: outlier texels {100 * frac:.3f} % ({count})")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.save / (path.stem + "_texture.png")), texture[..., ::-1])
    print(f"images {len(fracs)}: outlier texels mean {100 * np.mean(fracs):.3f} %, "
          f"max {100 * np.max(fracs):.3f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
