"""Render textured GLB files (as ``facefit reconstruct --formats glb`` writes them) at given
yaw angles with facefit's rasteriser (orthographic, texture only, back faces culled) into
one picture: a row per file, a column per angle. It reads the GLB's own positions, indices,
TEXCOORD_0 and embedded image, so what it shows is what a glTF viewer gets. Usage::

    python scripts/render_glb_views.py out/ict/astronaut_face0.glb --yaw 0 60 \\
        --out docs/texture_ict.png
"""

from __future__ import annotations

import argparse
import io
import json
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facefit.render.shading import render_textured_view

_TYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(positions (V, 3), triangles (F, 3), uv (V, 2) with v up, texture (T, T, 3) uint8)
    of the first primitive of a GLB file with an embedded base-colour image."""
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + length])
    binary = data[20 + length + 8:]

    def accessor(k: int) -> np.ndarray:
        acc = gltf["accessors"][k]
        view = gltf["bufferViews"][acc["bufferView"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        n = acc["count"] * _WIDTH[acc["type"]]
        dtype = _TYPES[acc["componentType"]]
        return np.frombuffer(binary, dtype, n, start).reshape(acc["count"], -1)

    prim = gltf["meshes"][0]["primitives"][0]
    pos = accessor(prim["attributes"]["POSITION"]).astype(np.float32)
    tri = accessor(prim["indices"]).reshape(-1, 3).astype(np.int64)
    uv = accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.float32)
    view = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
    start = view.get("byteOffset", 0)
    image = Image.open(io.BytesIO(binary[start:start + view["byteLength"]])).convert("RGB")
    return pos, tri, np.c_[uv[:, 0], 1.0 - uv[:, 1]], np.asarray(image)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("glb", type=Path, nargs="+")
    parser.add_argument("--yaw", type=float, nargs="+", default=[0.0, 60.0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--texture", action="store_true",
                        help="add the texture itself as the last column")
    parser.add_argument("--out", type=Path, default=Path("out/glb_views.png"))
    args = parser.parse_args(argv)
    rows = []
    for path in args.glb:
        pos, tri, uv, tex = read_glb(path)
        row = [render_textured_view(pos, tri, uv, tex, yaw, args.size) for yaw in args.yaw]
        if args.texture:
            row.append(cv2.resize(tex, (args.size, args.size), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows)[..., ::-1])
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
