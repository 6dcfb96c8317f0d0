"""Video through the model's kind: a FLAME clip keeps jaw skinning frame by frame (the
per-frame fit, the identity fit, the landmarks written and the overlay mesh use FLAME's
skinned vertices and Jacobian, not its linear form)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scripted_tracker import ScriptedTracker

from facefit.fit.camera import rotation_from_euler
from facefit.fit.multi_image import ViewPoints
from facefit.model.io_flame import FlameModel, flame_from_model, linear_blend_skinning
from facefit.video.fitter import FrameFitter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from test_flame_fit import EXPR, SHAPE, make_flame  # noqa: E402

FRAME_BOX = (0, 0, 640, 480)  # the synthetic frames' face box
JAWS = np.linspace(0.0, 0.35, 8)  # radians: the mouth opens over the clip
YAWS = np.linspace(-10.0, 10.0, 8)


def flame_with_vertex_landmarks() -> tuple[FlameModel, np.ndarray]:
    base = make_flame("full").model
    lm68 = base.triangles[base.extras["lmk_faces"], 0].astype(np.int64)
    return flame_from_model(dataclasses.replace(base, landmark_ids={"ibug68": lm68})), lm68


def posed(flame: FlameModel, jaw: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(view-frame vertices (V, 3) mm, image points (V, 2) px) of the true face."""
    pose = np.zeros((5, 3))
    pose[2, 0] = jaw
    m = flame.model
    verts = linear_blend_skinning(m.vertices(SHAPE, EXPR), pose, flame.posedirs,
                                  flame.j_regressor, flame.weights, flame.parents)
    v = verts.astype(np.float64) @ rotation_from_euler(yaw, 3.0, 0.0).T
    return v, np.column_stack([2.5 * v[:, 0] + 320.0, -2.5 * v[:, 1] + 240.0])


def view(px: np.ndarray, ids: np.ndarray) -> ViewPoints:
    return ViewPoints(px[ids], ids, np.ones(len(ids)), 0.5)


@pytest.mark.parametrize("kind", ["flame", "linear"])
def test_frame_fitter_recovers_the_opening_jaw(kind: str) -> None:
    flame, lm68 = flame_with_vertex_landmarks()
    model = dataclasses.replace(flame.model, kind=kind)  # same arrays, fitted as `kind`
    fitter = FrameFitter(model, SHAPE)
    errors = []
    for i, (jaw, yaw) in enumerate(zip(JAWS, YAWS, strict=True)):
        truth, px = posed(flame, jaw, yaw)
        fit = fitter.fit(view(px, lm68), i / 25)
        v = fitter.vertices(fit.raw_params) @ fit.raw_pose.rotation.T
        errors.append(np.abs(v - v.mean(0) - (truth - truth.mean(0))).max())
    if kind == "flame":
        assert fit.raw_params.joints[2, 0] == pytest.approx(0.35, abs=5e-3)
        assert max(errors) < 0.5  # mm, every frame
    else:  # the linearised model cannot open the jaw: what the kind dispatch fixes
        assert fit.raw_params.joints is None and errors[-1] > 5.0


def test_process_frames_writes_skinned_landmarks(tmp_path: Path, monkeypatch) -> None:
    from facefit.video import pipeline

    flame, lm68 = flame_with_vertex_landmarks()
    clip = [posed(flame, jaw, yaw)[1] for jaw, yaw in zip(JAWS, YAWS, strict=True)]

    # the synthetic grid's outline is no face silhouette: landmarks on their vertices only
    monkeypatch.setattr(pipeline, "view_from_face", lambda model, face, sigma: view(
        np.zeros((flame.model.num_vertices, 2)) + _scatter(face.points_px, lm68,
                                                           flame.model.num_vertices), lm68))
    frames = (np.zeros((480, 640, 3), np.uint8) for _ in clip)
    stats = pipeline.process_frames(frames, 25.0, flame.model, np.asarray(SHAPE, np.float32),
                                    ScriptedTracker([px[lm68] for px in clip], box=FRAME_BOX),
                                    jsonl_path=tmp_path / "clip.jsonl",
                                    glb_path=tmp_path / "clip.glb", smooth=False)
    assert stats.faces == len(clip)
    lines = [json.loads(s) for s in (tmp_path / "clip.jsonl").read_text().splitlines()]
    written = [np.asarray(found) for found in _find(lines, "landmarks_68_2d")]
    assert len(written) == len(clip)
    # the written landmarks are the skinned fit's: on the observed ones, jaw open or not
    worst = max(np.abs(w - px[lm68]).max() for w, px in zip(written, clip, strict=True))
    assert worst < 0.2
    assert (tmp_path / "clip.glb").stat().st_size > 0


def _scatter(points: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, 2))
    out[ids] = points
    return out


def _find(value: object, key: str) -> list[object]:
    """Every value of ``key`` in nested JSON (whatever the record layout)."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == key] + [
            x for k, v in value.items() if k != key for x in _find(v, key)]
    if isinstance(value, list):
        return [x for v in value for x in _find(v, key)]
    return []


def _read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    n = int(np.frombuffer(data[12:16], np.uint32)[0])
    return json.loads(data[20:20 + n]), data[28 + n:]


def _accessor(gltf: dict, binary: bytes, i: int) -> np.ndarray:
    acc = gltf["accessors"][i]
    view = gltf["bufferViews"][acc["bufferView"]]
    dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}[acc["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc["type"]]
    raw = binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
    return np.frombuffer(raw, dtype).reshape(acc["count"], width)


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(q).as_matrix()


def test_animated_glb_skins_the_jaw(tmp_path: Path, monkeypatch) -> None:
    """The GLB of a FLAME clip carries FLAME's joints as a glTF skin: evaluating its last
    frame (morph targets, then linear blend skinning by the animated joint rotations) gives
    the fitted, jaw-open face."""
    from facefit.video import pipeline

    flame, lm68 = flame_with_vertex_landmarks()
    clip = [posed(flame, jaw, yaw)[1] for jaw, yaw in zip(JAWS, YAWS, strict=True)]
    views = [view(px, lm68) for px in clip]
    it = iter(views)
    monkeypatch.setattr(pipeline, "view_from_face", lambda model, face, sigma: next(it))

    frames = (np.zeros((480, 640, 3), np.uint8) for _ in clip)
    pipeline.process_frames(frames, 25.0, flame.model, np.asarray(SHAPE, np.float32),
                            ScriptedTracker(np.zeros((68, 2)), box=FRAME_BOX),
                            glb_path=tmp_path / "clip.glb", smooth=False)
    fitter = FrameFitter(flame.model, SHAPE)  # the same fits, for reference
    fits = [fitter.fit(v, i / 25.0) for i, v in enumerate(views)]
    want = fitter.vertices(fits[-1].params)

    gltf, binary = _read_glb(tmp_path / "clip.glb")
    prim = gltf["meshes"][0]["primitives"][0]
    rest = _accessor(gltf, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    targets = np.stack([_accessor(gltf, binary, t["POSITION"]) for t in prim["targets"]], 2)
    channels = {(c["target"]["node"], c["target"]["path"]): gltf["animations"][0]["samplers"][
        c["sampler"]]["output"] for c in gltf["animations"][0]["channels"]}
    weights = _accessor(gltf, binary, channels[(0, "weights")]).reshape(len(clip), -1)[-1]
    morphed = rest + targets @ weights
    skin = gltf["skins"][0]
    ibm = _accessor(gltf, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4)
    nodes = gltf["nodes"]
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
    glob: dict[int, np.ndarray] = {}

    def world(i: int) -> np.ndarray:  # joint transforms below the head node (model frame)
        if i == 1:
            return np.eye(4)
        if i not in glob:
            local = np.eye(4)
            local[:3, 3] = nodes[i]["translation"]
            q = _accessor(gltf, binary, channels[(i, "rotation")])[-1]
            local[:3, :3] = _quat_matrix(q)
            glob[i] = world(parent[i]) @ local
        return glob[i]

    mats = np.stack([world(j) @ ibm[k].T for k, j in enumerate(skin["joints"])])
    jid = _accessor(gltf, binary, prim["attributes"]["JOINTS_0"]).astype(int)
    jw = _accessor(gltf, binary, prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    blend = np.einsum("vk,vkab->vab", jw, mats[jid])
    skinned = np.einsum("vab,vb->va", blend[:, :3, :3], morphed) + blend[:, :3, 3]
    assert fits[-1].params.joints[2, 0] == pytest.approx(0.35, abs=5e-3)
    assert np.abs(morphed - want).max() > 5.0  # mm: without the skin the mouth stays shut
    assert np.abs(skinned - want).max() < 1.0  # FLAME's pose correctives are left out
