"""The binary glTF 2.0 container (GLB): one JSON chunk and one binary chunk, written atomically.

Every GLB writer of facefit (`facefit.io.export.write_glb`, the animated video mesh in
`facefit.io.animated_glb`, the ARKit morph-target clip in `facefit.io.arkit_export`) builds its glTF
JSON and binary buffer and hands both to `write_glb_file`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facefit.io.atomic import atomic_path


def write_glb_file(path: str | os.PathLike[str], gltf: dict[str, Any], views: list[dict],
                   accessors: list[dict], binary: bytes | Sequence[bytes | memoryview]
                   ) -> Path:
    """Write ``gltf`` (without buffers, views and accessors) with its buffer views,
    accessors and one binary buffer as a GLB file at ``path`` (temporary name, then rename).
    ``binary`` (one buffer, or its parts in order: written one after the other, never
    joined in memory) must be 4-byte aligned as the views address it."""
    parts = [binary] if isinstance(binary, bytes | bytearray | memoryview) else list(binary)
    size = sum(memoryview(p).nbytes for p in parts)
    gltf["buffers"] = [{"byteLength": size}]
    gltf["bufferViews"] = views
    gltf["accessors"] = accessors
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + 8 + size))
        f.write(struct.pack("<I4s", len(js), b"JSON") + js)
        f.write(struct.pack("<I4s", size, b"BIN\0"))
        for part in parts:
            f.write(part)
    return Path(path)
