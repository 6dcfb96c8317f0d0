"""`--same-person --refine photometric` starts its joint refinement as a single photo's starts:
from the network's fits of faces `auto` gave MediaPipe's points
(`facefit.detect.network.refinement_face`); the landmark-only fit keeps `auto`'s faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import facefit
from facefit import same_person
from facefit.detect.network import landmark_source, refinement_face
from facefit.fit.camera import Camera
from facefit.fit.multi_image import view_from_face
from facefit.io.image import load_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"


def test_joint_refinement_starts_from_the_network_views(monkeypatch) -> None:
    image = load_image(EXAMPLE)
    photos = [image, np.ascontiguousarray(image[:, ::-1])]
    seen = {}

    def spy(model, multi, views, images, image_loss="l2", iterations=None):  # noqa: ANN001, ANN202
        # auto, arrays without a focal length: the photos' fits under both camera sets
        assert [[f.camera.kind for f in m.fits] for m in multi] == [
            ["scaled_orthographic"] * 2, ["perspective"] * 2]
        seen["multi"], seen["views"] = multi[0], views
        return multi[0], [None] * len(views), []

    monkeypatch.setattr(same_person, "refine_same_person", spy)
    rec = facefit.Reconstructor(texture_size=0, refine="photometric")
    res = same_person.reconstruct_same_person(photos, rec)
    faces = [r.face for r in res.reconstructions]
    assert all(landmark_source(f) == "mediapipe" for f in faces)  # auto: frontal faces
    for view, photo, face in zip(seen["views"], photos, faces, strict=True):
        want = view_from_face(rec.model, refinement_face(rec.detector, photo, face))
        np.testing.assert_array_equal(view.points_px, want.points_px)
        np.testing.assert_array_equal(view.vertex_ids, want.vertex_ids)
    plain = same_person.reconstruct_same_person(photos, facefit.Reconstructor(texture_size=0))
    assert np.abs(seen["multi"].shape_coeffs - plain.multi.shape_coeffs).max() > 0.01


def test_refined_photos_keep_the_landmark_fits_points() -> None:
    """Each photo's 68-point outputs are those of the joint landmark fit of `auto`'s faces
    (`facefit.fit.face_fit.with_landmark_outputs`), as a single photo's, while its mesh is
    the refined one."""
    image = load_image(EXAMPLE)
    photos = [image, np.ascontiguousarray(image[:, ::-1])]
    refined = same_person.reconstruct_same_person(photos, facefit.Reconstructor(
        texture_size=0, refine="photometric", photometric_iterations=3))
    plain = same_person.reconstruct_same_person(photos, facefit.Reconstructor(texture_size=0))
    for a, b in zip(refined.reconstructions, plain.reconstructions, strict=True):
        for key in ("landmarks_68_2d", "landmarks_68_3d", "landmarks_68_2d_contour"):
            np.testing.assert_allclose(getattr(a.fit, key), getattr(b.fit, key), atol=1e-4)
        assert np.abs(a.fit.verts_px - b.fit.verts_px).max() > 0.5


def test_perspective_photos_keep_their_own_focal_lengths(tmp_path: Path) -> None:
    """``--same-person --camera perspective --refine photometric``: each photo's camera has its
    own EXIF focal length (a PNG, without one: the image diagonal), through the joint fit and
    the joint refinement."""
    from PIL import Image

    image = load_image(EXAMPLE)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 35
    tagged = tmp_path / "tagged.jpg"
    Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(tagged, exif=exif, quality=95)
    rec = facefit.Reconstructor(texture_size=0, camera="perspective", refine="photometric",
                                photometric_iterations=5)
    res = same_person.reconstruct_same_person([tagged, EXAMPLE], rec)
    cams = [r.fit.camera for r in res.reconstructions]
    assert [c.kind for c in cams] == ["perspective", "perspective"]
    assert cams[0].focal_px == pytest.approx(35 / 43.267 * np.hypot(512, 512))
    assert cams[1].focal_px == pytest.approx(np.hypot(512, 512))
    assert all(r.photometric is not None for r in res.reconstructions)
    # the default camera (auto): the tagged photo perspective with its EXIF focal length;
    # the PNG, of unknown focal length, scaled orthographic without a refinement, and with
    # one whichever of that and a pinhole camera at its diagonal the joint refinement keeps
    plain = same_person.reconstruct_same_person([tagged, EXAMPLE],
                                                facefit.Reconstructor(texture_size=0))
    assert [r.fit.camera.kind for r in plain.reconstructions] == ["perspective",
                                                                  "scaled_orthographic"]
    rec = facefit.Reconstructor(texture_size=0, refine="photometric", photometric_iterations=5)
    res = same_person.reconstruct_same_person([tagged, EXAMPLE], rec)
    cams = [r.fit.camera for r in res.reconstructions]
    assert cams[0].kind == "perspective"
    assert cams[0].focal_px == pytest.approx(35 / 43.267 * np.hypot(512, 512))
    assert cams[1] in (Camera(), Camera("perspective", float(np.hypot(512, 512)),
                                        (256.0, 256.0)))
    assert all(r.photometric is not None for r in res.reconstructions)
    assert len(res.multi.shape_coeffs) == rec.model.num_shape
