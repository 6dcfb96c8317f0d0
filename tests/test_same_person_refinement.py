"""`--same-person --refine photometric` starts its joint refinement as a single photo's starts:
from the network's fits of faces `auto` gave MediaPipe's points
(`facefit.detect.network.refinement_face`); the landmark-only fit keeps `auto`'s faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import facefit
from facefit import same_person
from facefit.detect.network import landmark_source, refinement_face
from facefit.fit.multi_image import view_from_face
from facefit.io.image import load_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"


def test_joint_refinement_starts_from_the_network_views(monkeypatch) -> None:
    image = load_image(EXAMPLE)
    photos = [image, np.ascontiguousarray(image[:, ::-1])]
    seen = {}

    def spy(model, multi, views, images, image_loss="l2", iterations=100):  # noqa: ANN001, ANN202
        seen["multi"], seen["views"] = multi, views
        return multi, [None] * len(views), []

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
