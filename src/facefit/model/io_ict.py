"""Reader for the ICT Face Model's original ``FaceXModel/`` folder (ICT-FaceKit, MIT licence).

Li et al., "Learning Formation of Physically-Based Face Attributes", CVPR 2020. The folder
holds a generic neutral head mesh (``generic_neutral_mesh.obj``: face, back of the head and
neck, mouth socket, teeth, gums and tongue, eyeballs, eyelashes; mostly quads; centimetres),
one OBJ per identity mode (``identity000.obj`` ...: the neutral moved by one standard
deviation of that mode), one OBJ per expression blendshape (``jawOpen.obj`` ...: the neutral
with that shape fully on) and ``vertex_indices.json`` (expression names, 68 iBUG-layout
landmark vertex ids, fitting/rigid vertex sets).

`load_ict` returns an `ICTModel`: identity as a linear model with N(0, 1) coefficients,
expressions as named blendshape deltas with weights in [0, 1] (no Gaussian prior, as eos
distinguishes ``PcaModel`` from ``Blendshape``), quads split into triangles, millimetres,
regions from the OBJ materials. `ICTModel.to_morphable_model` gives the plain
`MorphableModel` that ``facefit.load_model(folder)`` returns (blendshape deltas as the
expression basis, flagged in ``extras``).

Frame: ICT is y up, z out of the face, x to the face's left, as `MorphableModel`; only the
unit changes (cm → mm).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefit.model.io_common import ModelFileError, PathLike
from facefit.model.morphable_model import MorphableModel

NEUTRAL_FILE = "generic_neutral_mesh.obj"
INDEX_FILE = "vertex_indices.json"
CM_TO_MM = 10.0
LICENCE = "MIT (ICT-FaceKit, copyright 2020 USC Institute for Creative Technologies)"

REGION_MATERIALS: dict[str, tuple[str, ...]] = {
    "face": ("M_Face",),
    "head": ("M_Face", "M_BackHead"),
    "eyes": ("M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight"),
    "eye_shells": ("M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion", "M_EyeLashes"),
    "teeth": ("M_Teeth", "M_GumsTongue"),
}
"""Regions as sets of OBJ materials: ``face`` (the skin the scans cover), ``head`` (face +
back of the head and neck), ``eyes`` (eyeballs), ``eye_shells`` (transparent tear, blend and
occlusion shells and eyelashes: skip them when rendering), ``teeth`` (teeth, gums, tongue)."""

_V_LINE = re.compile(r"^v[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+\S+){0,3}[ \t]*$", re.M)
_VT_LINE = re.compile(r"^vt[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+\S+)?[ \t]*$", re.M)
_F_LINE = re.compile(r"^f[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*$", re.M)
_USEMTL = re.compile(r"^usemtl[ \t]+(\S+)", re.M)


@dataclass(frozen=True, eq=False)
class ObjMesh:
    """Geometry of one OBJ file.

    Attributes:
        vertices: (V, 3) float64 positions as written (file units).
        uv: (T, 2) float32 texture coordinates (``vt`` lines); may be empty.
        triangles: (F, 3) int32 vertex ids (0-based), quads split along their 0-2 diagonal.
        triangle_uv: (F, 3) int32 ``vt`` ids per corner, -1 where the face gave none.
        triangle_material: (F,) int32 index into ``materials`` (-1 before any ``usemtl``).
        materials: material names in order of first use.
    """

    vertices: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    triangle_uv: np.ndarray
    triangle_material: np.ndarray
    materials: list[str]


def _bad_line(path: Path, text: str, prefix: str, pattern: re.Pattern[str]) -> ModelFileError:
    """The error for the first ``prefix`` line that ``pattern`` rejects (error path only)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.split(maxsplit=1)[:1] == [prefix]:
            m = pattern.match(line)
            ok = m is not None
            if ok and prefix != "f":
                try:
                    [float(t) for t in m.groups() if t]
                except ValueError:
                    ok = False
            if not ok:
                return ModelFileError(path, f"line {number}: malformed '{prefix}' line "
                                      f"{line.strip()[:60]!r}")
    return ModelFileError(path, f"malformed '{prefix}' lines")


def _floats(path: Path, text: str, prefix: str, pattern: re.Pattern[str], width: int
            ) -> np.ndarray:
    found = pattern.findall(text)
    count = len(re.findall(rf"^{prefix}[ \t]", text, re.M))
    if len(found) != count:
        raise _bad_line(path, text, prefix, pattern)
    if count == 0:
        return np.zeros((0, width))
    try:
        return np.asarray(found, dtype=str).astype(np.float64)
    except ValueError:
        raise _bad_line(path, text, prefix, pattern) from None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ModelFileError(path, "file not found")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ModelFileError(path, f"cannot read file ({exc.strerror})") from None


def read_obj_vertices(path: PathLike) -> np.ndarray:
    """(V, 3) float64 ``v`` positions of an OBJ file; a malformed ``v`` line raises
    `ModelFileError` naming its line number."""
    p = Path(path)
    return _floats(p, _read_text(p), "v", _V_LINE, 3)


def read_obj(path: PathLike) -> ObjMesh:
    """Read positions, texture coordinates, faces (triangles and quads, split into triangles)
    and per-face materials of an OBJ file. Malformed ``v``/``vt``/``f`` lines, polygons with
    more than 4 corners and out-of-range indices raise `ModelFileError` with the line number
    where there is one."""
    p = Path(path)
    text = _read_text(p)
    verts = _floats(p, text, "v", _V_LINE, 3)
    uv = _floats(p, text, "vt", _VT_LINE, 2).astype(np.float32)
    # Faces, each tagged with the material in force: split the text at 'usemtl' lines.
    starts = [(m.start(), m.group(1)) for m in _USEMTL.finditer(text)]
    bounds = [0] + [s for s, _ in starts] + [len(text)]
    materials: list[str] = []
    rows: list[tuple[str, str, str, str]] = []
    mat_of_row: list[np.ndarray] = []
    for k in range(len(bounds) - 1):
        chunk = text[bounds[k]:bounds[k + 1]]
        found = _F_LINE.findall(chunk)
        if len(found) != len(re.findall(r"^f[ \t]", chunk, re.M)):
            raise _bad_line(p, text, "f", _F_LINE)
        if k == 0:
            mat = -1
        else:
            name = starts[k - 1][1]
            if name not in materials:
                materials.append(name)
            mat = materials.index(name)
        rows.extend(found)
        mat_of_row.append(np.full(len(found), mat, np.int32))
    if not rows:
        raise ModelFileError(p, "no faces ('f' lines)")
    corners = np.asarray(rows, dtype=str)  # (P, 4), '' for the 4th corner of a triangle
    quad = corners[:, 3] != ""
    corners[~quad, 3] = corners[~quad, 0]
    vid_s = np.char.partition(corners, "/")
    rest = np.char.partition(vid_s[..., 2], "/")[..., 0]
    try:
        vid = vid_s[..., 0].astype(np.int64)
        tid = np.where(rest == "", "0", rest).astype(np.int64)
    except ValueError:
        raise ModelFileError(p, "malformed 'f' line: non-integer vertex index") from None
    # OBJ indices: 1-based, negative counts from the end.
    vid = np.where(vid < 0, vid + len(verts), vid - 1)
    tid = np.where(tid < 0, tid + len(uv), np.where(tid == 0, -1, tid - 1))
    if vid.min() < 0 or vid.max() >= len(verts) or tid.max() >= len(uv):
        raise ModelFileError(p, f"face index outside the {len(verts)} vertices / "
                             f"{len(uv)} texture coordinates")
    mats = np.concatenate(mat_of_row)
    tri = np.concatenate([vid[:, [0, 1, 2]], vid[quad][:, [0, 2, 3]]]).astype(np.int32)
    tri_uv = np.concatenate([tid[:, [0, 1, 2]], tid[quad][:, [0, 2, 3]]]).astype(np.int32)
    tri_mat = np.concatenate([mats, mats[quad]]).astype(np.int32)
    return ObjMesh(verts, uv, tri, tri_uv, tri_mat, materials)


@dataclass(frozen=True, eq=False)
class ICTModel:
    """The ICT Face Model: a whole head with an identity PCA and named expression blendshapes.

    A head is ``neutral + identity_basis @ identity + expression_deltas @ weights`` with
    ``identity`` a priori N(0, 1) per mode and expression ``weights`` in [0, 1].

    Attributes:
        neutral: (V, 3) float32 generic neutral head, mm (x to the face's left, y up, z out).
        identity_basis: (V, 3, Ki) float32, one standard deviation of each identity mode, mm.
        expression_deltas: (V, 3, Ke) float32, each blendshape at weight 1 minus the neutral, mm.
        expression_names: Ke names (ARKit's, e.g. ``"jawOpen"``, plus any extra shapes).
        triangles: (F, 3) int32, quads split into two triangles.
        uv: (T, 2) float32 texture coordinates; triangle_uv: (F, 3) int32 ids into ``uv``.
        vertex_uv: (V, 2) float32 one UV per vertex (the first corner's; seams duplicated
            in ``uv`` are not).
        triangle_material: (F,) int32 index into ``materials``.
        regions: region name → (N,) int64 sorted vertex ids (see `REGION_MATERIALS`).
        landmark_ids: ``"ibug68"`` → (68,) int64 vertex ids, when the index file has them.
        index_sets: other vertex-id lists of ``vertex_indices.json`` (e.g.
            ``idx_to_fitting_verts``), int64.
        source: the folder read.
    """

    neutral: np.ndarray
    identity_basis: np.ndarray
    expression_deltas: np.ndarray
    expression_names: list[str]
    triangles: np.ndarray
    uv: np.ndarray
    triangle_uv: np.ndarray
    vertex_uv: np.ndarray
    triangle_material: np.ndarray
    materials: list[str]
    regions: dict[str, np.ndarray]
    landmark_ids: dict[str, np.ndarray] = field(default_factory=dict)
    index_sets: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    name: str = "ict-facekit"
    licence: str = LICENCE

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.identity_basis.shape[2])

    @property
    def num_expressions(self) -> int:
        return int(self.expression_deltas.shape[2])

    def vertices(self, identity: np.ndarray | None = None,
                 expression_weights: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) float32 head in mm for identity coefficients (N(0, 1) units, may be shorter
        than ``num_identity``) and blendshape weights (clipped to [0, 1])."""
        out = self.neutral.astype(np.float32, copy=True)
        if identity is not None and len(identity):
            a = np.asarray(identity, np.float32)
            out += self.identity_basis[:, :, :len(a)] @ a
        if expression_weights is not None and len(expression_weights):
            w = np.clip(np.asarray(expression_weights, np.float32), 0.0, 1.0)
            out += self.expression_deltas[:, :, :len(w)] @ w
        return out

    def region_triangles(self, *regions: str) -> np.ndarray:
        """(F', 3) the triangles whose material belongs to any of ``regions``."""
        names = {m for r in regions for m in REGION_MATERIALS[r]}
        ids = [i for i, m in enumerate(self.materials) if m in names]
        return self.triangles[np.isin(self.triangle_material, ids)]

    def mirror_ids(self) -> np.ndarray:
        """(V,) int64 nearest vertex to each vertex reflected in x = 0 (the model is symmetric)."""
        from scipy.spatial import cKDTree

        q = self.neutral.astype(np.float64) * np.array([-1.0, 1.0, 1.0])
        return np.asarray(cKDTree(self.neutral.astype(np.float64)).query(q)[1], np.int64)

    def to_morphable_model(self, num_identity: int | None = None) -> MorphableModel:
        """The whole head as a `MorphableModel`: identity modes as the shape basis, the
        blendshape deltas as the expression basis (kind ``"ict"``,
        ``extras["expression_weight_bounds"]`` = [0, 1]: fitters should bound them rather
        than apply an N(0, 1) prior), ``extras["expression_names"]`` the blendshape names, regions
        as ``extras["region_<name>"]`` vertex ids (`facefit.model.ict.ICTFaceModel` reads them)."""
        k = self.num_identity if num_identity is None else int(num_identity)
        extras = {f"region_{r}": v for r, v in self.regions.items()}
        extras["expression_weight_bounds"] = np.array([0.0, 1.0], np.float32)
        extras["expression_names"] = np.array(self.expression_names, dtype=str)
        return MorphableModel(
            name=self.name, mean=self.neutral, shape_basis=self.identity_basis[:, :, :k],
            expression_basis=self.expression_deltas, triangles=self.triangles,
            uv=self.vertex_uv, landmark_ids=dict(self.landmark_ids),
            mirror_ids=self.mirror_ids(), licence=self.licence, source=self.source,
            extras=extras, kind="ict")


def find_ict_folder(path: PathLike) -> Path | None:
    """The ``FaceXModel`` folder at ``path`` (or ``path/FaceXModel``), or None if neither
    holds ``generic_neutral_mesh.obj``."""
    p = Path(path)
    for cand in (p, p / "FaceXModel"):
        if (cand / NEUTRAL_FILE).is_file():
            return cand
    return None


def _index_file(path: Path) -> dict:
    if not path.is_file():
        raise ModelFileError(path, "file not found (ICT-FaceKit FaceXModel folder incomplete)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(path, f"not readable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ModelFileError(path, "expected a JSON object")
    return data


def load_ict(path: PathLike, num_identity: int | None = None) -> ICTModel:
    """Read an ICT-FaceKit ``FaceXModel`` folder (or its parent) into an `ICTModel`.

    Args:
        path: the folder holding ``generic_neutral_mesh.obj``, ``vertex_indices.json``,
            ``identityNNN.obj`` and the expression OBJs, or the folder above it.
        num_identity: read only the first N identity modes (all by default).

    Expressions are the names in the index file's ``expressions`` list, then any other OBJ
    of the folder (e.g. ``cheekRaiser_L``), sorted. Raises `ModelFileError` naming the file
    and problem: missing neutral/index file, no identity OBJ, a listed expression without
    its OBJ, a malformed OBJ line (with its number), a vertex-count mismatch.
    """
    root = Path(path)
    folder = find_ict_folder(root)
    if folder is None:
        if not root.is_dir():
            raise ModelFileError(root, "not a folder")
        raise ModelFileError(root / NEUTRAL_FILE,
                             "file not found (not an ICT-FaceKit FaceXModel folder)")
    index = _index_file(folder / INDEX_FILE)
    mesh = read_obj(folder / NEUTRAL_FILE)
    n = len(mesh.vertices)
    neutral = mesh.vertices

    stems = {q.stem for q in folder.glob("*.obj")}
    identity_stems = sorted(s for s in stems if re.fullmatch(r"identity\d+", s))
    if num_identity is not None:
        identity_stems = identity_stems[:max(int(num_identity), 0)]
    if not identity_stems:
        raise ModelFileError(folder / "identity000.obj", "file not found (no identity modes)")
    listed = [str(e) for e in index.get("expressions", [])]
    for name in listed:
        if name not in stems:
            raise ModelFileError(folder / f"{name}.obj",
                                 f"file not found (expression listed in {INDEX_FILE})")
    extra = sorted(stems - set(listed) - set(identity_stems) - {Path(NEUTRAL_FILE).stem}
                   - {s for s in stems if re.fullmatch(r"identity\d+", s)})
    expression_names = listed + extra

    def deltas(names: list[str]) -> np.ndarray:
        out = np.empty((n, 3, len(names)), np.float32)
        for k, stem in enumerate(names):
            v = read_obj_vertices(folder / f"{stem}.obj")
            if v.shape != neutral.shape:
                raise ModelFileError(folder / f"{stem}.obj", f"{len(v)} vertices, the neutral "
                                     f"mesh has {n}")
            out[:, :, k] = (v - neutral) * CM_TO_MM
        return out

    identity = deltas(identity_stems)
    expressions = deltas(expression_names)

    tri = mesh.triangles
    vertex_uv = np.zeros((n, 2), np.float32)
    if len(mesh.uv):
        ok = mesh.triangle_uv >= 0
        # Reverse order so the first corner that names a vertex wins the scatter.
        vid, tid = mesh.triangles[ok][::-1], mesh.triangle_uv[ok][::-1]
        vertex_uv[vid] = mesh.uv[tid]
    regions: dict[str, np.ndarray] = {}
    for region, names in REGION_MATERIALS.items():
        ids = [i for i, m in enumerate(mesh.materials) if m in names]
        if ids:
            regions[region] = np.unique(tri[np.isin(mesh.triangle_material, ids)]).astype(
                np.int64)
    landmarks: dict[str, np.ndarray] = {}
    index_sets: dict[str, np.ndarray] = {}
    for key, value in index.items():
        if key in ("expressions", "fitting_expressions", "incompatibilities"):
            continue
        try:
            arr = np.asarray(value, np.int64).ravel()
        except (TypeError, ValueError):
            raise ModelFileError(folder / INDEX_FILE, f"'{key}' is not a list of ids") from None
        if key.startswith("idx_to_") and key.endswith("verts") and arr.size and (
                arr.min() < 0 or arr.max() >= n):
            raise ModelFileError(folder / INDEX_FILE, f"'{key}' has vertex ids outside "
                                 f"0..{n - 1}")
        index_sets[key] = arr
    lm = index_sets.get("idx_to_landmark_verts")
    if lm is not None and lm.size == 68:
        landmarks["ibug68"] = lm
    return ICTModel(
        neutral=(neutral * CM_TO_MM).astype(np.float32), identity_basis=identity,
        expression_deltas=expressions, expression_names=expression_names, triangles=tri,
        uv=mesh.uv, triangle_uv=mesh.triangle_uv, vertex_uv=vertex_uv,
        triangle_material=mesh.triangle_material, materials=mesh.materials, regions=regions,
        landmark_ids=landmarks, index_sets=index_sets, source=str(folder))
