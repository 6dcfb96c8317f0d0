import json

import numpy as np
from PIL import Image

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera
from facefit.fit.landmark_fit import fit_points, make_result
from facefit.fit.photometric import PhotometricConfig, refine_photometric
from facefit.io.export import export_reconstructions
from facefit.io.photometric_export import albedo_texture
from facefit.model import load_default_model
from facefit.reconstruct import Reconstruction
from facefit.synthetic.photos import make_synthetic_face


class _FakeDetector:
    """Returns the synthetic face's true 68 landmarks."""

    scheme = "ibug68"

    def __init__(self, points):
        self.points = np.asarray(points, np.float32)

    def detect(self, image_rgb, max_faces=8):
        lo, hi = self.points.min(0), self.points.max(0)
        return [FaceLandmarks(np.r_[lo, hi].astype(np.float32), 1.0, self.points, None,
                              "ibug68")]


def test_albedo_texture_of_a_constant_albedo_is_constant():
    model = load_default_model()
    tex = albedo_texture(model, np.full((model.num_vertices, 3), 0.5, np.float32), size=64)
    assert tex.shape == (64, 64, 3)
    assert np.abs(tex.astype(int) - 128).max() <= 1


def test_refined_faces_export_albedo_comparison_and_json(tmp_path):
    model = load_default_model()
    face = make_synthetic_face(model, np.random.default_rng(7), size=192)
    a, b, pose, rms, n = fit_points(model, face.landmarks, model.landmark_ids["ibug68"])
    fit = make_result(model, a, b, pose, Camera(), rms, n, 5)
    res = refine_photometric(model, fit, face.image, config=PhotometricConfig(
        iterations=10, size=112, levels=(2, 1), level_share=(0.5, 0.5), normals="face"))
    det = _FakeDetector(face.landmarks).detect(face.image)[0]
    rec = Reconstruction(det, res.fit, None, None, {}, res)
    path = export_reconstructions(tmp_path, "img.png", face.image, [rec], model,
                                  ("json", "overlay"))
    info = json.loads(path.read_text())["faces"][0]
    assert info["files"]["albedo"] == "img_face0_albedo.png"
    assert info["files"]["compare"] == "img_face0_compare.png"
    photo = info["photometric"]
    assert np.asarray(photo["sh_coeffs"]).shape == (9, 3)
    assert photo["iterations"] == 10
    assert photo["photometric_error"] > 0 and photo["landmark_error_px"] >= 0
    compare = np.asarray(Image.open(tmp_path / "img_face0_compare.png"))
    assert compare.shape[0] > 112 and compare.shape[1] > 336  # + labels and colour bar
    label_h, bar = compare.shape[0] - 112, compare[:, 336:]
    assert (compare[:label_h, :336] < 128).any()  # the panel labels are drawn
    top, bottom = bar[label_h + 1].astype(int), bar[-2].astype(int)
    assert (top != 255).any() and (bottom != 255).any()
    red = lambda c: c[0] - c[2]  # noqa: E731 - jet: red at the top (max), blue at 0
    col = int(np.flatnonzero((bar[label_h + 1] != 255).any(1))[0])
    assert red(bar[label_h + 1, col].astype(int)) > 100 and red(bar[-2, col].astype(int)) < -100
    assert np.asarray(Image.open(tmp_path / "img_face0_albedo.png")).shape == (512, 512, 3)
    # JSON only: the refinement's numbers, no image files
    only = tmp_path / "json_only"
    path = export_reconstructions(only, "img.png", face.image, [rec], model, ("json",))
    info = json.loads(path.read_text())["faces"][0]
    assert "albedo" not in info["files"] and info["photometric"]["iterations"] == 10
    assert sorted(p.name for p in only.iterdir()) == ["img.json"]


def test_reconstructor_refines_when_asked():
    from facefit.reconstruct import Reconstructor

    model = load_default_model()
    face = make_synthetic_face(model, np.random.default_rng(8), size=160)
    rec = Reconstructor(model=model, detector=_FakeDetector(face.landmarks), texture_size=0,
                        refine="photometric", photometric_iterations=6)
    out = rec.reconstruct(face.image)
    assert len(out) == 1 and out[0].photometric is not None
    # the refined fit (its 68 AFLW-convention points may be the landmark source's own,
    # `facefit.fit.points_aflw`)
    got, refined = out[0].fit, out[0].photometric.fit
    for name in ("shape_coeffs", "expression_coeffs", "rotation", "translation"):
        np.testing.assert_array_equal(getattr(got, name), getattr(refined, name))
    assert "photometric" in out[0].timings_ms
    plain = Reconstructor(model=model, detector=_FakeDetector(face.landmarks), texture_size=0)
    assert plain.reconstruct(face.image)[0].photometric is None
