"""The identity of a clip (`facefit.video.identity.clip_identity`)."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.video.identity import clip_identity


@pytest.fixture(scope="module")
def clip():
    from facefit.eval.shape_clip import in_model_clip_subject
    from facefit.model import load_default_model

    model = load_default_model()
    return model, in_model_clip_subject(model, np.random.default_rng(3), frames=6, size=160)


@pytest.fixture(scope="module")
def detector():
    from facefit.detect.mediapipe import MediaPipeDetector

    return MediaPipeDetector()


def test_landmark_identity_is_the_joint_fit(clip, detector) -> None:
    from facefit.fit.multi_image import fit_same_person, view_from_face
    from facefit.video.identity import landmark_sigma_of

    model, sub = clip
    got = clip_identity(model, detector, sub.images, max_views=3)
    assert got is not None and got.views == 3 and got.keyframes == 0
    np.testing.assert_array_equal(got.shape_coeffs, got.landmark_shape_coeffs)
    # independently: frames 0, 2/3 (rounded) and 5 of the six, fitted jointly
    faces = [detector.detect(sub.images[i], max_faces=1)[0] for i in (0, 2, 5)]
    want = fit_same_person(model, [view_from_face(model, f, landmark_sigma_of(model))
                                   for f in faces]).shape_coeffs
    np.testing.assert_allclose(got.shape_coeffs, want, atol=1e-6)


def test_photometric_identity_refines_keyframes(clip, detector) -> None:
    model, sub = clip
    got = clip_identity(model, detector, sub.images, refine="photometric", keyframes=2,
                        iterations=3)
    assert got is not None and got.views == 6 and got.keyframes == 2
    assert not np.allclose(got.shape_coeffs, got.landmark_shape_coeffs)


def test_no_face_and_bad_refine(clip, detector) -> None:
    model, _ = clip
    blank = [np.full((96, 96, 3), 128, np.uint8)] * 2
    assert clip_identity(model, detector, blank) is None
    with pytest.raises(ValueError, match="refine"):
        clip_identity(model, detector, blank, refine="fancy")


def test_identity_of_detected_faces_is_clip_identity(clip, detector) -> None:
    """The identity from faces detected elsewhere (the tracking worker's, `identity_of_faces`)
    is `clip_identity`'s; frames without a face (None) are left out."""
    from facefit.video.identity import identity_of_faces

    model, sub = clip
    want = clip_identity(model, detector, sub.images, max_views=3)
    faces = [detector.detect(img, max_faces=1)[0] for img in sub.images]
    got = identity_of_faces(model, [None, *faces[:3], None, *faces[3:]], max_views=3)
    assert want is not None and got is not None and got.views == want.views == 3
    np.testing.assert_array_equal(got.shape_coeffs, want.shape_coeffs)
    assert identity_of_faces(model, [None, None]) is None


def test_refinement_starts_from_the_network_reading_of_the_keyframes(clip, monkeypatch
                                                                     ) -> None:
    """With `auto`, the keyframes' joint refinement starts, as `--same-person`'s, from the
    joint landmark fit of the network's readings of faces `auto` gave MediaPipe's points
    (`facefit.detect.network.refinement_face`), not from the clip's landmark fit."""
    import facefit.fit.photometric as photometric
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.detect.network import landmark_detector, landmark_source, refinement_face
    from facefit.fit.multi_image import fit_same_person, view_from_face
    from facefit.video.identity import landmark_sigma_of

    model, sub = clip
    auto, _ = landmark_detector(MediaPipeDetector(), "auto")
    seen = {}

    def spy(model, starts, images, config=None):  # noqa: ANN001, ANN202
        seen["fits"] = starts[0]  # the one camera's start set
        assert len(starts) == 1
        return real(model, starts, images, config=config)

    real = photometric.best_refinement
    monkeypatch.setattr(photometric, "best_refinement", spy)
    got = clip_identity(model, auto, sub.images, refine="photometric", keyframes=2,
                        iterations=2)
    assert got is not None and got.keyframes == 2
    faces = [auto.detect(sub.images[i], max_faces=1)[0] for i in (0, 5)]
    assert all(landmark_source(f) == "mediapipe" for f in faces)  # near-frontal frames
    sigma = landmark_sigma_of(model)
    want = fit_same_person(model, [view_from_face(model, refinement_face(auto, img, f), sigma)
                                   for img, f in zip([sub.images[0], sub.images[5]], faces,
                                                     strict=True)])
    np.testing.assert_allclose(seen["fits"][0].shape_coeffs, want.shape_coeffs, atol=1e-5)
    landmark_start = fit_same_person(model, [view_from_face(model, f, sigma) for f in faces])
    assert np.abs(want.shape_coeffs - landmark_start.shape_coeffs).max() > 0.01



def test_candidate_cameras_keep_the_clip_camera(clip, detector) -> None:
    """Two candidate cameras (`camera_candidates` of ``auto`` without a focal length): the
    identity's refinement keeps the pinhole camera at the frame diagonal for a close-up clip
    (focal length = frame side, nose about 18 cm from the lens) and the scaled orthographic
    one for the distant clip; a single camera is kept as given."""
    from facefit.eval.shape_clip import in_model_clip_subject
    from facefit.fit.camera import Camera, camera_candidates
    from facefit.fit.landmark_fit import camera_model

    model, far = clip
    near = in_model_clip_subject(model, np.random.default_rng(3), frames=6, size=160,
                                 focal_px=160.0)
    both = [camera_model(kind, (160, 160), focal)
            for kind, focal in camera_candidates("auto", None, refine=True)]
    kept = {}
    for name, sub in (("near", near), ("far", far)):
        got = clip_identity(model, detector, sub.images, refine="photometric", keyframes=3,
                            camera=both)
        assert got is not None and got.keyframes == 3
        kept[name] = got.camera
    assert kept == {"near": both[1], "far": both[0]}
    assert both[1].focal_px == pytest.approx(np.hypot(160, 160))
    one = clip_identity(model, detector, far.images, camera=both[1])
    assert one is not None and one.camera == both[1] and one.keyframes == 0
    assert clip_identity(model, detector, far.images).camera == Camera()
