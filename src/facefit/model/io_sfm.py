"""eos / Surrey Face Model reader (Huber et al., "A Multiresolution 3D Morphable Face Model
and Fitting Framework", VISAPP 2016): cereal ``.bin`` model, landmark mapping ``.txt``,
contour ``.json`` and edge-topology ``.json``.

eos saves ``eos::morphablemodel::MorphableModel`` with cereal's binary archive (eos uses
``cereal::BinaryOutputArchive``; a ``PortableBinaryOutputArchive`` file is the same stream
after one leading endianness byte, 1 = little endian; both are read). The stream, little
endian, sizes as uint64 "size tags", Eigen matrices as int32 rows, int32 cols and
column-major float32 data:

1. uint32 class version of MorphableModel (1 to 4; cereal writes it once per class);
2. ``shape_model`` PcaModel: mean (3V x 1), orthonormal_pca_basis (3V x K), eigenvalues
   (K x 1, variances), triangle_list (uint64 n, then n x 3 int32);
3. ``color_model`` PcaModel, same layout (empty matrices for shape-only models);
4. version >= 2: ``expression_model``, an optional (bool "nullopt") variant (int32 index):
   0 = PcaModel, 1 = Blendshapes (uint64 n, each: string name as uint64 length + bytes,
   deformation 3V x 1 matrix);
5. version >= 3: ``landmark_definitions``, an optional unordered_map<string, int32>
   (uint64 n, then n key/value pairs);
6. ``texture_coordinates``: uint64 n, n x 2 float64;
7. version 4: ``texture_triangle_indices``: uint64 n, n x 3 int32.

Vertex data are in mm, xyz interleaved; PCA bases are rescaled by sqrt(eigenvalue).
The landmark mapping (``ibug_to_sfm.txt``) is TOML: ``[landmark_mappings]`` with lines
``9 = 33`` (1-based iBUG number = 0-based vertex id) and ``[contour_landmarks]`` with
``right``/``left`` lists; eos's older brace syntax is also read. Contours:
``{"model_contour": {"right_contour": [...], "left_contour": [...]}}``. Edge topology:
``{"edge_topology": {"adjacent_faces": [[f1, f2], ...], "adjacent_vertices": [...]}}``,
1-based with 0 for "none" (stored 0-based with -1 in ``extras``).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.model.io_common import ModelFileError, PathLike, complete_topology, flat_to_vertices
from facefit.model.morphable_model import MorphableModel

LICENCE = "Surrey Face Model licence (see cvssp.org/faceweb/3dmm); eos code Apache-2.0"


class _Truncated(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class CerealReader:
    """Sequential reader of a cereal (portable) binary stream."""

    def __init__(self, data: bytes, endian: str = "<") -> None:
        self.data = data
        self.pos = 0
        self.endian = endian

    def _take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Truncated(what)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, code: str, what: str) -> int | float | bool:
        dt = np.dtype(self.endian + code)
        return np.frombuffer(self._take(dt.itemsize, what), dt)[0].item()

    def array(self, code: str, count: int, what: str) -> np.ndarray:
        dt = np.dtype(self.endian + code)
        if count > len(self.data):
            raise _Truncated(what)
        return np.frombuffer(self._take(dt.itemsize * count, what), dt).astype(dt.newbyteorder("="))

    def size(self, what: str) -> int:
        return int(self.scalar("u8", f"{what} (size)"))

    def string(self, what: str) -> str:
        n = self.size(what)
        return self._take(n, what).decode("utf-8", errors="replace")

    def matrix(self, what: str) -> np.ndarray:
        """Eigen float matrix -> (rows, cols) float32."""
        rows = int(self.scalar("i4", f"{what} (rows)"))
        cols = int(self.scalar("i4", f"{what} (cols)"))
        if rows < 0 or cols < 0:
            raise _Truncated(f"{what} (negative size)")
        flat = self.array("f4", rows * cols, what)
        return flat.reshape(cols, rows).T

    def triangles(self, what: str) -> np.ndarray:
        n = self.size(what)
        return self.array("i4", 3 * n, what).reshape(n, 3)

    def pca_model(self, what: str) -> dict[str, np.ndarray]:
        return {
            "mean": self.matrix(f"{what}.mean").ravel(),
            "basis": self.matrix(f"{what}.orthonormal_pca_basis"),
            "eigenvalues": self.matrix(f"{what}.eigenvalues").ravel(),
            "triangles": self.triangles(f"{what}.triangle_list"),
        }


def _detect_endianness(data: bytes) -> tuple[int, str]:
    """(offset of the version field, numpy byte order) for a plain or portable archive."""
    if len(data) < 5:
        return 0, "<"
    plain = int.from_bytes(data[:4], "little")
    if 1 <= plain <= 4:
        return 0, "<"
    if data[0] == 1 and 1 <= int.from_bytes(data[1:5], "little") <= 64:
        return 1, "<"
    if data[0] == 0 and 1 <= int.from_bytes(data[1:5], "big") <= 64:
        return 1, ">"
    return 0, "<"


@dataclass
class EosModelData:
    """The raw arrays of an eos model file (flat 3V layouts as stored)."""

    version: int
    shape: dict[str, np.ndarray]
    color: dict[str, np.ndarray]
    expression_kind: str  # "none", "pca" or "blendshapes"
    expression: dict[str, np.ndarray]
    landmark_definitions: dict[str, int] | None
    texture_coordinates: np.ndarray
    texture_triangles: np.ndarray


def read_eos_bin(path: PathLike) -> EosModelData:
    """Parse an eos cereal ``.bin`` (see module docstring); errors name the missing field."""
    p = Path(path)
    data = p.read_bytes()
    offset, endian = _detect_endianness(data)
    r = CerealReader(data, endian)
    r.pos = offset
    try:
        version = int(r.scalar("u4", "MorphableModel version"))
        if version < 1 or version > 4:
            raise ModelFileError(p, f"MorphableModel class version {version} is not an eos "
                                    "version 1-4 model (old cv::Mat files are unsupported)")
        shape = r.pca_model("shape_model")
        color = r.pca_model("color_model")
        kind, expression = "none", {}
        if version >= 2:
            if not r.scalar("?", "expression_model (optional flag)"):
                index = int(r.scalar("i4", "expression_model (variant index)"))
                if index == 0:
                    kind, expression = "pca", r.pca_model("expression_model")
                elif index == 1:
                    n = r.size("expression_model blendshapes")
                    names, cols = [], []
                    for i in range(n):
                        names.append(r.string(f"blendshape[{i}].name"))
                        cols.append(r.matrix(f"blendshape[{i}].deformation").ravel())
                    kind = "blendshapes"
                    if len({c.size for c in cols}) > 1:
                        raise ModelFileError(p, "expression blendshapes differ in size")
                    expression = {"basis": np.stack(cols, axis=1) if cols else
                                  np.zeros((shape["mean"].size, 0), np.float32),
                                  "names": np.array(names)}
                else:
                    raise ModelFileError(p, f"expression_model variant index {index} is not 0/1")
        landmarks = None
        if version >= 3 and not r.scalar("?", "landmark_definitions (optional flag)"):
            n = r.size("landmark_definitions")
            landmarks = {}
            for i in range(n):
                key = r.string(f"landmark_definitions[{i}] name")
                landmarks[key] = int(r.scalar("i4", f"landmark_definitions[{i}] vertex"))
        n_tc = r.size("texture_coordinates")
        tcs = r.array("f8", 2 * n_tc, "texture_coordinates").reshape(n_tc, 2)
        tti = r.triangles("texture_triangle_indices") if version >= 4 else np.zeros((0, 3),
                                                                                     np.int32)
    except _Truncated as exc:
        raise ModelFileError(p, f"truncated: missing field '{exc.what}'") from None
    return EosModelData(version, shape, color, kind, expression, landmarks, tcs, tti)


def read_landmark_mapping(path: PathLike) -> tuple[dict[int, int], dict[str, list[int]]]:
    """``ibug_to_sfm.txt``: ({1-based landmark number: vertex id}, {"right"/"left": numbers})."""
    p = Path(path)
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
        if "landmark_mappings" not in doc:
            raise ModelFileError(p, "missing table '[landmark_mappings]'")
        mapping = {int(k): int(v) for k, v in doc["landmark_mappings"].items()}
        contour = {k: [int(x) for x in v] for k, v in doc.get("contour_landmarks", {}).items()}
        return mapping, contour
    except tomllib.TOMLDecodeError:
        pass
    # eos's older boost::property_tree "info" syntax: landmarkMappings { 9 33 ; comment }
    body = re.search(r"landmarkMappings[^{]*\{(.*?)\}", text, re.S)
    if body is None:
        raise ModelFileError(p, "missing section '[landmark_mappings]'")
    mapping = {}
    for line in body.group(1).splitlines():
        parts = line.split(";")[0].split()
        if len(parts) == 2:
            mapping[int(parts[0])] = int(parts[1])
    contour = {}
    for side in ("right", "left"):
        m = re.search(side + r"\s*\{([^}]*)\}", text)
        if m:
            contour[side] = [int(x) for x in m.group(1).split()]
    return mapping, contour


def read_contours(path: PathLike) -> dict[str, np.ndarray]:
    """Model contour ``.json`` -> {"right": ids, "left": ids} (0-based vertex ids)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        mc = doc["model_contour"]
        return {s: np.asarray(mc[f"{s}_contour"], np.int64) for s in ("right", "left")}
    except (KeyError, TypeError):
        raise ModelFileError(p, "missing key 'model_contour' / 'right_contour' / "
                                "'left_contour'") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(p, f"invalid JSON ({exc.msg})") from None


def read_edge_topology(path: PathLike) -> dict[str, np.ndarray]:
    """Edge topology ``.json`` -> {"adjacent_faces", "adjacent_vertices"} (E, 2), 0-based,
    -1 where eos writes 0 (a boundary edge's missing face)."""
    p = Path(path)
    try:
        et = json.loads(p.read_text())["edge_topology"]
        return {k: np.asarray(et[k], np.int64).reshape(-1, 2) - 1
                for k in ("adjacent_faces", "adjacent_vertices")}
    except (KeyError, TypeError):
        raise ModelFileError(p, "missing key 'edge_topology' / 'adjacent_faces' / "
                                "'adjacent_vertices'") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(p, f"invalid JSON ({exc.msg})") from None


def _sibling(path: Path, patterns: tuple[str, ...]) -> Path | None:
    for pat in patterns:
        hits = sorted(path.parent.glob(pat))
        if hits:
            return hits[0]
    return None


def _check_pca(block: dict[str, np.ndarray], n: int, what: str, path: Path) -> None:
    """A PCA block of ``n`` flat values: basis (n, K), at least K eigenvalues, triangles
    in range (eos writes an empty block for a missing colour model)."""
    mean, basis, ev, tri = (block[k] for k in ("mean", "basis", "eigenvalues", "triangles"))
    if mean.size != n or basis.ndim != 2 or basis.shape[0] != n or ev.size < basis.shape[1]:
        raise ModelFileError(path, f"{what} has mean {mean.shape}, basis {basis.shape}, "
                                   f"eigenvalues {ev.shape} for {n} values")
    if tri.size and (tri.min() < 0 or tri.max() >= n // 3):
        raise ModelFileError(path, f"{what}.triangle_list has vertex ids outside "
                                   f"0..{n // 3 - 1}")


def load_sfm(
    path: PathLike,
    landmark_mapping: PathLike | None = None,
    contours: PathLike | None = None,
    edge_topology: PathLike | None = None,
) -> MorphableModel:
    """An eos ``.bin`` model (plus mapping / contour / edge files) as a `MorphableModel`.

    Files not given are looked up beside ``path`` (``ibug_to_*.txt``, ``*contours.json``,
    ``*edge_topology.json``). A mapping with all 68 iBUG points gives ``ibug68``; a partial
    one gives ``ibug68_subset`` with ``extras["ibug68_subset_points"]`` (0-based iBUG ids).
    """
    p = Path(path)
    raw = read_eos_bin(p)
    if raw.shape["mean"].size % 3 or raw.shape["mean"].size == 0:
        raise ModelFileError(p, f"shape_model.mean has {raw.shape['mean'].size} values, "
                                "not 3 per vertex")
    mean = flat_to_vertices(raw.shape["mean"]).astype(np.float64)
    v = mean.shape[0]
    if raw.shape["basis"].shape[0] != 3 * v:
        rows = raw.shape["basis"].shape[0]
        raise ModelFileError(p, f"shape_model.orthonormal_pca_basis has {rows} rows for "
                                f"{3 * v} mean values")
    _check_pca(raw.shape, 3 * v, "shape_model", p)
    if raw.color["mean"].size:
        _check_pca(raw.color, 3 * v, "color_model", p)
    if raw.expression_kind == "pca":
        _check_pca(raw.expression, 3 * v, "expression_model", p)
    elif raw.expression_kind == "blendshapes" and raw.expression["basis"].shape[0] != 3 * v:
        raise ModelFileError(p, f"expression blendshapes have {raw.expression['basis'].shape[0]}"
                                f" values, expected {3 * v}")
    shape = flat_to_vertices(raw.shape["basis"] * np.sqrt(np.maximum(raw.shape["eigenvalues"],
                                                                     0.0)))
    notes: list[str] = [f"eos model version {raw.version}"]
    extras: dict[str, np.ndarray] = {}
    if raw.expression_kind == "pca":
        e = raw.expression
        mean = mean + flat_to_vertices(e["mean"])
        exp = flat_to_vertices(e["basis"] * np.sqrt(np.maximum(e["eigenvalues"], 0.0)))
        notes.append("PCA expression model")
    elif raw.expression_kind == "blendshapes":
        exp = flat_to_vertices(raw.expression["basis"])
        extras["blendshape_names"] = raw.expression["names"].astype(str)
        notes.append("expression blendshapes (weights are not N(0, 1))")
    else:
        exp = np.zeros((v, 3, 0))
    albedo_mean = albedo_basis = None
    if raw.color["mean"].size == 3 * v and raw.color["basis"].size:
        albedo_mean = flat_to_vertices(raw.color["mean"]).astype(np.float32)
        albedo_basis = flat_to_vertices(raw.color["basis"] * np.sqrt(
            np.maximum(raw.color["eigenvalues"], 0.0))).astype(np.float32)
    uv = None
    if raw.texture_coordinates.shape[0] == v:
        uv = raw.texture_coordinates.astype(np.float32).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # eos stores v down (image rows); facefit uses v up
    landmarks: dict[str, np.ndarray] = {}
    if raw.landmark_definitions:
        names = sorted(raw.landmark_definitions)
        if all(n.isdigit() for n in names) and {int(n) for n in names} == set(range(1, 69)):
            landmarks["ibug68"] = np.array([raw.landmark_definitions[str(i)]
                                            for i in range(1, 69)], np.int64)
        else:
            landmarks["eos"] = np.array([raw.landmark_definitions[n] for n in names], np.int64)
            extras["eos_landmark_names"] = np.array(names)
    mapping_path = Path(landmark_mapping) if landmark_mapping else _sibling(p, ("ibug_to_*.txt",))
    if mapping_path is not None:
        mapping, contour_lms = read_landmark_mapping(mapping_path)
        if set(mapping) == set(range(1, 69)):
            landmarks["ibug68"] = np.array([mapping[i] for i in range(1, 69)], np.int64)
        else:
            pts = sorted(mapping)
            landmarks["ibug68_subset"] = np.array([mapping[i] for i in pts], np.int64)
            extras["ibug68_subset_points"] = np.array(pts, np.int64) - 1
        for side, nums in contour_lms.items():
            extras[f"contour_landmarks_{side}"] = np.array(nums, np.int64) - 1
        notes.append(f"landmarks: {mapping_path.name}")
    contour_path = Path(contours) if contours else _sibling(p, ("*contours.json",))
    if contour_path is not None:
        for side, ids in read_contours(contour_path).items():
            extras[f"contour_vertices_{side}"] = ids
        notes.append(f"contours: {contour_path.name}")
    edge_path = Path(edge_topology) if edge_topology else _sibling(p, ("*edge_topology.json",))
    if edge_path is not None:
        for k, arr in read_edge_topology(edge_path).items():
            extras[f"edge_{k}"] = arr
        notes.append(f"edges: {edge_path.name}")
    for name, ids in landmarks.items():
        if ids.size and (ids.min() < 0 or ids.max() >= v):
            raise ModelFileError(mapping_path or p, f"landmark set '{name}' has vertex ids "
                                                    f"outside 0..{v - 1}")
    tri_in = raw.shape["triangles"].astype(np.int32) if raw.shape["triangles"].size else None
    mean32 = mean.astype(np.float32)
    tri, uv_out, mirror, made = complete_topology(mean32, tri_in, uv, None)
    return MorphableModel(
        name=p.stem,
        mean=mean32,
        shape_basis=shape.astype(np.float32),
        expression_basis=exp.astype(np.float32),
        triangles=tri,
        uv=uv_out,
        landmark_ids=landmarks,
        mirror_ids=mirror,
        licence=LICENCE,
        source=f"{p} ({'; '.join(notes + made)})",
        albedo_mean=albedo_mean,
        albedo_basis=albedo_basis,
        extras=extras,
    )
