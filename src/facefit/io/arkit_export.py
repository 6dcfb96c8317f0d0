"""Animation exports of ARKit blendshape weights: a Live Link Face-style CSV per video and a
GLB with the 52 ARKit blendshapes as named morph targets (animated for a video).

The CSV has the layout Epic's Live Link Face app records (and animation tools such as
Unreal's Live Link Face importer and Blender add-ons read): a header ``Timecode,
BlendShapeCount, <52 ARKit names, capitalised, in ARKit's order>, HeadYaw, HeadPitch,
HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll``,
then one row per video frame: timecode ``HH:MM:SS:FF.mmm`` (frame FF of the second at the
clip's rate, mmm the sub-frame fraction, always 000 here), the count 61, the weights in
[0, 1] and the head angles in radians (facefit's convention, `README` "pose"; eye angles are
not estimated and written as 0). Frames without a face get zeros.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facefit.io.atomic import write_text_atomic
from facefit.io.glb import write_glb_file
from facefit.io.records import first_face, read_video_jsonl

if TYPE_CHECKING:
    from facefit.model.morphable_model import MorphableModel

LIVE_LINK_ORDER = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawRight", "jawLeft", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight",
    "mouthLeft", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
"""The 52 ARKit blendshapes in ``ARFaceAnchor`` / Live Link Face column order."""

HEAD_EYE_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                    "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")


def csv_header() -> str:
    """The CSV's header line (no newline)."""
    names = [n[0].upper() + n[1:] for n in LIVE_LINK_ORDER]
    return ",".join(["Timecode", "BlendShapeCount", *names, *HEAD_EYE_COLUMNS])


def timecode(frame: int, fps: float) -> str:
    """SMPTE-style ``HH:MM:SS:FF.mmm`` of frame ``frame`` (0-based) of a clip at ``fps``."""
    rate = max(int(round(fps)), 1)
    seconds, ff = divmod(int(frame), rate)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.000"


def live_link_rows(records: list[dict], fps: float) -> list[str]:
    """One CSV row per frame record of a video's JSON lines (`facefit.video.pipeline`)."""
    count = len(LIVE_LINK_ORDER) + len(HEAD_EYE_COLUMNS)
    rows = []
    for rec in records:
        face = first_face(rec) or {}
        weights = face.get("arkit_blendshapes") or {}
        values = [float(weights.get(n, 0.0)) for n in LIVE_LINK_ORDER]
        pose = face.get("pose", {})
        head = [math.radians(float(pose.get(k) or 0.0)) for k in ("yaw_deg", "pitch_deg",
                                                                  "roll_deg")]
        cells = [timecode(int(rec["frame"]), fps), str(count)]
        cells += [f"{v:.4f}" for v in values + head + [0.0] * 6]
        rows.append(",".join(cells))
    return rows


def write_live_link_csv(jsonl_path: str | os.PathLike[str],
                        csv_path: str | os.PathLike[str] | None = None) -> Path:
    """Write the Live Link Face-style CSV of a video's JSON lines (default: same stem,
    ``.csv``), atomically; returns its path."""
    src = Path(jsonl_path)
    head, frames = read_video_jsonl(src)
    out = src.with_suffix(".csv") if csv_path is None else Path(csv_path)
    text = "\n".join([csv_header(), *live_link_rows(frames, float(head["fps"]))]) + "\n"
    return write_text_atomic(out, text)



# --------------------------------------------------------------------------- GLB morph targets

_FLOAT, _UINT = 5126, 5125
_ARRAY, _ELEMENTS = 34962, 34963
SPARSE_MM = 0.05  # target displacements below this (mm) are left out (sparse accessors)


def arkit_targets(model: MorphableModel) -> np.ndarray | None:
    """(V, 3, 52) float32 displacements (mm, weight 1) of the 52 ARKit blendshapes
    (`facefit.model.arkit.ARKIT_52` order) on every vertex of ``model``: an ICT model's
    blendshapes (split shapes such as ``browInnerUp_L``/``_R`` summed), or the shipped
    transfer expanded from its stored vertices to all vertices (inverse-distance mean of the 4
    nearest on the mean face, `facefit.model.arkit.transfer_offsets`: smooth, so lip and lid
    edges are softened); None for other models."""
    from facefit.model.arkit import (
        ARKIT_52,
        arkit_name,
        default_transfer,
        transfer_offsets,
    )
    from facefit.model.ict import ict_from_model

    ict = ict_from_model(model)
    if ict is not None:
        names, offsets = ict.expression_names, model.expression_basis
    else:
        tr = default_transfer()
        if tr is None or not tr.matches(model):
            return None
        names = tr.names
        offsets = transfer_offsets(model.mean[tr.vertex_ids].astype(np.float64), tr.offsets,
                                   model.mean.astype(np.float64))
    # built target by target (each one contiguous, as the GLB stores them), the (V, 3, 52)
    # result a view of it: strided (V, 3) slices took 0.25 s of adds and as much again in
    # `write_arkit_glb`
    out = np.zeros((len(ARKIT_52), model.num_vertices, 3), np.float32)
    col = {a: i for i, a in enumerate(ARKIT_52)}
    for k, n in enumerate(names):
        a = arkit_name(n)
        if a is not None:
            out[col[a]] += offsets[:, :, k]
    return out.transpose(1, 2, 0)


def write_arkit_glb(path: str | os.PathLike[str], vertices: np.ndarray, triangles: np.ndarray,
                    targets: np.ndarray, times: np.ndarray | None = None,
                    weights: np.ndarray | None = None,
                    rotations: np.ndarray | None = None) -> Path:
    """Binary glTF 2.0 of a mesh (mm, model frame) with the 52 ARKit blendshapes as morph
    targets named in ``mesh.extras.targetNames`` (what Blender's and three.js's importers
    read); with ``times`` (T,) s, ``weights`` (T, 52) and optional ``rotations`` (T, 3, 3)
    (model → view), an animation of the morph weights (and the head rotation). Target
    displacements are stored as sparse accessors (vertices moving less than `SPARSE_MM`
    left out). Written atomically."""
    from scipy.spatial.transform import Rotation

    from facefit.model.arkit import ARKIT_52

    chunks: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []
    end = 0  # bytes in chunks

    def view(data: np.ndarray, target: int | None = None) -> int:
        nonlocal end
        raw = np.ascontiguousarray(data).tobytes()
        v = {"buffer": 0, "byteOffset": end, "byteLength": len(raw)}
        chunks.append(raw)
        pad = -len(raw) % 4
        if pad:
            chunks.append(b"\0" * pad)
        end += len(raw) + pad
        if target is not None:
            v["target"] = target
        views.append(v)
        return len(views) - 1

    def accessor(acc: dict) -> int:
        accessors.append(acc)
        return len(accessors) - 1

    verts = np.asarray(vertices, np.float32)
    pos = accessor({"bufferView": view(verts, _ARRAY), "componentType": _FLOAT,
                    "count": len(verts), "type": "VEC3", "min": verts.min(0).tolist(),
                    "max": verts.max(0).tolist()})
    tri = np.asarray(triangles, np.uint32).reshape(-1)
    idx = accessor({"bufferView": view(tri, _ELEMENTS), "componentType": _UINT,
                    "count": len(tri), "type": "SCALAR"})
    tgts = []
    # (52, V, 3): each target contiguous (a view of `arkit_targets`' own array)
    by_target = np.ascontiguousarray(np.moveaxis(np.asarray(targets, np.float32), 2, 0))
    mag = np.abs(by_target)
    moved = np.maximum(np.maximum(mag[:, :, 0], mag[:, :, 1]), mag[:, :, 2]) >= SPARSE_MM
    del mag
    for k in range(targets.shape[2]):
        d = by_target[k]
        ids = np.flatnonzero(moved[k]).astype(np.uint32)
        acc: dict = {"componentType": _FLOAT, "count": len(verts), "type": "VEC3"}
        full = np.zeros((1, 3), np.float32) if len(ids) == 0 else d[ids]
        # min/max over every vertex (the left-out ones are 0)
        acc["min"] = np.minimum(full.min(0), 0.0).tolist()
        acc["max"] = np.maximum(full.max(0), 0.0).tolist()
        if len(ids):
            acc["sparse"] = {"count": int(len(ids)),
                             "indices": {"bufferView": view(ids), "componentType": _UINT},
                             "values": {"bufferView": view(d[ids])}}
        tgts.append({"POSITION": accessor(acc)})
    names = list(ARKIT_52)
    mesh = {"name": "face", "primitives": [{"attributes": {"POSITION": pos}, "indices": idx,
                                            "targets": tgts, "material": 0}],
            "weights": [0.0] * len(tgts), "extras": {"targetNames": names}}
    gltf: dict = {
        "asset": {"version": "2.0", "generator": "facefit arkit"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [mesh],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.7, 0.62, 1],
                                                "metallicFactor": 0.0, "roughnessFactor": 0.8},
                       "doubleSided": True}],
    }
    if times is not None and weights is not None and len(times):
        t = np.asarray(times, np.float32) - float(times[0])
        if len(t) > 1 and not np.all(np.diff(t) > 0):
            t = np.arange(len(t), dtype=np.float32) * float(max(t[-1], 1e-3) / (len(t) - 1))
        inp = accessor({"bufferView": view(t), "componentType": _FLOAT, "count": len(t),
                        "type": "SCALAR", "min": [float(t.min())], "max": [float(t.max())]})
        w = np.clip(np.asarray(weights, np.float32), 0.0, 1.0).reshape(-1)
        out_w = accessor({"bufferView": view(w), "componentType": _FLOAT, "count": len(w),
                          "type": "SCALAR"})
        samplers = [{"input": inp, "output": out_w, "interpolation": "LINEAR"}]
        channels = [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]
        if rotations is not None:
            q = Rotation.from_matrix(np.asarray(rotations, np.float64)).as_quat()
            flip = np.r_[1.0, np.sign(np.einsum("ij,ij->i", q[1:], q[:-1]))]
            q = (q * np.cumprod(np.where(flip == 0, 1.0, flip))[:, None]).astype(np.float32)
            out_r = accessor({"bufferView": view(q), "componentType": _FLOAT, "count": len(q),
                              "type": "VEC4"})
            samplers.append({"input": inp, "output": out_r, "interpolation": "LINEAR"})
            channels.append({"sampler": 1, "target": {"node": 0, "path": "rotation"}})
        gltf["animations"] = [{"name": "arkit", "samplers": samplers, "channels": channels}]
    return write_glb_file(path, gltf, views, accessors, b"".join(chunks))


def write_video_arkit_glb(jsonl_path: str | os.PathLike[str], model: MorphableModel,
                          glb_path: str | os.PathLike[str] | None = None,
                          targets: np.ndarray | None = None) -> Path | None:
    """``STEM_arkit.glb`` next to a video's JSON lines: the clip's identity mesh with the 52
    ARKit morph targets (`arkit_targets`; ``targets`` when already computed) animated by the
    per-frame weights and head rotation (frames with a face); None when the model has no
    ARKit targets."""
    targets = arkit_targets(model) if targets is None else targets
    if targets is None:
        return None
    from facefit.model.arkit import ARKIT_52

    src = Path(jsonl_path)
    head, records = read_video_jsonl(src)
    shape = np.asarray(head.get("shape_coeffs") or np.zeros(model.num_shape), np.float32)
    frames = [(r["time_s"], f) for r in records
              if (f := first_face(r)) is not None and "arkit_blendshapes" in f]
    times = np.array([t for t, _ in frames], np.float64)
    weights = np.array([[f["arkit_blendshapes"].get(n, 0.0) for n in ARKIT_52]
                        for _, f in frames], np.float32).reshape(-1, len(ARKIT_52))
    rots = np.array([f["pose"]["rotation"] for _, f in frames],
                    np.float64).reshape(-1, 3, 3)
    out = src.with_name(src.stem + "_arkit.glb") if glb_path is None else Path(glb_path)
    return write_arkit_glb(out, model.vertices(shape), model.triangles, targets, times,
                           weights, rots if len(rots) else None)
