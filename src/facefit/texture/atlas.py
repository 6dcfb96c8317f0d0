"""Texture layouts with per-corner UVs: the default model's per-vertex UVs, and one texture
square packed from the ICT Face Model's UV tiles.

ICT's UVs are tiles side by side, one texture per material (face skin in u in [0, 1], back
of the head and neck in [1, 2], gums and tongue in [2, 3], teeth in [3, 4]; each eyeball
fills tile 0 again), and seams between them give a vertex one UV per tile. One UV per
vertex folds those seams (a face/back triangle then spans both tiles, covering the face in
UV space), so texturing ICT needs the corners' own UVs: `texture_layout` packs the face
tile into the top-left `FACE_SCALE` of the square (most of the texels; the only part
sampled from the photo), the back-of-head tile into the strip on the right (filled: what a
photo shows of it is hair), and gives every other material
(eyes, teeth, eye shells, lashes) a small cell of a neutral fixed colour in the strip at
the bottom: those parts are never sampled from the photo, so never smeared with skin.
Exports split the mesh's vertices at the seams (`TextureLayout.mesh`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.model.morphable_model import MorphableModel

__all__ = ["FACE_SCALE", "ICT_HEAD_UV", "NEUTRAL_COLOURS", "TextureLayout", "pack_ict_tiles",
           "texture_layout"]

ICT_HEAD_UV = Path(__file__).parent / "data" / "ict_head_uv.npz"
"""Per-corner UVs of the packaged ICT head (`scripts/build_ict_texture_layout.py`)."""

FACE_SCALE = 0.86
"""Side of the square (in UV units) that ICT's face tile is scaled into (top-left)."""

BACK_STRIP = 0.87
"""ICT's back-of-head tile is squeezed into u in [BACK_STRIP, 1] (all of v)."""

SKIN_MATERIALS = ("M_Face", "M_BackHead")
"""ICT materials textured from the photo."""

NEUTRAL_COLOURS: dict[str, tuple[int, int, int]] = {
    "M_ScleraLeft": (226, 220, 212), "M_ScleraRight": (226, 220, 212),
    "M_IrisLeft": (78, 58, 44), "M_IrisRight": (78, 58, 44),
    "M_Teeth": (224, 218, 198), "M_GumsTongue": (168, 84, 84),
    "M_LacrimalFluid": (226, 220, 212), "M_EyeBlend": (226, 220, 212),
    "M_EyeOcclusion": (226, 220, 212), "M_EyeLashes": (38, 30, 26),
}
"""Fixed colours (sRGB) of ICT's non-skin materials; any other material is mid grey."""

CELL = 0.06
"""Side of a fixed-colour cell (UV units); cells sit in the strip below the face tile."""


@dataclass(frozen=True, eq=False)
class TextureLayout:
    """Where each triangle corner lies in the texture square.

    Attributes:
        uv: (U, 2) float32 UVs in [0, 1], v up.
        triangle_uv: (F, 3) int32 ids into ``uv`` per corner of the model's triangles.
        vertex_ids: (U,) int64 the mesh vertex of each UV (a seam vertex has several UVs).
        vertex_uv: (V, 2) float32 one UV per vertex (its first corner's), for vertex colours.
        fixed: (F,) bool triangles of a fixed colour (never sampled from the photo).
        sampled: (F,) bool triangles textured from the photo (the others are filled).
        cells: ((u0, v0, u1, v1), (r, g, b)) rectangles painted in a fixed colour.
    """

    uv: np.ndarray
    triangle_uv: np.ndarray
    vertex_ids: np.ndarray
    vertex_uv: np.ndarray
    fixed: np.ndarray
    sampled: np.ndarray
    cells: tuple[tuple[tuple[float, float, float, float], tuple[int, int, int]], ...] = ()

    @property
    def per_vertex(self) -> bool:
        """True when every vertex has one UV, in vertex order (no split needed)."""
        return len(self.uv) == len(self.vertex_uv) and bool(
            np.array_equal(self.vertex_ids, np.arange(len(self.vertex_ids))))

    def mesh(self, verts: np.ndarray, triangles: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertices (U, ...), triangles (F, 3), uv (U, 2)) of a mesh split at the UV seams,
        for formats with one UV per vertex (glTF, OBJ written with shared ids);
        unchanged when the layout is per vertex. ``verts`` may be any per-vertex array."""
        if self.per_vertex:
            return verts, np.asarray(triangles), self.uv
        return np.asarray(verts)[self.vertex_ids], self.triangle_uv, self.uv


def _per_vertex_layout(model: MorphableModel) -> TextureLayout:
    uv = np.asarray(model.uv, np.float32)
    tri = np.asarray(model.triangles, np.int32)
    return TextureLayout(uv, tri, np.arange(len(uv), dtype=np.int64), uv,
                         np.zeros(len(tri), bool), np.ones(len(tri), bool))


def pack_ict_tiles(triangles: np.ndarray, uv: np.ndarray, triangle_uv: np.ndarray,
                   materials: np.ndarray, num_vertices: int) -> TextureLayout:
    """One texture square from ICT's tiled per-corner UVs.

    Args:
        triangles: (F, 3) vertex ids.
        uv: (T, 2) ICT UVs (tile k covers u in [k, k + 1]).
        triangle_uv: (F, 3) ids into ``uv`` per corner.
        materials: (F,) material name of each triangle (``M_Face``, ``M_BackHead``, ...).
        num_vertices: V.
    """
    tri = np.asarray(triangles, np.int64)
    corner = np.asarray(uv, np.float64)[np.asarray(triangle_uv, np.int64)]  # (F, 3, 2)
    mats = np.asarray(materials).astype(str)
    out = np.zeros_like(corner)
    face = mats == "M_Face"
    out[face] = corner[face] * FACE_SCALE + [0.0, 1.0 - FACE_SCALE]
    back = mats == "M_BackHead"
    out[back, :, 0] = BACK_STRIP + (corner[back, :, 0] - 1.0) * (1.0 - BACK_STRIP)
    out[back, :, 1] = corner[back, :, 1]
    fixed = ~np.isin(mats, SKIN_MATERIALS)
    colours = [NEUTRAL_COLOURS.get(m, (128, 128, 128)) for m in mats[fixed]]
    palette = sorted(set(colours))
    if len(palette) * (CELL + 0.04) > FACE_SCALE:
        raise ValueError(f"too many fixed colours for the texture layout: {len(palette)}")
    cells = []
    for k, colour in enumerate(palette):
        cu, cv = 0.02 + (k + 0.5) * (CELL + 0.04), (1.0 - FACE_SCALE) / 2
        cells.append(((cu - CELL / 2, cv - CELL / 2, cu + CELL / 2, cv + CELL / 2), colour))
    if palette:  # every corner of a fixed triangle at its cell's centre (zero UV area)
        which = np.array([palette.index(c) for c in colours], np.int64)
        centres = np.array([[(c[0][0] + c[0][2]) / 2, (c[0][1] + c[0][3]) / 2]
                            for c in cells])
        out[fixed] = centres[which][:, None, :]
    # one UV id per distinct (vertex, UV) pair
    rows = np.c_[tri.reshape(-1).astype(np.float64), out.reshape(-1, 2).astype(np.float32)]
    table, inverse = np.unique(rows, axis=0, return_inverse=True)
    vertex_ids = table[:, 0].astype(np.int64)
    uv_out = table[:, 1:].astype(np.float32)
    vertex_uv = np.zeros((num_vertices, 2), np.float32)
    vertex_uv[vertex_ids[::-1]] = uv_out[::-1]  # the first UV of each vertex wins
    return TextureLayout(uv_out, inverse.reshape(-1, 3).astype(np.int32), vertex_ids,
                         vertex_uv, fixed, mats == "M_Face", tuple(cells))


def _ict_corners(model: MorphableModel) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(uv, triangle_uv, materials) of an ICT model's triangles: the packaged head's file,
    or the original OBJ in the folder the model was loaded from; None when neither matches
    the model's triangles."""
    if model.kind != "ict":
        return None
    tri = np.asarray(model.triangles)
    if ICT_HEAD_UV.is_file():
        with np.load(ICT_HEAD_UV, allow_pickle=False) as z:
            if z["triangles"].shape == tri.shape and np.array_equal(z["triangles"], tri):
                return z["uv"], z["triangle_uv"], z["materials"][z["material"]]
    from facefit.model.io_ict import NEUTRAL_FILE, read_obj

    source = Path(str(model.source))
    for obj in (source / "FaceXModel" / NEUTRAL_FILE, source / NEUTRAL_FILE):
        if obj.is_file():
            mesh = read_obj(obj)
            if mesh.triangles.shape == tri.shape and np.array_equal(mesh.triangles, tri) \
                    and (mesh.triangle_uv >= 0).all():
                return mesh.uv, mesh.triangle_uv, np.asarray(mesh.materials)[
                    mesh.triangle_material]
    return None


@functools.lru_cache(maxsize=8)
def texture_layout(model: MorphableModel) -> TextureLayout:
    """The texture layout of ``model`` (cached per model): ICT's tiles packed into one
    square (`pack_ict_tiles`) when the model is an ICT head whose per-corner UVs are known
    (the packaged ``--model ict``, or a ``FaceXModel`` folder), else the model's per-vertex
    ``uv``."""
    corners = _ict_corners(model)
    if corners is None:
        return _per_vertex_layout(model)
    return pack_ict_tiles(model.triangles, *corners, num_vertices=model.num_vertices)
