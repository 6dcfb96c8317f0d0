"""Render a reconstructed face's textured mesh at given yaw angles with facefit's rasteriser
(orthographic, texture only, back faces culled), for looking at textures. Usage::

    python scripts/render_textured.py examples/astronaut.png --yaw 0 60 --out out/renders
    python scripts/render_textured.py examples/astronaut.png --topology OLD.npz --tag _old

``--topology`` swaps the default model's triangles and UVs for those of another topology
file (e.g. an older ``bfm3ddfa_topology.npz``) before fitting and texturing, for before/after
pictures.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np

from facefit.io.image import load_image
from facefit.reconstruct import Reconstructor
from facefit.render.shading import render_textured_view


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--yaw", type=float, nargs="+", default=[0.0, 60.0])
    parser.add_argument("--out", type=Path, default=Path("out/renders"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--topology", type=Path, default=None,
                        help="npz with triangles and uv replacing the default model's")
    args = parser.parse_args(argv)
    model = None
    if args.topology is not None:
        from facefit.model import load_default_model

        with np.load(args.topology) as z:
            model = dataclasses.replace(load_default_model(),
                                        triangles=z["triangles"].astype(np.int32),
                                        uv=z["uv"].astype(np.float32))
    rec = Reconstructor(model=model)
    face = rec.reconstruct(load_image(args.image), max_faces=1)[0]
    from facefit.io.export import export_vertices

    verts = export_vertices(rec.model, face.fit) @ np.asarray(face.fit.rotation, np.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    for yaw in args.yaw:
        img = render_textured_view(verts, rec.model.triangles, rec.model.uv, face.texture, yaw)
        path = args.out / f"{args.image.stem}{args.tag}_yaw{int(yaw)}.png"
        cv2.imwrite(str(path), img[..., ::-1])
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
