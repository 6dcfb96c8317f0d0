"""``facefit reconstruct --same-person``: several photos of one person → one identity.

Every photo's best face is detected, all are fitted together (`facefit.fit.multi_image`),
and the per-photo results are written as by plain ``reconstruct`` (with the shared shape),
plus ``identity.obj/.glb/.json``: the neutral identity mesh (expression 0, model frame, mm)
with a texture merged from all photos by visibility and viewing angle.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from facefit.fit.multi_image import MultiFit, fit_same_person, view_from_face


def _err(text: str) -> None:
    print(f"facefit: error: {' '.join(text.split())}", file=sys.stderr)


def run_same_person(args: argparse.Namespace, paths: Sequence[Path], out_dir: Path,
                    recon: Any, export: Callable[..., Any]) -> int:
    """Run the shared-identity reconstruction; returns the CLI exit code (0 or 1)."""
    from facefit.io.image import ImageError, load_image
    from facefit.reconstruct import Reconstruction

    model = recon.model
    failed = 0
    kept: list[tuple[Path, Any]] = []
    t0 = time.perf_counter()
    for path in paths:
        try:
            image = load_image(path)
        except ImageError as exc:
            _err(str(exc))
            failed += 1
            continue
        faces = recon.detector.detect(image, max_faces=1)
        if not faces:
            _err(f"{path}: no face found")
            failed += 1
            continue
        kept.append((path, faces[0]))
    if not kept:
        return 1
    if getattr(args, "camera", None) == "perspective" and not args.quiet:
        print("facefit: note: --same-person fits a scaled orthographic camera",
              file=sys.stderr)
    views = [view_from_face(model, f) for _, f in kept]
    multi = fit_same_person(model, views, method=args.pooling)
    fit_ms = (time.perf_counter() - t0) * 1e3 / len(kept)
    photometric: list[Any] = [None] * len(kept)
    if getattr(args, "refine", "none") == "photometric":
        multi, photometric = refine_same_person(args, model, multi, views,
                                                [load_image(p) for p, _ in kept])
    colours, weights = [], []
    size = args.texture_size
    for (path, face), fit, photo in zip(kept, multi.fits, photometric, strict=True):
        image = load_image(path)
        texture = colors = None
        if size:
            from facefit.io.export import needs_texture
            from facefit.reconstruct import crop_to_face
            from facefit.texture.extract import extract_texture, texel_samples

            crop, verts = crop_to_face(image, fit.verts_px, max_side=2 * size)  # sized to the face
            if needs_texture(args.formats):  # per-photo texture only for textured formats
                texture, colors = extract_texture(model, verts, crop, size=size)
            c, w = texel_samples(model, verts, crop, size=size)
            colours.append(c)
            weights.append(w)
        rec = Reconstruction(face, fit, texture, colors, {"fit": fit_ms}, photo)
        try:
            export(out_dir, path, image, [rec], model, args.formats)
        except Exception as exc:
            _err(f"{path}: cannot write results ({exc})")
            failed += 1
    write_identity(out_dir, model, multi, [p for p, _ in kept], colours, weights)
    if not args.quiet:
        refined = ", photometric" if photometric[0] is not None else ""
        print(f"facefit: {len(kept)} photos of one person ({multi.method}{refined}), "
              f"{failed} failed "
              f"-> {out_dir / 'identity.obj'}", file=sys.stderr)
    return 1 if failed else 0


def refine_same_person(args: argparse.Namespace, model: Any, multi: MultiFit,
                       views: Sequence[Any], images: Sequence[np.ndarray]
                       ) -> tuple[MultiFit, list[Any]]:
    """Joint photometric refinement (`facefit.fit.multi_photometric`) of a shared-identity
    fit: shared shape and albedo, per-photo pose, expression and lighting. Landmark targets
    are each photo's detected fixed-vertex landmarks. Returns the refined `MultiFit` and one
    `PhotometricResult` per photo."""
    from facefit.fit.photometric import PhotometricConfig, refine_photometric_multi

    loss = getattr(args, "image_loss", "l2")
    if loss == "gradient":
        if not args.quiet:
            print("facefit: note: --same-person photometric refinement supports l2 and "
                  "huber; using l2", file=sys.stderr)
        loss = "l2"
    res = refine_photometric_multi(
        model, multi.fits, images, landmarks_px=[v.points_px for v in views],
        landmark_vertex_ids=[v.vertex_ids for v in views],
        config=PhotometricConfig(iterations=getattr(args, "photometric_iterations", 100),
                                 image_loss=loss))
    return (replace(multi, shape_coeffs=res.shape_coeffs, fits=[r.fit for r in res.results],
                    neutral_vertices=res.neutral_vertices), list(res.results))


def write_identity(out_dir: Path, model: Any, multi: MultiFit, paths: Sequence[Path],
                   colours: list[np.ndarray], weights: list[np.ndarray]) -> dict[str, Path]:
    """``identity.obj`` (+ .mtl/.png), ``identity.glb`` and ``identity.json`` in ``out_dir``."""
    from facefit.io.atomic import write_text_atomic
    from facefit.io.export import write_glb, write_obj
    from facefit.io.schemas import SCHEMA_VERSION
    from facefit.render.shading import vertex_normals

    tri = np.asarray(model.triangles)
    verts = multi.neutral_vertices
    texture = None
    if colours:
        from facefit.texture.extract import merge_texels

        texture = merge_texels(colours, weights)
    files = {
        "obj": write_obj(out_dir / "identity.obj", verts, tri, model.uv, texture,
                         vertex_normals(verts, tri)),
        "glb": write_glb(out_dir / "identity.glb", verts, tri, model.uv, texture),
    }
    summary = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": model.name, "licence": model.licence},
        "method": multi.method,
        "shape_coeffs": [round(float(x), 5) for x in multi.shape_coeffs],
        "images": [{
            "image": str(p), "weight": round(float(w), 5),
            "yaw_deg": round(f.yaw_deg, 3), "pitch_deg": round(f.pitch_deg, 3),
            "roll_deg": round(f.roll_deg, 3), "residual_px": round(f.residual_px, 3),
            "expression_coeffs": [round(float(x), 5) for x in f.expression_coeffs],
        } for p, f, w in zip(paths, multi.fits, multi.weights, strict=True)],
        "files": {k: v.name for k, v in files.items()},
    }
    files["json"] = out_dir / "identity.json"
    write_text_atomic(files["json"], json.dumps(summary, indent=1) + "\n")
    return files
