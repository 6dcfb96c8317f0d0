"""Animated binary glTF 2.0: the identity mesh with one morph target per expression
component, and per-frame morph weights, rotation, translation and scale as animation
channels (linear interpolation). Only the small per-frame arrays are kept while a clip is
processed, so memory does not grow with the mesh times the number of frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefit.io.glb import write_glb_file

_FLOAT, _UINT = 5126, 5125
_ARRAY, _ELEMENTS = 34962, 34963


class AnimatedGlb:
    """Collect per-frame pose and expression; `write` the animated GLB.

    Args:
        vertices: (V, 3) neutral identity in mm, model frame (y up, z to the viewer).
        triangles: (F, 3) vertex ids.
        targets: (V, 3, K) morph target displacements (the expression basis, mm per unit).
        reference_scale: pixels per mm that map to node scale 1.
        image_size: (width, height); translation is measured from the image centre.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, targets: np.ndarray,
                 reference_scale: float, image_size: tuple[int, int]) -> None:
        self.vertices = np.asarray(vertices, np.float32)
        self.triangles = np.asarray(triangles, np.uint32)
        self.targets = np.asarray(targets, np.float32)
        self.s0 = float(reference_scale)
        self.centre = np.array(image_size, np.float64) / 2
        self.times: list[float] = []
        self.rows: list[np.ndarray] = []  # per frame: quat (4), translation (3), scale, weights

    def add(self, t: float, rotation: np.ndarray, scale: float, translation_px: np.ndarray,
            expression: np.ndarray) -> None:
        """One frame at time ``t`` s: model→view rotation, px/mm scale, image position (px)
        of the model origin, expression coefficients (the morph weights)."""
        from scipy.spatial.transform import Rotation

        q = Rotation.from_matrix(rotation).as_quat()  # x, y, z, w as glTF
        if self.rows and float(q @ self.rows[-1][:4]) < 0:
            q = -q
        d = (np.asarray(translation_px, np.float64) - self.centre) / self.s0
        self.times.append(float(t))
        self.rows.append(np.concatenate([q, [d[0], -d[1], 0.0, scale / self.s0],
                                         np.asarray(expression, np.float64)]))

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

        pos = add(self.vertices, "VEC3", _FLOAT, _ARRAY, minmax=True)
        idx = add(self.triangles.reshape(-1), "SCALAR", _UINT, _ELEMENTS)
        tgts = [{"POSITION": add(self.targets[:, :, i].copy(), "VEC3", _FLOAT, _ARRAY,
                                 minmax=True)} for i in range(k)]
        mesh = {"primitives": [{"attributes": {"POSITION": pos}, "indices": idx,
                                "targets": tgts, "material": 0}],
                "weights": [0.0] * k,
                "extras": {"targetNames": [f"expression_{i}" for i in range(k)]}}
        gltf: dict = {
            "asset": {"version": "2.0", "generator": "facefit video"},
            "scene": 0, "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "face"}],
            "meshes": [mesh],
            "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.7, 0.62, 1],
                                                    "metallicFactor": 0.0,
                                                    "roughnessFactor": 0.8},
                           "doubleSided": True}],
        }
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
            samplers = [{"input": inp, "output": o, "interpolation": "LINEAR"}
                        for o in (out_r, out_t, out_s, out_w)]
            paths = ("rotation", "translation", "scale", "weights")
            gltf["animations"] = [{"name": "video", "samplers": samplers, "channels": [
                {"sampler": i, "target": {"node": 0, "path": p}} for i, p in enumerate(paths)]}]
        return write_glb_file(path, gltf, views, accessors, b"".join(chunks))
