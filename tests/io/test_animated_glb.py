"""The animated GLB (and the per-image GLB): structure, and the Khronos validator, which
`.ci/run` installs (found through ``NODE_PATH`` or npm's global folder)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from real_clients import gltf_validator, validate_glb

from facefit.fit.camera import rotation_from_euler
from facefit.io.animated_glb import AnimatedGlb, Skeleton

VALIDATOR = gltf_validator()


def _glb(tmp_path: Path, frames: int, skinned: bool = False) -> Path:
    verts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 5]], np.float32)
    tri = np.array([[0, 1, 2], [1, 3, 2]])
    targets = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    skeleton = None
    if skinned:  # root, neck, jaw, two eyes (FLAME's tree), random weights
        w = np.random.default_rng(1).random((4, 5))
        skeleton = Skeleton(np.random.default_rng(2).normal(size=(5, 3)) * 10,
                            np.array([-1, 0, 1, 1, 1]), w / w.sum(1, keepdims=True))
    g = AnimatedGlb(verts, tri, targets, 2.0, (64, 48), skeleton)
    for i in range(frames):
        jaw = np.zeros((5, 3))
        jaw[2, 0] = 0.05 * i
        g.add(i / 25, rotation_from_euler(3.0 * i, 0, 0), 2.0 + 0.1 * i,
              np.array([32.0 + i, 24.0]), np.array([0.1 * i, -0.2]), jaw if skinned else None)
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


needs_validator = pytest.mark.skipif(
    VALIDATOR is None, reason="Khronos glTF validator not installed (.ci/run installs it: "
    "npm install gltf-validator@2.0.0-dev.3.10, with NODE_PATH pointing at its node_modules)")


@needs_validator
@pytest.mark.parametrize("skinned", [False, True])
@pytest.mark.parametrize("frames", [0, 1, 7])
def test_animated_glb_validates(tmp_path: Path, frames: int, skinned: bool) -> None:
    errors, report = validate_glb(_glb(tmp_path, frames, skinned))
    assert errors == 0, report


def test_skinned_glb_structure(tmp_path: Path) -> None:
    data = _glb(tmp_path, 3, skinned=True).read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20:20 + n])
    skin = gltf["skins"][0]
    assert skin["joints"] == [2, 3, 4, 5, 6] and gltf["nodes"][0]["skin"] == 0
    assert gltf["nodes"][1]["children"] == [2] and gltf["nodes"][3]["children"] == [4, 5, 6]
    targets = {(c["target"]["node"], c["target"]["path"])
               for c in gltf["animations"][0]["channels"]}
    assert {(1, "rotation"), (1, "translation"), (1, "scale"), (0, "weights"),
            (4, "rotation")} <= targets  # the head node moves, the jaw (node 4) turns
    assert set(gltf["scenes"][0]["nodes"]) == {0, 1}


@needs_validator
def test_image_glb_validates(tmp_path: Path) -> None:
    from facefit.io.export import write_glb

    verts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 5]], np.float32)
    tri = np.array([[0, 1, 2], [1, 3, 2]])
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    texture = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    for fmt in ("png", "jpeg"):
        errors, report = validate_glb(write_glb(tmp_path / f"x_{fmt}.glb", verts, tri, uv,
                                                texture, image_format=fmt))
        assert errors == 0, report
