"""The binary glTF 2.0 container (GLB): one JSON chunk and one binary chunk, written atomically.

Every GLB writer of facefit (`facefit.io.export.write_glb`, the animated video mesh in
`facefit.io.animated_glb`, the ARKit morph-target clip in `facefit.io.arkit_export`) builds its glTF
JSON and binary buffer and hands both to `write_glb_file`.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from facefit.io.atomic import atomic_path


def write_glb_file(path: str | os.PathLike[str], gltf: dict[str, Any], views: list[dict],
                   accessors: list[dict], binary: bytes) -> Path:
    """Write ``gltf`` (without buffers, views and accessors) with its buffer views,
    accessors and one binary buffer as a GLB file at ``path`` (temporary name, then rename).
    ``binary`` must be 4-byte aligned as the views address it."""
    gltf["buffers"] = [{"byteLength": len(binary)}]
    gltf["bufferViews"] = views
    gltf["accessors"] = accessors
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + 8 + len(binary)))
        f.write(struct.pack("<I4s", len(js), b"JSON") + js)
        f.write(struct.pack("<I4s", len(binary), b"BIN\0") + binary)
    return Path(path)
