"""The animated GLB: structure, and the Khronos validator when it is installed."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from facefit.fit.camera import rotation_from_euler
from facefit.video.glb import AnimatedGlb

VALIDATOR = Path("/tmp/gv/node_modules/gltf-validator")


def _glb(tmp_path: Path, frames: int) -> Path:
    verts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 5]], np.float32)
    tri = np.array([[0, 1, 2], [1, 3, 2]])
    targets = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    g = AnimatedGlb(verts, tri, targets, 2.0, (64, 48))
    for i in range(frames):
        g.add(i / 25, rotation_from_euler(3.0 * i, 0, 0), 2.0 + 0.1 * i,
              np.array([32.0 + i, 24.0]), np.array([0.1 * i, -0.2]))
    return g.write(tmp_path / "a.glb")


def test_animated_glb_structure(tmp_path: Path) -> None:
    data = _glb(tmp_path, 5).read_bytes()
    magic, version, total = struct.unpack("<4sII", data[:12])
    assert (magic, version, total) == (b"glTF", 2, len(data))
    n = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20:20 + n])
    assert len(gltf["meshes"][0]["primitives"][0]["targets"]) == 2
    anim = gltf["animations"][0]
    assert {c["target"]["path"] for c in anim["channels"]} == {
        "rotation", "translation", "scale", "weights"}
    weights = gltf["accessors"][anim["samplers"][3]["output"]]
    assert weights["count"] == 5 * 2


@pytest.mark.skipif(not VALIDATOR.is_dir() or shutil.which("node") is None,
                    reason="Khronos glTF validator not installed")
@pytest.mark.parametrize("frames", [0, 1, 7])
def test_animated_glb_validates(tmp_path: Path, frames: int) -> None:
    path = _glb(tmp_path, frames)
    js = (f"require('{VALIDATOR}').validateBytes(new Uint8Array(require('fs')"
          f".readFileSync('{path}'))).then(r=>console.log(r.issues.numErrors))")
    out = subprocess.run(["node", "-e", js], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0", out.stdout + out.stderr
