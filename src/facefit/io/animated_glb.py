"""Animated binary glTF 2.0: the identity mesh with one morph target per expression
component, and per-frame morph weights, rotation, translation and scale as animation
channels (linear interpolation). Only the small per-frame arrays are kept while a clip is
processed, so memory does not grow with the mesh times the number of frames.

An articulated model (FLAME) adds a glTF skin: its joints as nodes under the animated head
node, each vertex's four heaviest skinning weights, and per-frame joint rotations (jaw,
neck) as rotation channels, so the file opens the jaw as the fit did (linear blend skinning;
FLAME's pose-corrective blendshapes are left out, and the joints stay where the neutral
identity puts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.io.glb import write_glb_file
from facefit.model.io_flame import FlameModel

_FLOAT, _UINT, _USHORT = 5126, 5125, 5123
_ARRAY, _ELEMENTS = 34962, 34963


@dataclass(frozen=True, eq=False)
class Skeleton:
    """The joints that skin the animated mesh.

    Attributes:
        joints: (J, 3) rest positions of the joints, mm, model frame.
        parents: (J,) parent joint of each (-1 for the root).
        weights: (V, J) skinning weights of each vertex (rows sum to 1).
    """

    joints: np.ndarray
    parents: np.ndarray
    weights: np.ndarray

    @classmethod
    def of_flame(cls, flame: FlameModel, rest_vertices: np.ndarray) -> Skeleton:
        """FLAME's joints (regressed from ``rest_vertices`` (V, 3) mm, e.g. the clip's
        neutral identity), kinematic tree and skinning weights."""
        return cls(np.asarray(flame.j_regressor, np.float64) @ np.asarray(rest_vertices,
                                                                          np.float64),
                   np.asarray(flame.parents, np.int64), np.asarray(flame.weights, np.float64))

    def top4(self) -> tuple[np.ndarray, np.ndarray]:
        """((V, 4) uint16 joint ids, (V, 4) float32 weights summing to 1): the four heaviest
        joints of each vertex, as glTF's JOINTS_0 / WEIGHTS_0 carry them."""
        w = np.asarray(self.weights, np.float64)
        if w.shape[1] < 4:
            w = np.pad(w, ((0, 0), (0, 4 - w.shape[1])))
        ids = np.argsort(-w, axis=1, kind="stable")[:, :4]
        ww = np.take_along_axis(w, ids, 1)
        total = ww.sum(1, keepdims=True)
        ww = np.where(total > 0, ww / np.maximum(total, 1e-12), np.eye(4)[0]).astype(np.float32)
        ww[:, 0] = np.float32(1.0) - ww[:, 1:].sum(1, dtype=np.float32)  # sums to 1 in float32
        return ids.astype(np.uint16), ww  # ids distinct per vertex (glTF forbids duplicates)


class AnimatedGlb:
    """Collect per-frame pose and expression; `write` the animated GLB.

    Args:
        vertices: (V, 3) neutral identity in mm, model frame (y up, z to the viewer).
        triangles: (F, 3) vertex ids.
        targets: (V, 3, K) morph target displacements (the expression basis, mm per unit).
        reference_scale: pixels per mm that map to node scale 1.
        image_size: (width, height); translation is measured from the image centre.
        skeleton: joints that skin the mesh (articulated models), or None.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, targets: np.ndarray,
                 reference_scale: float, image_size: tuple[int, int],
                 skeleton: Skeleton | None = None) -> None:
        self.vertices = np.asarray(vertices, np.float32)
        self.triangles = np.asarray(triangles, np.uint32)
        self.targets = np.asarray(targets, np.float32)
        self.s0 = float(reference_scale)
        self.centre = np.array(image_size, np.float64) / 2
        self.skeleton = skeleton
        self.times: list[float] = []
        self.rows: list[np.ndarray] = []  # per frame: quat (4), translation (3), scale, weights
        self.joint_rows: list[np.ndarray] = []  # per frame: (J, 4) joint quaternions

    def add(self, t: float, rotation: np.ndarray, scale: float, translation_px: np.ndarray,
            expression: np.ndarray, joint_rotations: np.ndarray | None = None) -> None:
        """One frame at time ``t`` s: model→view rotation, px/mm scale, image position (px)
        of the model origin, expression coefficients (the morph weights) and, with a
        skeleton, the (J, 3) axis-angle joint rotations (radians; None: all zero)."""
        from scipy.spatial.transform import Rotation

        q = Rotation.from_matrix(rotation).as_quat()  # x, y, z, w as glTF
        if self.rows and float(q @ self.rows[-1][:4]) < 0:
            q = -q
        d = (np.asarray(translation_px, np.float64) - self.centre) / self.s0
        self.times.append(float(t))
        self.rows.append(np.concatenate([q, [d[0], -d[1], 0.0, scale / self.s0],
                                         np.asarray(expression, np.float64)]))
        if self.skeleton is not None:
            n_j = len(self.skeleton.joints)
            rv = np.zeros((n_j, 3)) if joint_rotations is None else np.asarray(
                joint_rotations, np.float64).reshape(n_j, 3)
            jq = Rotation.from_rotvec(rv).as_quat()
            if self.joint_rows:  # keep each joint's quaternion sign continuous
                jq *= np.where((jq * self.joint_rows[-1]).sum(1) < 0, -1.0, 1.0)[:, None]
            self.joint_rows.append(jq)

    def write(self, path: str | Path) -> Path:
        """Write the GLB (a static mesh when no frame was added)."""
        k = self.targets.shape[2]
        chunks: list[bytes] = []
        views: list[dict] = []
        accessors: list[dict] = []

        def add(data: np.ndarray, kind: str, ctype: int, target: int | None = None,
                minmax: bool = False) -> int:
            raw = np.ascontiguousarray(data).tobytes()
            offset = sum(len(c) for c in chunks)
            chunks.append(raw + b"\0" * (-len(raw) % 4))
            view = {"buffer": 0, "byteOffset": offset, "byteLength": len(raw)}
            if target is not None:
                view["target"] = target
            views.append(view)
            count = len(data) if kind != "SCALAR" or data.ndim == 1 else data.size
            acc = {"bufferView": len(views) - 1, "componentType": ctype, "count": int(count),
                   "type": kind}
            if minmax:
                flat = data.reshape(int(count), -1)
                acc["min"] = [float(v) for v in flat.min(0)]
                acc["max"] = [float(v) for v in flat.max(0)]
            accessors.append(acc)
            return len(accessors) - 1

        pos = add(np.asarray(self.vertices, np.float32), "VEC3", _FLOAT, _ARRAY, minmax=True)
        idx = add(self.triangles.reshape(-1), "SCALAR", _UINT, _ELEMENTS)
        tgts = [{"POSITION": add(self.targets[:, :, i].copy(), "VEC3", _FLOAT, _ARRAY,
                                 minmax=True)} for i in range(k)]
        prim = {"attributes": {"POSITION": pos}, "indices": idx, "targets": tgts, "material": 0}
        mesh = {"primitives": [prim], "weights": [0.0] * k,
                "extras": {"targetNames": [f"expression_{i}" for i in range(k)]}}
        nodes: list[dict] = [{"mesh": 0, "name": "face"}]
        head = 0  # the node that carries the head's pose
        sk = self.skeleton
        if sk is not None:  # a skinned mesh: its pose goes on a head node above the joints
            jid, jw = sk.top4()
            prim["attributes"]["JOINTS_0"] = add(jid, "VEC4", _USHORT, _ARRAY)
            prim["attributes"]["WEIGHTS_0"] = add(jw, "VEC4", _FLOAT, _ARRAY)
            parents = np.asarray(sk.parents, np.int64)
            jts = np.asarray(sk.joints, np.float64)
            n_j, head = len(jts), 1
            nodes[0]["skin"] = 0
            nodes.append({"name": "head",
                          "children": [2 + j for j in range(n_j) if parents[j] < 0]})
            for j in range(n_j):
                rel = jts[j] - (jts[parents[j]] if parents[j] >= 0 else 0.0)
                node: dict = {"name": f"joint_{j}", "translation": [float(x) for x in rel]}
                kids = [2 + c for c in range(n_j) if parents[c] == j]
                if kids:
                    node["children"] = kids
                nodes.append(node)
            ibm = np.tile(np.eye(4), (n_j, 1, 1))
            ibm[:, :3, 3] = -jts  # joint j's bind pose is a translation to its rest position
            skin = {"joints": [2 + j for j in range(n_j)], "skeleton": 1,
                    "inverseBindMatrices": add(  # glTF matrices are column-major
                        np.ascontiguousarray(ibm.transpose(0, 2, 1), np.float32), "MAT4",
                        _FLOAT)}
        gltf: dict = {
            "asset": {"version": "2.0", "generator": "facefit video"},
            "scene": 0, "scenes": [{"nodes": [0] if head == 0 else [0, head]}],
            "nodes": nodes,
            "meshes": [mesh],
            "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.7, 0.62, 1],
                                                    "metallicFactor": 0.0,
                                                    "roughnessFactor": 0.8},
                           "doubleSided": True}],
        }
        if sk is not None:
            gltf["skins"] = [skin]
        if self.rows:
            rows = np.array(self.rows, np.float64)
            t = np.array(self.times, np.float32)
            t = t - t[0]
            if len(t) > 1 and not np.all(np.diff(t) > 0):
                t = np.arange(len(t), dtype=np.float32) * float(max(t[-1], 1e-3) / (len(t) - 1))
            inp = add(t, "SCALAR", _FLOAT, minmax=True)
            out_r = add(rows[:, :4].astype(np.float32), "VEC4", _FLOAT)
            out_t = add(rows[:, 4:7].astype(np.float32), "VEC3", _FLOAT)
            out_s = add(np.repeat(rows[:, 7:8], 3, 1).astype(np.float32), "VEC3", _FLOAT)
            out_w = add(rows[:, 8:].astype(np.float32).reshape(-1), "SCALAR", _FLOAT)
            outputs = [out_r, out_t, out_s, out_w]
            targets = [(head, "rotation"), (head, "translation"), (head, "scale"),
                       (0, "weights")]
            if sk is not None:
                joint_q = np.array(self.joint_rows, np.float32)  # (T, J, 4)
                for j in range(joint_q.shape[1]):
                    outputs.append(add(np.ascontiguousarray(joint_q[:, j]), "VEC4", _FLOAT))
                    targets.append((2 + j, "rotation"))
            samplers = [{"input": inp, "output": o, "interpolation": "LINEAR"} for o in outputs]
            gltf["animations"] = [{"name": "video", "samplers": samplers, "channels": [
                {"sampler": i, "target": {"node": n, "path": p}}
                for i, (n, p) in enumerate(targets)]}]
        return write_glb_file(path, gltf, views, accessors, b"".join(chunks))
