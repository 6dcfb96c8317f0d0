"""Several photos of one person → one identity: `reconstruct_same_person` (the library API,
``facefit.reconstruct_same_person``) and `run_same_person` (``facefit reconstruct
--same-person``, which writes the results).

Every photo's best face is detected and all are fitted together (`facefit.fit.multi_image`)
with the same model-kind dispatch, camera and landmark prior as a single photo
(`facefit.reconstruct.Reconstructor`, `facefit.fit.multi_image.default_landmark_sigma`): FLAME
photos keep their own jaw and neck rotations, a perspective `Reconstructor` fits perspective
cameras. ``run_same_person`` writes the per-photo results as plain ``reconstruct`` does (with
the shared shape), plus ``identity.obj/.glb/.json``: the neutral identity mesh (expression 0,
model frame, mm) with a texture merged from all photos by visibility and viewing angle.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.detect.network import refinement_faces
from facefit.fit.face_fit import with_landmark_outputs
from facefit.fit.landmark_fit import camera_sets
from facefit.fit.multi_image import (
    MultiFit,
    ViewPoints,
    default_landmark_sigma,
    fit_same_person,
    view_from_face,
)
from facefit.fit.result import FitResult
from facefit.io.image import ImageError, ImageInput, to_rgb
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel
from facefit.reconstruct import Reconstruction, Reconstructor, crop_to_face


class NoFaceFoundError(ValueError):
    """No photo of a same-person set gave a face; ``failures`` lists (index, reason)."""

    def __init__(self, failures: list[tuple[int, str]]) -> None:
        self.failures = failures
        super().__init__("no face found in any photo: " + "; ".join(r for _, r in failures))


@dataclass(frozen=True, eq=False)
class SamePersonResult:
    """The result of `reconstruct_same_person`.

    Attributes:
        multi: the shared-identity fit (shape, one `FitResult` per photo used, neutral mesh).
        reconstructions: one `Reconstruction` per photo used (face, fit, per-photo texture
            when asked for, photometric result when refined).
        used: index (into the input images) of each photo used, in order.
        images: the photos used, (H, W, 3) uint8 RGB.
        failures: (index, one-line reason) of each photo left out (unreadable, no face).
        texels: per photo used, the (colours, weights) UV samples that
            `facefit.texture.extract.merge_texels` merges into the identity texture (empty
            when the reconstructor's ``texture_size`` is 0).
        notes: one-line notes on options that were adapted.
    """

    multi: MultiFit
    reconstructions: list[Reconstruction]
    used: list[int]
    images: list[np.ndarray]
    failures: list[tuple[int, str]]
    texels: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def identity_texture(self) -> np.ndarray | None:
        """(T, T, 3) uint8 texture of the neutral mesh merged from every photo, or None."""
        if not self.texels:
            return None
        from facefit.texture.extract import merge_texels

        return merge_texels([c for c, _ in self.texels], [w for _, w in self.texels])


def reconstruct_same_person(
    images: Sequence[ImageInput],
    reconstructor: Reconstructor | None = None,
    method: str = "joint",
    landmark_sigma: float | None = None,
    photo_textures: bool = True,
) -> SamePersonResult:
    """Reconstruct one identity from several photos of the same person.

    Args:
        images: what `Reconstructor.reconstruct` takes (paths, PIL images, greyscale, RGB
            or RGBA arrays: `facefit.io.image.to_rgb`), one face each (the best face of a
            photo with several is used).
        reconstructor: model, detector, camera, texture size and refinement, as for single
            photos (the default `Reconstructor` when None).
        method: ``"joint"`` (one Gauss-Newton fit of the shared shape and every photo's
            pose and expression) or ``"confidence"`` (per-photo fits pooled, then re-fitted
            with the pooled shape), `facefit.fit.multi_image.fit_same_person`.
        landmark_sigma: landmark noise as a fraction of the face size (default: the
            single-photo default of the model's kind, `default_landmark_sigma`).
        photo_textures: also texture each photo's own fit (else only the identity's samples).

    Raises:
        NoFaceFoundError: no photo gave a face (the message lists why, one line).
        ValueError: a bad ``method``.
    """
    if method not in ("joint", "confidence"):
        raise ValueError(f"method must be 'joint' or 'confidence', got {method!r}")
    recon = Reconstructor() if reconstructor is None else reconstructor
    model: MorphableModel = recon.model
    fm = face_model(model)
    sigma = default_landmark_sigma(fm.kind) if landmark_sigma is None else landmark_sigma
    used: list[int] = []
    failures: list[tuple[int, str]] = []
    photos: list[np.ndarray] = []
    faces: list[FaceLandmarks] = []
    focals: list[float | None] = []  # each photo's known focal length (EXIF), or None
    t0 = time.perf_counter()
    for i, item in enumerate(images):
        name = str(item) if isinstance(item, (str, Path)) else f"image {i}"
        try:
            image = to_rgb(item)
        except ImageError as exc:
            failures.append((i, str(exc)))
            continue
        found = recon.detector.detect(image, max_faces=1)
        if not found:
            failures.append((i, f"{name}: no face found"))
            continue
        used.append(i)
        photos.append(image)
        faces.append(found[0])
        focals.append(recon.photo_focal_px(item))
    if not used:
        raise NoFaceFoundError(failures)
    # the photos' camera sets (with auto, a refinement and unknown focal lengths, two: the
    # joint refinement keeps one); the landmark fit is the first set's
    sets = camera_sets(recon.camera, focals, [p.shape[1::-1] for p in photos],
                       recon.refine == "photometric")
    views = [view_from_face(model, f, sigma) for f in faces]
    multi = fit_same_person(model, views, method=method, kind=fm, camera=sets[0])
    fit_ms = (time.perf_counter() - t0) * 1e3 / len(used)
    photometric: list[Any] = [None] * len(used)
    notes: list[str] = []
    landmark_fits: list[FitResult | None] = [None] * len(used)
    if recon.refine == "photometric":
        landmark_fits = list(multi.fits)  # their 68-point outputs are kept, as single photos'
        # started, as a single photo's, from the network's fits of faces `auto` gave
        # MediaPipe's points (`refinement_face`); the landmark-only outputs keep `auto`'s
        starts = refinement_faces(recon.detector, photos, faces)
        if starts is not None:
            views = [view_from_face(model, f, sigma) for f in starts]
        joint = [multi if starts is None and k == 0 else
                 fit_same_person(model, views, method=method, kind=fm, camera=c)
                 for k, c in enumerate(sets)]
        multi, photometric, notes = refine_same_person(
            model, joint, views, photos, recon.image_loss, recon.photometric_iterations)
    recs, texels = [], []
    size = recon.texture_size
    for image, face, fit, photo, first in zip(photos, faces, multi.fits, photometric,
                                              landmark_fits, strict=True):
        fit = with_landmark_outputs(model, fit, face, first)  # as a single photo's
        texture = colors = None
        if size:
            from facefit.texture.extract import extract_texture, texel_samples

            crop, verts = crop_to_face(image, fit.verts_px, max_side=2 * size)
            if photo_textures:
                texture, colors = extract_texture(model, verts, crop, size=size)
            texels.append(texel_samples(model, verts, crop, size=size))
        recs.append(Reconstruction(face, fit, texture, colors, {"fit": fit_ms}, photo))
    return SamePersonResult(multi, recs, used, photos, failures, texels, notes)


def _err(text: str) -> None:
    print(f"facefit: error: {' '.join(text.split())}", file=sys.stderr)


def run_same_person(paths: Sequence[Path], out_dir: Path, recon: Reconstructor,
                    export: Callable[..., Any], formats: Sequence[str], method: str = "joint",
                    quiet: bool = False) -> int:
    """``facefit reconstruct --same-person``: `reconstruct_same_person` on ``paths``, each
    photo's results written by ``export(out_dir, path, image, [reconstruction], model,
    formats)`` and the identity by `write_identity`; returns the CLI exit code (0, or 1 when
    a photo failed)."""
    from facefit.io.export import needs_texture

    try:
        res = reconstruct_same_person(paths, recon, method=method,
                                      photo_textures=needs_texture(formats))
    except NoFaceFoundError as exc:
        for _, reason in exc.failures:
            _err(reason)
        return 1
    for _, reason in res.failures:
        _err(reason)
    failed = len(res.failures)
    if not quiet:
        for note in res.notes:
            print(f"facefit: note: {note}", file=sys.stderr)
    kept = [Path(paths[i]) for i in res.used]
    for path, image, rec in zip(kept, res.images, res.reconstructions, strict=True):
        try:
            export(out_dir, path, image, [rec], recon.model, formats)
        except Exception as exc:
            _err(f"{path}: cannot write results ({exc})")
            failed += 1
    write_identity(out_dir, recon.model, res.multi, kept, [c for c, _ in res.texels],
                   [w for _, w in res.texels])
    if not quiet:
        refined = ", photometric" if res.reconstructions[0].photometric is not None else ""
        print(f"facefit: {len(kept)} photos of one person ({res.multi.method}{refined}), "
              f"{failed} failed "
              f"-> {out_dir / 'identity.obj'}", file=sys.stderr)
    return 1 if failed else 0


def refine_same_person(model: MorphableModel, multi: MultiFit | Sequence[MultiFit],
                       views: Sequence[ViewPoints], images: Sequence[np.ndarray],
                       image_loss: str = "l2", iterations: int | None = None
                       ) -> tuple[MultiFit, list[Any], list[str]]:
    """Joint photometric refinement (`facefit.fit.photometric.refine_photometric_multi`) of a
    shared-identity fit: shared shape and albedo, per-photo pose, expression and lighting.
    Landmark targets are each photo's detected fixed-vertex landmarks. ``multi``: the fit, or
    the same photos' fits under several camera sets, of which the refinement that explains
    the photos best is kept (`facefit.fit.photometric.best_refinement`). Returns the refined
    `MultiFit`, one `PhotometricResult` per photo and notes on adapted options.
    ``iterations`` None: the joint refinement's default (`PhotometricConfig.iterations`)."""
    from facefit.fit.photometric import PhotometricConfig, best_refinement

    notes = []
    if image_loss == "gradient":
        notes.append("--same-person photometric refinement supports l2 and huber; using l2")
        image_loss = "l2"
    fits = [multi] if isinstance(multi, MultiFit) else list(multi)
    k, res = best_refinement(
        model, [m.fits for m in fits], images,
        config=PhotometricConfig(iterations=iterations, image_loss=image_loss),
        landmarks_px=[v.points_px for v in views],
        landmark_vertex_ids=[v.vertex_ids for v in views])
    return (replace(fits[k], shape_coeffs=res.shape_coeffs, fits=[r.fit for r in res.results],
                    neutral_vertices=res.neutral_vertices), list(res.results), notes)


def write_identity(out_dir: Path, model: Any, multi: MultiFit, paths: Sequence[Path],
                   colours: list[np.ndarray], weights: list[np.ndarray]) -> dict[str, Path]:
    """``identity.obj`` (+ .mtl/.png), ``identity.glb`` and ``identity.json`` in ``out_dir``."""
    from facefit.io.atomic import write_text_atomic
    from facefit.io.export import write_glb, write_obj
    from facefit.io.records import pose_record
    from facefit.io.schemas import SCHEMA_VERSION
    from facefit.render.shading import vertex_normals

    tri = np.asarray(model.triangles)
    verts = multi.neutral_vertices
    texture = None
    if colours:
        from facefit.texture.extract import merge_texels

        texture = merge_texels(colours, weights, model=model)
    from facefit.texture.atlas import texture_layout

    layout = texture_layout(model)  # per-corner UVs (ICT): the mesh split at the seams
    split, tri_uv, uv = layout.mesh(verts, tri)
    files = {
        "obj": write_obj(out_dir / "identity.obj", split, tri_uv, uv, texture,
                         layout.mesh(vertex_normals(verts, tri), tri)[0]),
        "glb": write_glb(out_dir / "identity.glb", split, tri_uv, uv, texture),
    }
    summary = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": model.name, "licence": model.licence},
        "method": multi.method,
        "shape_coeffs": [round(float(x), 5) for x in multi.shape_coeffs],
        "images": [{  # per photo: the pose as in a face record (facefit.io.records)
            "image": str(p), "weight": round(float(w), 5),
            "pose": pose_record(f.rotation, f.scale, f.translation, f.camera.kind,
                                f.camera.focal_px, f.camera.principal_point_px,
                                (f.yaw_deg, f.pitch_deg, f.roll_deg)),
            "residual_px": round(f.residual_px, 3),
            "expression_coeffs": [round(float(x), 5) for x in f.expression_coeffs],
        } for p, f, w in zip(paths, multi.fits, multi.weights, strict=True)],
        "files": {k: v.name for k, v in files.items()},
    }
    files["json"] = out_dir / "identity.json"
    write_text_atomic(files["json"], json.dumps(summary, indent=1) + "\n")
    return files
