"""Live Link Face-style CSV of ARKit weights per video frame (`facefit.io.arkit_export`)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from facefit.fit.core.rotation import rotation_from_euler
from facefit.io.arkit_export import (
    LIVE_LINK_ORDER,
    csv_header,
    timecode,
    write_live_link_csv,
)
from facefit.io.records import face_record, pose_record
from facefit.io.schemas import SCHEMA_VERSION
from facefit.model.arkit import ARKIT_52


def test_columns_and_timecode():
    assert sorted(LIVE_LINK_ORDER) == sorted(ARKIT_52) and len(LIVE_LINK_ORDER) == 52
    cols = csv_header().split(",")
    assert len(cols) == 2 + 52 + 9 and cols[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"]
    assert cols[-9:-6] == ["HeadYaw", "HeadPitch", "HeadRoll"] and "TongueOut" in cols
    assert timecode(0, 30) == "00:00:00:00.000"
    assert timecode(59, 30) == "00:00:01:29.000"
    assert timecode(30 * 3661 + 7, 29.97) == "01:01:01:07.000"


def test_csv_one_row_per_frame(tmp_path):
    head = {"schema_version": SCHEMA_VERSION, "model": {"name": "m", "licence": None},
            "fps": 25.0, "width": 8, "height": 8, "shape_coeffs": [], "identity": "clip"}

    def face(yaw, pitch, roll, **more):
        pose = pose_record(rotation_from_euler(yaw, pitch, roll), 1.0, [0.0, 0.0])
        return [face_record([0, 0, 1, 1], 1.0, pose, np.zeros((68, 2)), [], 0.0, **more)]

    frames = [{"frame": 0, "time_s": 0.0, "faces": []},
              {"frame": 1, "time_s": 0.04, "faces": face(
                  30.0, -10.0, 0.0, arkit_blendshapes={"jawOpen": 0.75, "eyeBlinkRight": 1.0})},
              {"frame": 2, "time_s": 0.08, "faces": face(0.0, 0.0, 5.0)}]
    src = tmp_path / "clip.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [head, *frames]) + "\n")
    out = write_live_link_csv(src)
    assert out == tmp_path / "clip.csv"
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    assert [r["Timecode"] for r in rows] == ["00:00:00:00.000", "00:00:00:01.000",
                                             "00:00:00:02.000"]
    assert all(r["BlendShapeCount"] == "61" for r in rows)
    assert float(rows[1]["JawOpen"]) == 0.75 and float(rows[1]["EyeBlinkRight"]) == 1.0
    assert float(rows[1]["HeadYaw"]) == pytest.approx(math.radians(30), abs=1e-4)
    assert float(rows[1]["HeadPitch"]) == pytest.approx(math.radians(-10), abs=1e-4)
    assert float(rows[0]["JawOpen"]) == 0.0 and float(rows[0]["HeadYaw"]) == 0.0
    assert float(rows[2]["HeadRoll"]) == pytest.approx(math.radians(5), abs=1e-4)
    assert float(rows[2]["JawOpen"]) == 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"frame": 0}\n')
    with pytest.raises(ValueError, match="bad.jsonl: not a facefit video"):
        write_live_link_csv(bad)
    assert not (tmp_path / "bad.csv").exists()


def _read_glb(path):
    import struct

    import numpy as np

    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    jlen, _ = struct.unpack_from("<I4s", data, 12)
    gltf = json.loads(data[20:20 + jlen])
    blen, kind = struct.unpack_from("<I4s", data, 20 + jlen)
    assert kind == b"BIN\0"
    binary = data[28 + jlen:28 + jlen + blen]

    def view(i, dtype, width):
        v = gltf["bufferViews"][i]
        raw = binary[v["byteOffset"]:v["byteOffset"] + v["byteLength"]]
        return np.frombuffer(raw, dtype).reshape(-1, width) if width > 1 else np.frombuffer(
            raw, dtype)

    def dense(acc_id, n):
        acc = gltf["accessors"][acc_id]
        out = np.zeros((n, 3), np.float32)
        if "sparse" in acc:
            sp = acc["sparse"]
            out[view(sp["indices"]["bufferView"], np.uint32, 1)] = view(
                sp["values"]["bufferView"], np.float32, 3)
        return out

    return gltf, view, dense


def test_arkit_glb_targets_and_animation(tmp_path):
    import numpy as np

    from facefit.io.arkit_export import SPARSE_MM, write_arkit_glb

    rng = np.random.default_rng(0)
    verts = rng.normal(0, 50, (30, 3)).astype(np.float32)
    tri = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7]], np.uint32)
    targets = np.zeros((30, 3, 52), np.float32)
    targets[:10, :, ARKIT_52.index("jawOpen")] = rng.normal(0, 5, (10, 3))
    targets[3, 1, ARKIT_52.index("eyeBlinkLeft")] = -4.0
    targets[4, 0, ARKIT_52.index("eyeBlinkLeft")] = SPARSE_MM / 10  # below the threshold
    times = np.array([0.0, 0.04, 0.08])
    weights = np.zeros((3, 52), np.float32)
    weights[:, ARKIT_52.index("jawOpen")] = [0.0, 0.5, 1.0]
    rots = np.stack([np.eye(3)] * 3)
    path = write_arkit_glb(tmp_path / "a.glb", verts, tri, targets, times, weights, rots)
    gltf, view, dense = _read_glb(path)
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == list(ARKIT_52)
    prim = mesh["primitives"][0]
    assert len(prim["targets"]) == 52
    jaw = dense(prim["targets"][ARKIT_52.index("jawOpen")]["POSITION"], 30)
    np.testing.assert_array_equal(jaw, targets[:, :, ARKIT_52.index("jawOpen")])
    blink = dense(prim["targets"][ARKIT_52.index("eyeBlinkLeft")]["POSITION"], 30)
    assert blink[3, 1] == -4.0 and blink[4, 0] == 0.0
    acc = gltf["accessors"][prim["targets"][ARKIT_52.index("tongueOut")]["POSITION"]]
    assert "sparse" not in acc and "bufferView" not in acc  # all zeros
    anim = gltf["animations"][0]
    assert {c["target"]["path"] for c in anim["channels"]} == {"weights", "rotation"}
    out_w = gltf["accessors"][anim["samplers"][0]["output"]]
    w = view(out_w["bufferView"], np.float32, 1).reshape(3, 52)
    np.testing.assert_allclose(w[:, ARKIT_52.index("jawOpen")], [0.0, 0.5, 1.0])
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from real_clients import gltf_validator, validate_glb

    if gltf_validator() is None:
        pytest.skip("Khronos glTF validator not installed")
    errors, report = validate_glb(path)
    assert errors == 0, report[:2000]


def test_video_arkit_glb_for_the_default_model(tmp_path):
    """The default model's clip GLB: its mesh with the transferred ARKit targets."""
    import numpy as np

    from facefit.io.arkit_export import arkit_targets, write_video_arkit_glb
    from facefit.model import load_default_model

    model = load_default_model()
    targets = arkit_targets(model)
    assert targets.shape == (model.num_vertices, 3, 52)
    jaw = targets[:, :, ARKIT_52.index("jawOpen")]
    chin = int(model.landmark_ids["ibug68"][8])
    assert jaw[chin, 1] < -15 and np.abs(targets[:, :, ARKIT_52.index("tongueOut")]).max() == 0
    head = {"schema_version": SCHEMA_VERSION, "model": {"name": model.name, "licence": None},
            "fps": 25.0, "shape_coeffs": [0.0] * model.num_shape}
    pose = pose_record(np.eye(3), 1.0, [0.0, 0.0])
    frames = [{"frame": i, "time_s": i / 25, "faces": [face_record(
        [0, 0, 1, 1], 1.0, pose, np.zeros((68, 2)), [], 0.0,
        arkit_blendshapes={"jawOpen": i / 4})]} for i in range(5)]
    src = tmp_path / "clip.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [head, *frames]) + "\n")
    path = write_video_arkit_glb(src, model)
    assert path == tmp_path / "clip_arkit.glb" and path.stat().st_size < 30_000_000
    gltf, view, _ = _read_glb(path)
    anim = gltf["animations"][0]
    w = view(gltf["accessors"][anim["samplers"][0]["output"]]["bufferView"], np.float32, 1)
    np.testing.assert_allclose(w.reshape(5, 52)[:, ARKIT_52.index("jawOpen")],
                               [0, 0.25, 0.5, 0.75, 1.0])


def test_arkit_targets_are_the_transferred_shapes():
    """Each ARKit target of the default model is its transferred ICT shape on every vertex
    (`transfer_offsets` of the stored ones), a split pair (``browInnerUp_L``/``_R``) their
    sum; each target contiguous in memory (the GLB writes them one by one)."""
    import numpy as np

    from facefit.io.arkit_export import arkit_targets
    from facefit.model import load_default_model
    from facefit.model.arkit import default_transfer, transfer_offsets

    model = load_default_model()
    tr = default_transfer()
    targets = arkit_targets(model)
    ids = np.arange(0, model.num_vertices, 97)
    moved = transfer_offsets(model.mean[tr.vertex_ids].astype(np.float64), tr.offsets,
                             model.mean[ids].astype(np.float64))
    jaw = tr.names.index("jawOpen")
    np.testing.assert_allclose(targets[ids, :, ARKIT_52.index("jawOpen")], moved[:, :, jaw],
                               rtol=1e-6, atol=1e-6)
    pair = moved[:, :, tr.names.index("browInnerUp_L")] + moved[:, :, tr.names.index(
        "browInnerUp_R")]
    np.testing.assert_allclose(targets[ids, :, ARKIT_52.index("browInnerUp")], pair,
                               rtol=1e-6, atol=1e-6)
    assert np.moveaxis(targets, 2, 0).flags.c_contiguous
