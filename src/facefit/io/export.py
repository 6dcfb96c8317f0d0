"""Write reconstructed faces: OBJ (+MTL+PNG), PLY, GLB, NPZ, an overlay JPEG and a JSON summary.

Writers are sized to the work: binary formats where they exist (GLB, binary PLY, NPZ with
only the fields asked for), the ASCII OBJ formatted as one block, the arrays that depend only
on the model (triangles, UVs, their OBJ text) computed once per process, the overlay drawn
only inside each face's crop window, and one overlay per image with every face.

Every file is written atomically (`facefit.io.atomic`). Meshes keep the model's vertices in
the model's order (vertex ``i`` of the model is vertex ``i`` of every file; nothing is merged
or reordered), so files of different faces and fits correspond vertex by vertex.

Exported 3D vertices (`export_vertices`) are the fitted shape in millimetres, rotated into the
view frame by the fit's pose: right-handed, x right, y up, z towards the viewer (glTF / OBJ
viewers' convention), with the model origin at 0 (the camera translation is not applied).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from facefit.fit.result import model_frame_vertices
from facefit.io.atomic import atomic_path, write_text_atomic
from facefit.io.glb import write_glb_file
from facefit.io.records import face_record, pose_record
from facefit.io.records import rounded as _num
from facefit.io.schemas import SCHEMA_VERSION
from facefit.model.arkit import arkit_summary
from facefit.render.raster import crop_window
from facefit.render.shading import render_shaded, vertex_normals
from facefit.texture.atlas import texture_layout

if TYPE_CHECKING:
    from facefit.fit.result import FitResult
    from facefit.model.morphable_model import MorphableModel
    from facefit.reconstruct import Reconstruction

FORMATS = ("obj", "ply", "glb", "npz", "overlay", "json", "html")
"""Output formats of `export_reconstructions`."""

DEFAULT_FORMATS = ("json", "glb", "overlay")
"""What ``facefit reconstruct`` writes unless told otherwise (``--formats all``: `FORMATS`)."""

TEXTURED_FORMATS = frozenset({"obj", "ply", "glb"})
"""Formats that carry the photo's colours (UV texture or vertex colours): only these need
the texture extraction step."""

NPZ_FIELDS = ("shape_coeffs", "expression_coeffs", "rotation", "translation", "scale",
              "landmarks_68_2d", "landmarks_68_2d_contour", "landmarks_68_3d", "vertices_mm",
              "verts_px", "triangles", "model_uv", "model_albedo_mean", "extras")
"""Every field a face's ``.npz`` can hold (``extras``: the fit's model-specific arrays, e.g.
``flame_pose``; ``model_albedo_mean`` also adds ``model_albedo_components``). Every ``.npz``
also holds `NPZ_ALWAYS`."""

NPZ_DEFAULT_FIELDS = ("shape_coeffs", "expression_coeffs", "rotation", "translation", "scale",
                      "landmarks_68_2d", "landmarks_68_2d_contour", "landmarks_68_3d",
                      "vertices_mm", "extras")
"""The per-face fields written by default; the model's own arrays (triangles, UVs, mean
albedo) are the same for every face and only written when asked for."""

NPZ_ALWAYS = ("schema_version", "vertices_frame", "camera_kind", "focal_px",
              "principal_point_px")
"""Written into every face's ``.npz``: ``schema_version`` (str, `SCHEMA_VERSION`),
``vertices_frame`` (str, `VERTICES_FRAME`: the frame of ``vertices_mm``), the camera's
``camera_kind`` (str, ``"scaled_orthographic"`` or ``"perspective"``), ``focal_px``
(float, NaN for the scaled orthographic camera) and ``principal_point_px`` ((2,) float, NaN
for the scaled orthographic camera)."""

VERTICES_FRAME = "view_mm"
"""The frame of exported vertices (`export_vertices`, the ``.npz``'s ``vertices_mm``):
millimetres, the fitted face rotated by the head pose into the view frame (x right, y up,
z towards the viewer), model origin at 0 (no translation). The ``.npz``'s ``verts_px`` are
in the image frame (``"image_px"``: x right, y down in pixels, depth in pixels, larger is
farther)."""


def needs_texture(formats: Iterable[str]) -> bool:
    """Whether any of ``formats`` needs the UV texture / vertex colours."""
    return bool(TEXTURED_FORMATS.intersection(formats))


def export_vertices(model: MorphableModel, fit: FitResult) -> np.ndarray:
    """(V, 3) float32 fitted vertices in mm in the view frame (x right, y up, z to viewer);
    ``fit.vertices_mm`` when the fit has them (FLAME jaw/neck, bilinear models)."""
    verts = model_frame_vertices(model, fit)
    return (verts @ np.asarray(fit.rotation, np.float32).T).astype(np.float32)


def write_obj(
    path: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray | None = None,
    texture_rgb: np.ndarray | None = None,
    normals: np.ndarray | None = None,
) -> Path:
    """Wavefront OBJ; with a texture also ``NAME.mtl`` and ``NAME.png`` beside it.

    Args:
        path: the ``.obj`` path.
        vertices: (V, 3) positions; vertex ``i`` is written as ``v`` line ``i + 1``.
        triangles: (F, 3) vertex ids, counter-clockwise seen from outside.
        uv: optional (V, 2) texture coordinates, v up (``vt`` line ``i + 1`` for vertex ``i``).
        texture_rgb: optional (T, T, 3) uint8 texture, row 0 at v = 1 (needs ``uv``).
        normals: optional (V, 3) vertex normals (``vn`` lines).

    Returns:
        The OBJ path. The PNG and MTL are written first, the OBJ last.
    """
    path = Path(path)
    lines = ["# facefit"]
    if texture_rgb is not None:
        if uv is None:
            raise ValueError("write_obj: a texture needs uv")
        png, mtl = path.with_suffix(".png"), path.with_suffix(".mtl")
        write_png(png, texture_rgb)
        write_text_atomic(mtl, (
            "newmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
            f"map_Kd {png.name}\n"))
        lines += [f"mtllib {mtl.name}", "usemtl face"]
    tri = np.asarray(triangles)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
        f.write(_rows("v", vertices, "%.6f"))
        if uv is not None:
            f.write(_cached_rows("vt", uv, "%.6f"))
        if normals is not None:
            f.write(_rows("vn", normals, "%.5f"))
        f.write(_cached_obj_faces(tri, uv is not None, normals is not None))
    return path


def _rows(tag: str, values: np.ndarray, fmt: str) -> str:
    """``tag a b c`` lines, one per row of ``values`` (N, C), formatted as one block."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return ""
    row = tag + (" " + fmt) * a.shape[1] + "\n"
    return (row * len(a)) % tuple(a.ravel().tolist())


_MODEL_CACHE: dict[tuple[Any, ...], Any] = {}


_DIGESTS: dict[int, tuple[np.ndarray, tuple[Any, ...]]] = {}


def _cache_key(a: np.ndarray, *extra: Any) -> tuple[Any, ...]:
    """Key of ``a``'s contents: hashed once per array object (the model's triangles and
    UVs are the same objects for every face) while the array is read-only."""
    hit = _DIGESTS.get(id(a))
    if hit is not None and hit[0] is a and not a.flags.writeable:
        return (*hit[1], *extra)
    c = np.ascontiguousarray(a)
    digest = (c.shape, c.dtype.str, hash(c.tobytes()))
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        if len(_DIGESTS) >= 64:
            _DIGESTS.clear()
        _DIGESTS[id(a)] = (a, digest)  # the reference keeps the id from being reused
    return (*digest, *extra)


_FROZEN: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of a model's array (triangles, UVs), the same view object for the
    same array: `_cache_key` then hashes its contents once per process, not once per face.
    Model arrays are never modified in place."""
    hit = _FROZEN.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]
    view = np.asarray(a).view()
    view.flags.writeable = False
    if len(_FROZEN) >= 64:
        _FROZEN.clear()
    _FROZEN[id(a)] = (a, view)
    return view


def _cached(key: tuple[Any, ...], make: Any) -> Any:
    """What depends only on the model (OBJ UV and face rows, GLB index and UV bytes, the
    overlay renderer): made once per process, keyed by the arrays' contents."""
    value = _MODEL_CACHE.get(key)
    if value is None:
        if len(_MODEL_CACHE) >= 16:
            _MODEL_CACHE.clear()
        value = _MODEL_CACHE[key] = make()
    return value


def _cached_rows(tag: str, values: np.ndarray, fmt: str) -> str:
    return _cached(_cache_key(values, tag, fmt), lambda: _rows(tag, values, fmt))


def _cached_obj_faces(triangles: np.ndarray, with_uv: bool, with_normals: bool) -> str:
    return _cached(_cache_key(triangles, "f", with_uv, with_normals),
                        lambda: _obj_faces(triangles, with_uv, with_normals))


def _obj_faces(triangles: np.ndarray, with_uv: bool, with_normals: bool) -> str:
    """OBJ ``f`` lines, 1-based; the uv and normal index of a corner is its vertex index."""
    t = np.asarray(triangles, dtype=np.int64) + 1
    if len(t) == 0:
        return ""
    corner = {(False, False): "%d", (True, False): "%d/%d", (False, True): "%d//%d",
              (True, True): "%d/%d/%d"}[(with_uv, with_normals)]
    reps = corner.count("%d")
    row = "f " + " ".join([corner] * 3) + "\n"
    return (row * len(t)) % tuple(np.repeat(t.ravel(), reps).tolist())


def write_png(path: str | Path, image_rgb: np.ndarray, compress_level: int = 6) -> Path:
    """(H, W, 3) or (H, W, 4) uint8 image as PNG (zlib ``compress_level`` 0-9)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image_rgb, dtype=np.uint8)).save(
            tmp, format="PNG", compress_level=compress_level)
    return Path(path)


def write_jpeg(path: str | Path, image_rgb: np.ndarray, quality: int = 90) -> Path:
    """(H, W, 3) uint8 image as baseline JPEG."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image_rgb[..., :3], dtype=np.uint8)).save(
            tmp, format="JPEG", quality=quality)
    return Path(path)


def write_ply(
    path: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    vertex_colors: np.ndarray | None = None,
) -> Path:
    """Binary little-endian PLY: float x, y, z (+ uchar red, green, blue), int faces."""
    v = np.asarray(vertices, dtype="<f4")
    t = np.asarray(triangles, dtype="<i4")
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if vertex_colors is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(len(v), dtype=props)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if vertex_colors is not None:
        c = np.asarray(vertex_colors, dtype=np.uint8)
        vert["red"], vert["green"], vert["blue"] = c[:, 0], c[:, 1], c[:, 2]
    face = np.empty(len(t), dtype=[("n", "u1"), ("ids", "<i4", (3,))])
    face["n"], face["ids"] = 3, t
    names = {"<f4": "float", "u1": "uchar"}
    header = "\n".join([
        "ply", "format binary_little_endian 1.0", "comment facefit",
        f"element vertex {len(v)}", *(f"property {names[d]} {n}" for n, d in props),
        f"element face {len(t)}", "property list uchar int vertex_indices", "end_header",
    ]) + "\n"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vert.tobytes())
        f.write(face.tobytes())
    return Path(path)


def write_glb(
    path: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    uv: np.ndarray | None = None,
    texture_rgb: np.ndarray | None = None,
    image_format: str = "png",
) -> Path:
    """Binary glTF 2.0, one mesh, vertex order kept; the texture embedded as PNG or JPEG.

    Written directly (float32 positions, uint32 indices, float32 ``TEXCOORD_0``), with the
    model-only buffers (indices, UVs) packed once per process.

    Args:
        path: the ``.glb`` path.
        vertices: (V, 3) positions.
        triangles: (F, 3) vertex ids, counter-clockwise seen from outside.
        uv: optional (V, 2) texture coordinates, v up like OBJ (written as glTF's v-down
            ``1 - v``).
        texture_rgb: optional (T, T, 3) uint8 texture, row 0 at v = 1 (needs ``uv``).
        image_format: ``"png"`` (lossless) or ``"jpeg"`` (quality 90: about 10x faster to
            encode and smaller) for the embedded texture.
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    if texture_rgb is not None and uv is None:
        raise ValueError("write_glb: a texture needs uv")
    v = np.ascontiguousarray(vertices, dtype="<f4")
    tri = np.asarray(triangles)
    parts: list[bytes | memoryview] = []  # written in turn, not joined (1.6 MB a face)
    views: list[dict[str, Any]] = []
    accessors: list[dict[str, Any]] = []
    offset = [0]

    def view(raw: bytes | memoryview, target: int | None = None) -> int:
        size = memoryview(raw).nbytes
        views.append({"buffer": 0, "byteOffset": offset[0],
                      "byteLength": size} | ({"target": target} if target else {}))
        parts.append(raw)
        if size % 4:
            parts.append(b"\0" * (-size % 4))
        offset[0] += size + (-size % 4)
        return len(views) - 1

    def accessor(raw: bytes | memoryview, count: int, kind: str, ctype: int, target: int,
                 bounds: tuple[list[float], list[float]] | None = None) -> int:
        acc = {"bufferView": view(raw, target), "componentType": ctype, "count": count,
               "type": kind}
        if bounds is not None:
            acc["min"], acc["max"] = bounds
        accessors.append(acc)
        return len(accessors) - 1

    # per column: a reduction along axis 0 of (V, 3) is ~20x slower
    bounds = (([float(v[:, k].min()) for k in range(3)], [float(v[:, k].max()) for k in range(3)])
              if len(v) else ([0.0] * 3, [0.0] * 3))
    attributes = {"POSITION": accessor(memoryview(v.reshape(-1).view(np.uint8)), len(v),
                                       "VEC3", 5126, 34962, bounds)}
    if uv is not None:
        attributes["TEXCOORD_0"] = accessor(_glb_uv_bytes(np.asarray(uv)), len(v), "VEC2", 5126,
                                            34962)
    small = len(v) <= 65535  # 16-bit indices when they fit: half the bytes (0.6 MB a face)
    indices = accessor(_glb_index_bytes(tri, small), int(tri.size), "SCALAR",
                       5123 if small else 5125, 34963)
    material: dict[str, Any] = {"pbrMetallicRoughness": {
        "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
        "roughnessFactor": 1.0}, "doubleSided": False}
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "facefit"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [{"primitives": [{"attributes": attributes, "indices": indices,
                                    "material": 0, "mode": 4}]}],
        "materials": [material],
    }
    if texture_rgb is not None:
        buf = io.BytesIO()
        image = Image.fromarray(np.ascontiguousarray(texture_rgb[..., :3], dtype=np.uint8))
        if image_format == "png":
            image.save(buf, format="PNG", compress_level=3)
        else:
            image.save(buf, format="JPEG", quality=90)
        gltf["images"] = [{"bufferView": view(buf.getvalue()),
                           "mimeType": f"image/{image_format}"}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071,
                             "wrapT": 33071}]
        gltf["textures"] = [{"source": 0, "sampler": 0}]
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0, "texCoord": 0}
    return write_glb_file(path, gltf, views, accessors, parts)


def _glb_uv_bytes(uv: np.ndarray) -> bytes:
    """glTF TEXCOORD_0 bytes: (u, 1 - v) float32 little-endian."""
    return _cached(_cache_key(uv, "uv"), lambda: np.ascontiguousarray(
        np.c_[uv[:, 0], 1.0 - uv[:, 1]], dtype="<f4").tobytes())


def _glb_index_bytes(triangles: np.ndarray, small: bool) -> bytes:
    return _cached(_cache_key(triangles, "idx", small), lambda: np.ascontiguousarray(
        triangles, dtype="<u2" if small else "<u4").tobytes())


def write_npz(path: str | Path, compress: bool = True, **arrays: Any) -> Path:
    """NumPy archive of the given arrays (zip-deflated unless ``compress`` is False)."""
    with atomic_path(path) as tmp:
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)
    return Path(path)


def npz_arrays(model: MorphableModel, fit: FitResult, vertices_mm: np.ndarray,
               fields: Iterable[str] = NPZ_DEFAULT_FIELDS) -> dict[str, np.ndarray]:
    """The arrays of one face's ``.npz``, only those of ``fields`` (a subset of `NPZ_FIELDS`)."""
    fields = set(fields)
    unknown = fields - set(NPZ_FIELDS)
    if unknown:
        raise ValueError(f"unknown npz fields {sorted(unknown)}; choose from {NPZ_FIELDS}")
    every = {
        "shape_coeffs": fit.shape_coeffs, "expression_coeffs": fit.expression_coeffs,
        "rotation": fit.rotation, "translation": fit.translation, "scale": np.float64(fit.scale),
        "landmarks_68_2d": fit.landmarks_68_2d, "landmarks_68_3d": fit.landmarks_68_3d,
        "landmarks_68_2d_contour": fit.landmarks_68_2d_contour,
        "vertices_mm": vertices_mm, "verts_px": fit.verts_px, "triangles": model.triangles,
        "model_uv": np.asarray(model.uv, np.float32),
    }
    cam = fit.camera
    out = {
        "schema_version": np.str_(SCHEMA_VERSION), "vertices_frame": np.str_(VERTICES_FRAME),
        "camera_kind": np.str_(cam.kind),
        "focal_px": np.float64(np.nan if cam.focal_px is None else cam.focal_px),
        "principal_point_px": np.full(2, np.nan) if cam.principal_point_px is None
        else np.asarray(cam.principal_point_px, np.float64),
    }
    out |= {k: np.asarray(v) for k, v in every.items() if k in fields}
    if "extras" in fields:
        extras = getattr(fit, "extras", {})
        clash = set(extras) & set(out)
        if clash:
            raise ValueError(f"fit extras {sorted(clash)} would overwrite npz fields")
        out |= {k: np.asarray(v) for k, v in extras.items()}
    if "model_albedo_mean" in fields and model.albedo_mean is not None:
        out["model_albedo_mean"] = np.asarray(model.albedo_mean, np.float32)
        k = 0 if model.albedo_basis is None else int(model.albedo_basis.shape[2])
        out["model_albedo_components"] = np.int64(k)
    return out


def render_overlay(
    image_rgb: np.ndarray,
    verts_px: np.ndarray,
    triangles: np.ndarray,
    landmarks_2d: np.ndarray | None = None,
    alpha: float = 0.6,
) -> np.ndarray:
    """(H, W, 3) uint8: the shaded mesh alpha-blended over the photo, landmarks as dots."""
    import cv2

    out = np.ascontiguousarray(image_rgb[..., :3], dtype=np.uint8).copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1 = crop_window(verts_px, h, w)
    if x1 > x0 and y1 > y0:
        shifted = np.asarray(verts_px, np.float32) - np.array([x0, y0, 0], np.float32)
        rgb, mask = render_shaded(shifted, triangles, y1 - y0, x1 - x0)
        crop = out[y0:y1, x0:x1].astype(np.float32)
        blend = (1 - alpha) * crop + alpha * 255.0 * rgb
        out[y0:y1, x0:x1] = np.where(mask[..., None], blend + 0.5, crop).astype(np.uint8)
    if landmarks_2d is not None:
        radius = max(1, round(min(h, w) / 250))
        for x, y in np.asarray(landmarks_2d, np.float64)[:, :2]:  # 68 points, not pixels
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(out, (round(x * 16), round(y * 16)), radius * 16, (0, 255, 0), -1,
                           lineType=cv2.LINE_AA, shift=4)
    return out


OVERLAY_MAX_SIDE = 2048
"""Overlays of larger photos are drawn on the photo shrunk to this side (a preview: a
7-megapixel photo's overlay costs what a 3-megapixel one does)."""


def overlay_faces(image_rgb: np.ndarray, model: MorphableModel,
                  fits: Sequence[FitResult], max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8: every fitted face shaded over one copy of the photo, with its
    landmarks; each face rasterised only inside its crop window, at a level of detail whose
    triangles are about a pixel (`facefit.render.overlay.OverlayRenderer`). A photo longer than
    ``max_side`` is shrunk to it first (area averaging), and the fits with it."""
    from facefit.render.overlay import OverlayRenderer

    renderer = _cached(_cache_key(_frozen(model.triangles), "overlay", model.name,
                                  model.num_vertices),
                       lambda: OverlayRenderer(np.asarray(model.mean), model.triangles))
    out = np.ascontiguousarray(image_rgb[..., :3], dtype=np.uint8)
    h, w = out.shape[:2]
    f = 1.0
    if max(h, w) > max_side:
        import cv2

        f = max_side / max(h, w)
        out = cv2.resize(out, (max(1, round(w * f)), max(1, round(h * f))),
                         interpolation=cv2.INTER_AREA)
    for fit in fits:
        verts = np.asarray(fit.verts_px, np.float32)
        marks = np.asarray(fit.landmarks_68_2d, np.float64)
        if f != 1.0:  # pixel centres: x' + 0.5 = (x + 0.5) f; depth scales with x and y
            verts = np.column_stack([(verts[:, :2] + 0.5) * f - 0.5, verts[:, 2] * f])
            marks = (marks + 0.5) * f - 0.5
        out = renderer.render(out, verts, _pixels_per_mm(model, fit) * f, marks)
    return out


def _pixels_per_mm(model: MorphableModel, fit: FitResult) -> float:
    """Image pixels per model millimetre: the fit's scale for the orthographic camera, else
    the projected face's extent over the mean face's."""
    if fit.camera.kind != "perspective" and np.isfinite(fit.scale) and fit.scale > 0:
        return float(fit.scale)
    px = np.ptp(np.asarray(fit.verts_px)[:, :2], axis=0).max()
    mm = np.ptp(np.asarray(model.mean)[:, :2], axis=0).max()
    return float(px / mm) if mm > 0 else 1.0


def write_overlay(path: str | Path, image_rgb: np.ndarray, model: MorphableModel,
                  fits: Sequence[FitResult], quality: int = 90) -> Path:
    """JPEG of `overlay_faces` (a preview: about 50x faster to encode than PNG here)."""
    return write_jpeg(path, overlay_faces(image_rgb, model, fits), quality)


def export_reconstructions(
    out_dir: str | Path,
    image_path: str | Path,
    image_rgb: np.ndarray,
    recons: Sequence[Reconstruction],
    model: MorphableModel,
    formats: Iterable[str] = FORMATS,
    timings_ms_extra: dict[str, float] | None = None,
    name: str | None = None,
    npz_fields: Iterable[str] = NPZ_DEFAULT_FIELDS,
) -> Path:
    """Write the faces of one image as ``NAME_faceK.{obj,mtl,png,ply,glb,npz}``, one
    ``NAME_overlay.jpg`` with every face, and the summary ``NAME.json`` into ``out_dir``.

    An image without faces (``recons`` empty) still gets its JSON, with ``"faces": []``.

    Args:
        out_dir: output folder (created).
        image_path: the input image's path, as given (recorded in the JSON).
        image_rgb: (H, W, 3) uint8 input image.
        recons: the image's reconstructions; face K is ``recons[K]``.
        model: the model they were fitted with.
        formats: a subset of `FORMATS`.
        timings_ms_extra: more per-image timings (ms) added to every face's ``timings_ms``.
        name: the base name of the outputs (default: the image's stem; a batch passes
            unique names, `facefit.batch.names.output_names`).
        npz_fields: the fields of each ``.npz`` (a subset of `NPZ_FIELDS`).

    Returns:
        The path of ``NAME.json`` (written only when ``"json"`` is in ``formats``).
    """
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
    out_dir = Path(out_dir)
    stem = name if name is not None else Path(image_path).stem
    tri = _frozen(model.triangles)
    t_image = time.perf_counter()
    overlay_name = None
    if "overlay" in formats and recons:
        overlay_name = write_overlay(out_dir / f"{stem}_overlay.jpg", image_rgb, model,
                                     [r.fit for r in recons]).name
    overlay_ms = (time.perf_counter() - t_image) * 1e3 / max(len(recons), 1)
    faces = []
    for k, rec in enumerate(recons):
        t0 = time.perf_counter()
        fit, base = rec.fit, f"{stem}_face{k}"
        verts = export_vertices(model, fit) if set(formats) - {"json", "overlay"} else None
        files: dict[str, str] = {}
        if "obj" in formats or "glb" in formats:  # split at UV seams (ICT), else as is
            layout = texture_layout(model)
            split, tri_uv, uv = layout.mesh(verts, tri)
            tri_uv, uv = _frozen(tri_uv), _frozen(uv)
        if "obj" in formats:
            normals = layout.mesh(vertex_normals(verts, tri), tri)[0]
            files["obj"] = write_obj(out_dir / f"{base}.obj", split, tri_uv, uv, rec.texture,
                                     normals).name
        if "ply" in formats:
            files["ply"] = write_ply(out_dir / f"{base}.ply", verts, tri, rec.vertex_colors).name
        if "glb" in formats:
            files["glb"] = write_glb(out_dir / f"{base}.glb", split, tri_uv, uv,
                                     rec.texture, image_format="jpeg").name
        if "npz" in formats:
            files["npz"] = write_npz(out_dir / f"{base}.npz", compress=False,
                                     **npz_arrays(model, fit, verts, npz_fields)).name
        if overlay_name is not None:
            files["overlay"] = overlay_name
        photometric = getattr(rec, "photometric", None)
        # albedo texture and photo | render | error comparison: image outputs, not for a
        # JSON-only run (its JSON still has the refinement's numbers)
        if photometric is not None and set(formats) - {"json"}:
            from facefit.io.photometric_export import albedo_texture, comparison_image

            size = rec.texture.shape[0] if rec.texture is not None else 512
            # zlib level 1: ~5x faster to encode than the default 6, ~10 % larger
            files["albedo"] = write_png(out_dir / f"{base}_albedo.png", albedo_texture(
                model, photometric.albedo, size), compress_level=1).name
            files["compare"] = write_png(out_dir / f"{base}_compare.png", comparison_image(
                model, photometric, image_rgb), compress_level=1).name
        arkit = _arkit(model, rec)
        timings = {**rec.timings_ms, **(timings_ms_extra or {}),
                   "export": (time.perf_counter() - t0) * 1e3 + overlay_ms}
        faces.append(_face_summary(rec, files, timings) | arkit)

    json_path = out_dir / f"{stem}.json"
    summary = {
        "schema_version": SCHEMA_VERSION,
        "image": str(image_path),
        "width": int(image_rgb.shape[1]),
        "height": int(image_rgb.shape[0]),
        "model": {"name": model.name, "licence": model.licence},
        "faces": faces,
    }
    if "json" in formats:
        # compact: the indented form goes through json's pure-Python encoder (~7 ms a face)
        write_text_atomic(json_path, json.dumps(summary, separators=(",", ":")) + "\n")
    if "html" in formats:  # the page inlines the files written above
        from facefit.io.html import write_image_page

        write_image_page(json_path, summary=summary, photo_rgb=image_rgb)
    return json_path


def export(
    reconstructions: Sequence[Reconstruction],
    out_dir: str | Path,
    image: str | Path | np.ndarray | Any,
    formats: Iterable[str] = DEFAULT_FORMATS,
    *,
    model: MorphableModel | None = None,
    name: str | None = None,
    npz_fields: Iterable[str] = NPZ_DEFAULT_FIELDS,
) -> Path:
    """Write the faces `facefit.reconstruct` found in ``image`` as ``facefit reconstruct``
    does (``--formats``, ``--npz-fields``): ``NAME_faceK.*`` per face, ``NAME_overlay.jpg``
    and ``NAME.json`` (schema `facefit.io.schemas`), every file atomically.

    Example::

        faces = facefit.reconstruct("photo.jpg")
        facefit.export(faces, "out", "photo.jpg", formats=("json", "glb", "npz"))

    Args:
        reconstructions: the faces of one image (``facefit.reconstruct(image)`` or
            `facefit.Reconstructor.reconstruct`).
        out_dir: output folder (created with its parents).
        image: the image they came from: a path (read again for the overlay, recorded in
            the JSON), or an image as `facefit.io.image.to_rgb` takes it (a PIL image, an
            array), recorded as ``NAME``.
        formats: a subset of `FORMATS` (default `DEFAULT_FORMATS`; textured formats use
            each reconstruction's texture, if it has one).
        model: the model they were fitted with (default: the default model, as
            `facefit.reconstruct` uses); ValueError when its vertex count does not match.
        name: base name of the files (default: the image file's stem, else ``"image"``).
        npz_fields: fields of each ``.npz`` (a subset of `NPZ_FIELDS`).

    Returns:
        The path of ``NAME.json`` (written when ``"json"`` is in ``formats``).
    """
    from facefit.io.image import to_rgb

    if model is None:
        from facefit.model import load_default_model

        model = load_default_model()
    for k, rec in enumerate(reconstructions):
        if len(rec.fit.verts_px) != model.num_vertices:
            raise ValueError(f"face {k} has {len(rec.fit.verts_px)} vertices, model "
                             f"{model.name} {model.num_vertices}: pass the model it was "
                             "fitted with (model=...)")
    is_path = isinstance(image, str | os.PathLike)
    stem = name if name is not None else (Path(image).stem if is_path else "image")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return export_reconstructions(out, str(image) if is_path else stem, to_rgb(image),
                                  reconstructions, model, tuple(formats), name=stem,
                                  npz_fields=npz_fields)


def _arkit(model: MorphableModel, rec: Reconstruction) -> dict[str, Any]:
    """``{"arkit_blendshapes": ...}`` of one face (`facefit.model.arkit`), or ``{}``.

    At the fit's own pose and identity (`facefit.model.arkit.arkit_for_pose`: one bounded
    least-squares solve, about 8 ms a face, the per-frame path of ``facefit video``) rather
    than a separate blendshape fit of pose, identity and weights (`arkit_summary`: about
    175 ms a face, five times the detection and fit together); mean difference of the 52
    weights 0.01-0.13 on AFLW2000-3D faces. Faces the solve cannot take (no 68-point
    landmarks) fall back to `arkit_summary`."""
    from facefit.fit.core.camera import camera_pose
    from facefit.model.arkit import arkit_for_pose

    fit, face = rec.fit, getattr(rec, "face", None)
    weights = None
    if face is not None and getattr(fit, "vertices_mm", None) is None:
        cam = fit.camera
        pose = (camera_pose(fit.rotation, fit.scale, fit.translation) if cam.kind !=
                "perspective" else camera_pose(fit.rotation, fit.scale, fit.translation,
                                               cam.focal_px, cam.principal_point_px))
        weights = arkit_for_pose(model, face, pose, fit.shape_coeffs, fit.expression_coeffs)
    return arkit_summary(model, rec) if weights is None else {"arkit_blendshapes": weights}


def _face_summary(rec: Reconstruction, files: dict[str, str], timings: dict[str, float]
                  ) -> dict[str, Any]:
    """The JSON record of one face of a photo."""
    from facefit.detect.network import landmark_source

    fit, cam = rec.fit, rec.fit.camera
    pose = pose_record(fit.rotation, fit.scale, fit.translation, cam.kind, cam.focal_px,
                       cam.principal_point_px, (fit.yaw_deg, fit.pitch_deg, fit.roll_deg))
    return face_record(
        rec.face.box, rec.face.score, pose, fit.landmarks_68_2d, fit.expression_coeffs,
        fit.residual_px, landmark_source=landmark_source(rec.face),
        landmarks_68_2d_contour=_num(fit.landmarks_68_2d_contour, 3),
        landmarks_68_3d=_num(fit.landmarks_68_3d, 3),
        shape_coeffs=_num(fit.shape_coeffs, 5),
        files=files,
        timings_ms={k: _num(v, 2) for k, v in timings.items()},
    ) | _photometric_summary(rec)


def _photometric_summary(rec: Reconstruction) -> dict[str, Any]:
    """``{"photometric": {...}}`` for a photometrically refined face, else ``{}``."""
    result = getattr(rec, "photometric", None)
    if result is None:
        return {}
    from facefit.io.photometric_export import photometric_summary

    return {"photometric": photometric_summary(result)}
