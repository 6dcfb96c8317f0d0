"""Write reconstructed faces: OBJ (+MTL+PNG), PLY, GLB, NPZ, overlay PNG and a JSON summary.

Every file is written atomically (`facefit.io.atomic`). Meshes keep the model's vertices in
the model's order (vertex ``i`` of the model is vertex ``i`` of every file; nothing is merged
or reordered), so files of different faces and fits correspond vertex by vertex.

Exported 3D vertices (`export_vertices`) are the fitted shape in millimetres, rotated into the
view frame by the fit's pose: right-handed, x right, y up, z towards the viewer (glTF / OBJ
viewers' convention), with the model origin at 0 (the camera translation is not applied).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from facefit.fit.result import model_frame_vertices
from facefit.io.atomic import atomic_path, write_text_atomic
from facefit.render.raster import crop_window
from facefit.render.shading import render_shaded, vertex_normals

if TYPE_CHECKING:
    from facefit.fit.result import FitResult
    from facefit.model.morphable_model import MorphableModel
    from facefit.reconstruct import Reconstruction

FORMATS = ("obj", "ply", "glb", "npz", "overlay", "json")
"""Output formats of `export_reconstructions`."""


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
    body = "\n".join(lines) + "\n" + _rows("v", vertices, "%.6f")
    if uv is not None:
        body += _rows("vt", uv, "%.6f")
    if normals is not None:
        body += _rows("vn", normals, "%.5f")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii") as f:
        f.write(body)
        f.write(_obj_faces(triangles, uv is not None, normals is not None))
    return path


def _rows(tag: str, values: np.ndarray, fmt: str) -> str:
    """``tag a b c`` lines, one per row of ``values`` (N, C)."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return ""
    row = tag + (" " + fmt) * a.shape[1] + "\n"
    return (row * len(a)) % tuple(a.ravel())


def _obj_faces(triangles: np.ndarray, with_uv: bool, with_normals: bool) -> str:
    """OBJ ``f`` lines, 1-based; the uv and normal index of a corner is its vertex index."""
    t = np.asarray(triangles, dtype=np.int64) + 1
    if len(t) == 0:
        return ""
    corner = {(False, False): "%d", (True, False): "%d/%d", (False, True): "%d//%d",
              (True, True): "%d/%d/%d"}[(with_uv, with_normals)]
    reps = corner.count("%d")
    row = "f " + " ".join([corner] * 3) + "\n"
    return (row * len(t)) % tuple(np.repeat(t.ravel(), reps))


def write_png(path: str | Path, image_rgb: np.ndarray) -> Path:
    """(H, W, 3) or (H, W, 4) uint8 image as PNG."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image_rgb, dtype=np.uint8)).save(tmp, format="PNG")
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
) -> Path:
    """Binary glTF 2.0 via trimesh, vertex order kept; the texture is embedded as PNG.

    ``uv`` is v up like OBJ (trimesh writes glTF's v-down ``1 - v``); ``texture_rgb`` is
    (T, T, 3) uint8 with row 0 at v = 1.
    """
    import trimesh

    visual = None
    if uv is not None:
        image = None if texture_rgb is None else Image.fromarray(
            np.ascontiguousarray(texture_rgb, dtype=np.uint8))
        visual = trimesh.visual.TextureVisuals(uv=np.asarray(uv, np.float64), image=image)
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, np.float64),
                           faces=np.asarray(triangles, np.int64), visual=visual, process=False)
    data = mesh.export(file_type="glb")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_npz(path: str | Path, **arrays: Any) -> Path:
    """Compressed NumPy archive of the given arrays."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


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


def write_overlay(
    path: str | Path,
    image_rgb: np.ndarray,
    verts_px: np.ndarray,
    triangles: np.ndarray,
    landmarks_68_2d: np.ndarray | None = None,
) -> Path:
    """PNG of `render_overlay`: shaded mesh over the photo plus the landmarks."""
    return write_png(path, render_overlay(image_rgb, verts_px, triangles, landmarks_68_2d))


def export_reconstructions(
    out_dir: str | Path,
    image_path: str | Path,
    image_rgb: np.ndarray,
    recons: Sequence[Reconstruction],
    model: MorphableModel,
    formats: Iterable[str] = FORMATS,
    timings_ms_extra: dict[str, float] | None = None,
) -> Path:
    """Write the faces of one image as ``STEM_faceK.{obj,mtl,png,ply,glb,npz}``,
    ``STEM_faceK_overlay.png`` and the summary ``STEM.json`` into ``out_dir``.

    Args:
        out_dir: output folder (created).
        image_path: the input image's path, as given (recorded in the JSON; names the files).
        image_rgb: (H, W, 3) uint8 input image.
        recons: the image's reconstructions; face K is ``recons[K]``.
        model: the model they were fitted with.
        formats: a subset of `FORMATS`.
        timings_ms_extra: more per-image timings (ms) added to every face's ``timings_ms``.

    Returns:
        The path of ``STEM.json`` (written only when ``"json"`` is in ``formats``).
    """
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
    out_dir = Path(out_dir)
    stem = Path(image_path).stem
    tri = np.asarray(model.triangles)
    faces = []
    for k, rec in enumerate(recons):
        t0 = time.perf_counter()
        fit, base = rec.fit, f"{stem}_face{k}"
        verts = export_vertices(model, fit)
        files: dict[str, str] = {}
        if "obj" in formats:
            files["obj"] = write_obj(out_dir / f"{base}.obj", verts, tri, model.uv, rec.texture,
                                     vertex_normals(verts, tri)).name
        if "ply" in formats:
            files["ply"] = write_ply(out_dir / f"{base}.ply", verts, tri, rec.vertex_colors).name
        if "glb" in formats:
            files["glb"] = write_glb(out_dir / f"{base}.glb", verts, tri, model.uv,
                                     rec.texture).name
        if "npz" in formats:
            files["npz"] = write_npz(
                out_dir / f"{base}.npz", shape_coeffs=fit.shape_coeffs,
                expression_coeffs=fit.expression_coeffs, rotation=fit.rotation,
                translation=fit.translation, scale=np.float64(fit.scale),
                verts_px=fit.verts_px, vertices_mm=verts, landmarks_68_2d=fit.landmarks_68_2d,
                landmarks_68_3d=fit.landmarks_68_3d, triangles=tri,
                **_model_arrays(model, fit)).name
        if "overlay" in formats:
            files["overlay"] = write_overlay(out_dir / f"{base}_overlay.png", image_rgb,
                                             fit.verts_px, tri, fit.landmarks_68_2d).name
        photometric = getattr(rec, "photometric", None)
        if photometric is not None:  # albedo texture and photo | render | error comparison
            from facefit.io.photometric_export import albedo_texture, comparison_image

            size = rec.texture.shape[0] if rec.texture is not None else 512
            files["albedo"] = write_png(out_dir / f"{base}_albedo.png", albedo_texture(
                model, photometric.albedo, size)).name
            files["compare"] = write_png(out_dir / f"{base}_compare.png", comparison_image(
                model, photometric, image_rgb)).name
        timings = {**rec.timings_ms, **(timings_ms_extra or {}),
                   "export": (time.perf_counter() - t0) * 1e3}
        faces.append(_face_summary(rec, files, timings))

    json_path = out_dir / f"{stem}.json"
    if "json" in formats:
        summary = {
            "image": str(image_path),
            "width": int(image_rgb.shape[1]),
            "height": int(image_rgb.shape[0]),
            "model": {"name": model.name, "licence": model.licence},
            "faces": faces,
        }
        write_text_atomic(json_path, json.dumps(summary, indent=1) + "\n")
    return json_path


def _model_arrays(model: MorphableModel, fit: FitResult) -> dict[str, np.ndarray]:
    """Model-specific arrays for a face's ``.npz``: the fit's extras (e.g. ``flame_pose``),
    the model's UVs ``model_uv``, and its mean albedo ``model_albedo_mean`` (V, 3) in
    [0, 1] when the model has an albedo basis (its size in ``model_albedo_components``)."""
    out = {k: np.asarray(v) for k, v in getattr(fit, "extras", {}).items()}
    out["model_uv"] = np.asarray(model.uv, np.float32)
    if model.albedo_mean is not None:
        out["model_albedo_mean"] = np.asarray(model.albedo_mean, np.float32)
        k = 0 if model.albedo_basis is None else int(model.albedo_basis.shape[2])
        out["model_albedo_components"] = np.int64(k)
    return out


def _face_summary(rec: Reconstruction, files: dict[str, str], timings: dict[str, float]
                  ) -> dict[str, Any]:
    """The JSON record of one face."""
    fit, cam = rec.fit, rec.fit.camera
    return {
        "box": _num(rec.face.box, 3),
        "score": _num(rec.face.score, 4),
        "pose": {
            "yaw_deg": _num(fit.yaw_deg, 3),
            "pitch_deg": _num(fit.pitch_deg, 3),
            "roll_deg": _num(fit.roll_deg, 3),
            "rotation": _num(fit.rotation, 6),
            "translation": _num(fit.translation, 3),
            "scale": _num(fit.scale, 6),
            "camera": {
                "kind": cam.kind,
                "focal_px": _num(cam.focal_px, 3),
                "principal_point_px": _num(cam.principal_point_px, 3),
            },
        },
        "landmarks_68_2d": _num(fit.landmarks_68_2d, 3),
        "landmarks_68_2d_contour": _num(fit.landmarks_68_2d_contour, 3),
        "landmarks_68_3d": _num(fit.landmarks_68_3d, 3),
        "shape_coeffs": _num(fit.shape_coeffs, 5),
        "expression_coeffs": _num(fit.expression_coeffs, 5),
        "fit_residual_px": _num(fit.residual_px, 3),
        "files": files,
        "timings_ms": {k: _num(v, 2) for k, v in timings.items()},
    } | _photometric_summary(rec)


def _photometric_summary(rec: Reconstruction) -> dict[str, Any]:
    """``{"photometric": {...}}`` for a photometrically refined face, else ``{}``."""
    result = getattr(rec, "photometric", None)
    if result is None:
        return {}
    from facefit.io.photometric_export import photometric_summary

    return {"photometric": photometric_summary(result)}


def _num(value: Any, digits: int) -> Any:
    """Plain Python floats (or nested lists of them) rounded to ``digits``; None for None,
    NaN or infinity (not valid JSON)."""
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return round(float(a), digits) if np.isfinite(a) else None
    return [_num(x, digits) for x in a]
