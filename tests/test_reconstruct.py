"""End to end on the bundled example photo: every output format, loadable meshes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

import facefit
from facefit.io.export import FORMATS, export_reconstructions
from facefit.io.image import load_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory):
    image = load_image(EXAMPLE)
    rec = facefit.Reconstructor()
    faces = rec.reconstruct(image)
    out = tmp_path_factory.mktemp("out")
    json_path = export_reconstructions(out, EXAMPLE, image, faces, rec.model, FORMATS)
    return rec.model, faces, out, json_path


def test_one_face_with_plausible_fit(outputs) -> None:
    model, faces, _, _ = outputs
    assert len(faces) == 1
    fit = faces[0].fit
    assert abs(fit.yaw_deg) < 15 and abs(fit.pitch_deg) < 20 and abs(fit.roll_deg) < 15
    # the fitted eye corners and nose tip lie close to MediaPipe's own points for them
    mp = faces[0].face.points_px
    for ibug, mp_id in ((36, 33), (45, 263), (30, 1)):
        assert np.linalg.norm(fit.landmarks_68_2d[ibug] - mp[mp_id]) < 6.0
    assert fit.residual_px < 5.0
    # the face is about 120 px wide: a 128 texel density, clamped up to the smallest side
    assert faces[0].texture.shape == (256, 256, 3)
    assert faces[0].vertex_colors.shape == (model.num_vertices, 3)


def test_every_format_written_and_meshes_load_back(outputs) -> None:
    model, _, out, json_path = outputs
    names = {p.name for p in out.iterdir()}
    for suffix in (".obj", ".mtl", ".png", ".ply", ".glb", ".npz"):
        assert f"astronaut_face0{suffix}" in names
    assert "astronaut_overlay.jpg" in names  # one overlay per image
    assert not [n for n in names if n.startswith(".") or ".part" in n]
    nv, nf = model.num_vertices, len(model.triangles)
    n_used = len(np.unique(model.triangles))  # the default mesh leaves pocket vertices out
    for suffix in (".obj", ".glb", ".ply"):
        mesh = trimesh.load(out / f"astronaut_face0{suffix}", process=False, force="mesh")
        # every vertex is written; trimesh's OBJ reader keeps only those faces reference
        assert len(mesh.vertices) in (nv, n_used), suffix
        assert mesh.faces.shape == (nf, 3), suffix
    obj_lines = (out / "astronaut_face0.obj").read_text().splitlines()
    assert sum(line.startswith("v ") for line in obj_lines) == nv
    summary = json.loads(json_path.read_text())
    face = summary["faces"][0]
    assert summary["width"] == summary["height"] == 512
    assert len(face["landmarks_68_2d"]) == 68 and len(face["landmarks_68_2d_contour"]) == 68
    assert set(face["pose"]) >= {"yaw_deg", "pitch_deg", "roll_deg", "rotation", "translation",
                                 "scale", "camera"}
    assert len(face["shape_coeffs"]) == model.num_shape
    npz = np.load(out / "astronaut_face0.npz")
    np.testing.assert_allclose(npz["landmarks_68_2d"], face["landmarks_68_2d"], atol=1e-2)


def test_texture_from_the_face_crop_equals_the_whole_photo(outputs) -> None:
    """Texturing the face's crop (what `Reconstructor` does) gives the same texture and
    vertex colours as texturing the whole photo."""
    from facefit.reconstruct import crop_to_face
    from facefit.texture.extract import extract_texture

    model, faces, _, _ = outputs
    image = load_image(EXAMPLE)
    fit = faces[0].fit
    crop, verts = crop_to_face(image, fit.verts_px)
    assert crop.shape[0] * crop.shape[1] < 0.5 * image.shape[0] * image.shape[1]
    full = extract_texture(model, fit.verts_px, image, size=128)
    cropped = extract_texture(model, verts, crop, size=128)
    for a, b in ((cropped[0], full[0]), (cropped[1], full[1]),
                 (faces[0].vertex_colors, extract_texture(model, fit.verts_px, image,
                                                          size=256)[1])):
        # float32 shift of the vertices: rounding only (a texel blended from two samples
        # can land two levels apart, as one of 49k channels does on this photo)
        diff = np.abs(a.astype(int) - b)
        assert diff.max() <= 2 and (diff > 1).mean() < 1e-4 and (diff > 0).mean() < 0.01


def test_texture_side_follows_the_face_size_up_to_the_cap(outputs) -> None:
    """A small face gets a smaller texture than ``texture_size``; the same face four times
    larger in the photo gets the cap; ``texture_sizing="fixed"`` always the cap."""
    import cv2

    from facefit.texture.extract import face_texture_size

    model, faces, _, _ = outputs
    image = load_image(EXAMPLE)
    x, y = faces[0].fit.verts_px[:, 0], faces[0].fit.verts_px[:, 1]
    crop = image[max(int(y.min()) - 20, 0):int(y.max()) + 20,
                 max(int(x.min()) - 20, 0):int(x.max()) + 20]
    big = cv2.resize(crop, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    rec = facefit.Reconstructor(model=model, vertex_colors=False)
    large = rec.reconstruct(big)[0]
    assert large.texture.shape == (512, 512, 3)
    assert face_texture_size(model, large.fit.verts_px, 4096) >= 512
    assert face_texture_size(model, faces[0].fit.verts_px, 4096, 2) == 128
    fixed = facefit.Reconstructor(model=model, vertex_colors=False, texture_size=300,
                                  texture_sizing="fixed", detector=rec.detector)
    assert fixed.reconstruct(image)[0].texture.shape == (300, 300, 3)
    with pytest.raises(ValueError, match="texture_sizing"):
        facefit.Reconstructor(model=model, detector=rec.detector, texture_sizing="big")


def test_crop_to_face_clips_to_the_image() -> None:
    from facefit.reconstruct import crop_to_face

    image = np.zeros((100, 80, 3), np.uint8)
    verts = np.array([[-20, 10, 0], [50, 130, 1], [30, 40, 2]], np.float32)
    crop, shifted = crop_to_face(image, verts)
    assert crop.shape == (92, 53, 3)  # rows 10 - 2 .. 100, columns 0 .. 50 + 3
    np.testing.assert_allclose(shifted, verts - [0, 8, 0])
    assert np.shares_memory(crop, image)


def test_crop_to_face_shrinks_a_large_face_consistently() -> None:
    """Above ``max_side`` the crop is shrunk; the moved vertices land on the same content (a
    linear ramp, which area averaging by 2 keeps exact at the new pixel centres)."""
    import cv2

    from facefit.reconstruct import crop_to_face

    yy, xx = np.mgrid[0:300, 0:300].astype(np.float32)
    image = np.dstack([xx * 0.5, yy * 0.5, xx * 0.25 + yy * 0.25]).astype(np.uint8)
    rng = np.random.default_rng(0)
    verts = np.c_[rng.uniform(50, 250, (200, 2)), rng.uniform(0, 40, 200)].astype(np.float32)
    verts[:2, :2] = [[48.0, 48.0], [251.0, 251.0]]  # box 46..254 -> 208 px, shrunk to 104
    crop, moved = crop_to_face(image, verts, max_side=104)
    assert crop.shape == (104, 104, 3)
    np.testing.assert_allclose(moved[:, 2], verts[:, 2] * 0.5, rtol=1e-6)
    sampled = cv2.remap(crop.astype(np.float32), moved[:, :1].reshape(-1, 1, 1),
                        moved[:, 1:2].reshape(-1, 1, 1), cv2.INTER_LINEAR).reshape(-1, 3)
    expect = np.c_[verts[:, 0] * 0.5, verts[:, 1] * 0.5, (verts[:, 0] + verts[:, 1]) * 0.25]
    assert np.abs(sampled - expect).max() < 1.5  # uint8 rounding of the ramp
    small, same = crop_to_face(image, verts, max_side=1000)
    assert small.shape == (208, 208, 3) and np.shares_memory(small, image)


def test_photometric_refinement_starts_from_the_network_fit() -> None:
    """With ``auto`` a frontal face keeps MediaPipe's points for its landmark fit and 68-point
    outputs (those of the landmark fit), and its refinement starts from the fit of the
    network's reading of it (`facefit.detect.network.refinement_face`): the same numbers as
    that refinement run here by hand."""
    from facefit.detect.network import landmark_source, refinement_face
    from facefit.fit.face_fit import fit_face
    from facefit.fit.photometric import PhotometricConfig, refine_photometric

    image = load_image(EXAMPLE)
    rec = facefit.Reconstructor(texture_size=0, refine="photometric", photometric_iterations=3)
    (got,) = rec.reconstruct(image)
    assert landmark_source(got.face) == "mediapipe"
    start = fit_face(rec.model, refinement_face(rec.detector, image, got.face),
                     image.shape[1::-1])
    want = refine_photometric(rec.model, start, image,
                              config=PhotometricConfig(iterations=3)).fit
    np.testing.assert_allclose(got.fit.shape_coeffs, want.shape_coeffs, atol=1e-5)
    plain = fit_face(rec.model, got.face, image.shape[1::-1])  # MediaPipe's own start
    assert np.abs(start.shape_coeffs - plain.shape_coeffs).max() > 0.05
    # the 68-point outputs stay the landmark fit's (`with_landmark_outputs`): those of the
    # same photo reconstructed without the refinement, not the refined mesh's projections
    (unrefined,) = facefit.Reconstructor(texture_size=0).reconstruct(image)
    for key in ("landmarks_68_2d", "landmarks_68_3d", "landmarks_68_2d_contour"):
        np.testing.assert_allclose(getattr(got.fit, key), getattr(unrefined.fit, key), atol=1e-4)
    ids = rec.model.landmark_ids["ibug68"]
    moved = np.abs(got.fit.verts_px[ids, :2] - unrefined.fit.verts_px[ids, :2]).max()
    assert moved > 0.5  # the refined mesh itself moved


def test_auto_camera_refinement_picks_the_photo_camera(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """The default camera (auto) with ``refine="photometric"`` and no focal length: each face
    is refined with both cameras and keeps the one that explains the photo better: a pinhole
    camera at the image diagonal for a close-up (its error 15-25 % lower on these renders);
    for a distant face the two errors lie within about 2 % of each other (either may be kept,
    by float rounding), so there the test checks that the lower one is kept. Without the
    refinement, the scaled orthographic camera, whose landmark fit's 68 points are the outputs
    either way."""
    from facefit.fit.photometric import optimise
    from facefit.model import load_default_model
    from facefit.synthetic.photos import make_synthetic_face

    errors: dict[str, float] = {}
    refine = optimise.refine_photometric_multi

    def spy(model, fits, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        res = refine(model, fits, *args, **kwargs)
        errors[fits[0].camera.kind] = res.results[0].photometric_error
        return res

    monkeypatch.setattr(optimise, "refine_photometric_multi", spy)
    model = load_default_model()
    rng = np.random.default_rng(1)
    near = make_synthetic_face(model, rng, focal_px=256.0).image
    far = make_synthetic_face(model, rng).image
    rec = facefit.Reconstructor(texture_size=0, refine="photometric")
    (face,) = rec.reconstruct(near, max_faces=1)
    assert face.fit.camera.kind == "perspective"
    assert errors["perspective"] < 0.9 * errors["scaled_orthographic"]
    assert face.fit.camera.focal_px == pytest.approx(np.hypot(256, 256))
    assert face.photometric is not None and face.photometric.fit.camera == face.fit.camera
    refined = face
    errors.clear()
    (face,) = rec.reconstruct(far, max_faces=1)
    assert face.fit.camera.kind == min(errors, key=errors.__getitem__)
    assert face.photometric is not None
    assert face.photometric.photometric_error == min(errors.values())
    (face,) = facefit.Reconstructor(texture_size=0).reconstruct(near, max_faces=1)
    assert face.fit.camera.kind == "scaled_orthographic"
    # the 68-point outputs are the scaled orthographic landmark fit's, refined or not
    np.testing.assert_allclose(refined.fit.landmarks_68_2d, face.fit.landmarks_68_2d, atol=1e-4)
    np.testing.assert_allclose(refined.fit.landmarks_68_2d_contour,
                               face.fit.landmarks_68_2d_contour, atol=1e-4)


def test_perspective_refinement_end_to_end(tmp_path: Path) -> None:
    """``--camera perspective --focal-px F --refine photometric``: the refinement keeps the
    pinhole camera (focal length and principal point as asked, the pose refined), lowers
    the photo's error, and the JSON, mesh and compare image are written."""
    from facefit.cli import main

    out = tmp_path / "out"
    assert main(["reconstruct", str(EXAMPLE), "-o", str(out), "--camera", "perspective",
                 "--focal-px", "900", "--refine", "photometric", "--photometric-iterations",
                 "30", "--formats", "json,obj", "-q"]) == 0
    face = json.loads((out / "astronaut.json").read_text())["faces"][0]
    cam = face["pose"]["camera"]
    assert cam == {"kind": "perspective", "focal_px": 900.0, "principal_point_px": [256.0, 256.0]}
    assert len(face["pose"]["translation"]) == 3 and face["pose"]["translation"][2] < -500
    ph = face["photometric"]
    assert ph["photometric_error"] < 0.5 * ph["initial_photometric_error"]
    assert ph["landmark_error_px"] < 6.0
    assert (out / "astronaut_face0_compare.png").is_file()
    assert (out / "astronaut_face0.obj").is_file()
    # the 68-point outputs stay the landmark fit's (`with_landmark_outputs`), as with the
    # scaled orthographic camera: those of the same photo and camera unrefined
    (plain,) = facefit.Reconstructor(texture_size=0, camera="perspective",
                                     focal_px=900.0).reconstruct(load_image(EXAMPLE))
    refined = np.asarray(face["landmarks_68_2d"])
    np.testing.assert_allclose(refined, plain.fit.landmarks_68_2d, atol=1e-2)


def test_perspective_focal_length_from_exif(tmp_path: Path) -> None:
    """``--camera perspective`` without ``--focal-px`` takes each photo's EXIF 35 mm-equivalent
    focal length (the CLI's batch path and the API alike); a given focal length wins; photos
    without the tag and arrays get the image diagonal. The default camera, ``auto``, is that
    perspective camera where the focal length is known (EXIF or given) and the scaled
    orthographic one where it is not."""
    from PIL import Image

    from facefit.cli import main

    image = load_image(EXAMPLE)  # 512 x 512
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 50
    photo = tmp_path / "tagged.jpg"
    Image.fromarray(image).save(photo, exif=exif, quality=95)
    want = 50 / 43.267 * np.hypot(512, 512)
    out = tmp_path / "out"
    assert main(["reconstruct", str(photo), "-o", str(out), "--camera", "perspective",
                 "--formats", "json", "-q"]) == 0
    cam = json.loads((out / "tagged.json").read_text())["faces"][0]["pose"]["camera"]
    assert cam["focal_px"] == pytest.approx(want, abs=1e-3)
    # the default camera (auto): the tagged JPEG perspective, the PNG scaled orthographic
    auto = tmp_path / "auto"
    assert main(["reconstruct", str(photo), str(EXAMPLE), "-o", str(auto), "--formats",
                 "json", "-q"]) == 0
    cam = json.loads((auto / "tagged.json").read_text())["faces"][0]["pose"]["camera"]
    assert cam["kind"] == "perspective" and cam["focal_px"] == pytest.approx(want, abs=1e-3)
    cam = json.loads((auto / "astronaut.json").read_text())["faces"][0]["pose"]["camera"]
    assert cam == {"kind": "scaled_orthographic", "focal_px": None,
                   "principal_point_px": None}
    rec = facefit.Reconstructor(texture_size=0, camera="perspective")
    assert rec.photo_focal_px(photo) == pytest.approx(want)
    assert rec.photo_focal_px(image) is None  # an array carries no EXIF
    (face,) = rec.reconstruct(photo)
    assert face.fit.camera.focal_px == pytest.approx(want)
    (face,) = rec.reconstruct(image, focal_px=700.0)
    assert face.fit.camera.focal_px == 700.0
    (face,) = rec.reconstruct(EXAMPLE)  # a PNG: the image diagonal
    assert face.fit.camera.focal_px == pytest.approx(np.hypot(512, 512))
    given = facefit.Reconstructor(texture_size=0, camera="perspective", focal_px=900.0)
    assert given.photo_focal_px(photo) == 900.0
    ortho = facefit.Reconstructor(texture_size=0, camera="scaled_orthographic")
    assert ortho.photo_focal_px(photo) is None  # the scaled orthographic camera has none
    default = facefit.Reconstructor(texture_size=0)
    assert default.camera == "auto"
    assert default.photo_focal_px(photo) == pytest.approx(want)
    assert default.photo_focal_px(EXAMPLE) is None
    (face,) = default.reconstruct(photo)  # auto with an EXIF focal length: perspective
    assert face.fit.camera.kind == "perspective"
    assert face.fit.camera.focal_px == pytest.approx(want)
    (face,) = default.reconstruct(EXAMPLE)  # auto without one: scaled orthographic
    assert face.fit.camera.kind == "scaled_orthographic"
    (face,) = default.reconstruct(image, focal_px=700.0)  # a given focal length: perspective
    assert face.fit.camera.kind == "perspective" and face.fit.camera.focal_px == 700.0
    with pytest.raises(ValueError, match="focal_px must be a positive number"):
        rec.reconstruct(image, focal_px=-1.0)
    with pytest.raises(ValueError, match="focal_px needs camera='perspective'"):
        ortho.reconstruct(image, focal_px=700.0)
