"""FLAME fitting (Li et al. 2017): camera, shape, expression, neck and jaw from 2D landmarks."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from _model_formats import make_model

from facefit.fit.camera import rotation_from_euler
from facefit.fit.flame_fit import (
    FlameLandmarkError,
    dynamic_contour_bin,
    fit_flame_points,
    flame_result,
    flame_vertices,
)
from facefit.model.io_flame import FlameModel, flame_from_model, linear_blend_skinning

SHAPE = np.array([0.8, -0.5, 0.3, 0.0, 0.4, -0.2])
EXPR = np.array([0.6, -0.3, 0.2, 0.1])


def _nearest(points: np.ndarray, where: tuple[float, float, float], k: int = 4) -> np.ndarray:
    return np.argsort(((points - np.asarray(where)) ** 2).sum(1))[:k]


def make_flame(embedding: str = "full") -> FlameModel:
    """A small FLAME-layout model: 5 joints (root, neck, jaw, eyes), root-weighted neck base,
    jaw-weighted lower face, and a barycentric landmark embedding (``full`` 68 points,
    ``static`` 51, ``dynamic`` 51 + yaw-binned contour, or ``none``)."""
    base = make_model(albedo=False)
    rng = np.random.default_rng(5)
    mean = base.mean.astype(np.float64)
    v = len(mean)
    jreg = np.zeros((5, v))
    for j, where in enumerate([(0, -75, 30), (0, -55, 30), (0, -20, 20), (30, 30, 40),
                               (-30, 30, 40)]):
        jreg[j, _nearest(mean, where)] = 0.25
    weights = np.zeros((v, 5))
    y = mean[:, 1]
    weights[:, 1] = 1.0
    weights[y < -62, :] = [1.0, 0, 0, 0, 0]
    lower = (y < -20) & (y >= -62)
    weights[lower] = [0, 0.2, 0.8, 0, 0]
    posedirs = rng.standard_normal((v, 3, 36)) * 0.2
    extras = {"flame_posedirs": posedirs.astype(np.float32),
              "flame_J_regressor": jreg.astype(np.float32),
              "flame_weights": weights.astype(np.float32),
              "flame_parents": np.array([-1, 0, 1, 1, 1])}
    tri = base.triangles
    faces = rng.choice(len(tri), 68, replace=False)
    bary = rng.dirichlet(np.ones(3), 68)
    landmarks: dict[str, np.ndarray] = {}
    # as `load_flame`: each embedded landmark's vertex is its triangle's heaviest corner
    nearest = tri[faces, np.argmax(bary, axis=1)].astype(np.int64)
    if embedding == "full":
        extras.update(lmk_faces=faces, lmk_bary=bary.astype(np.float32))
        landmarks["ibug68"] = nearest
    elif embedding in ("static", "dynamic"):
        extras.update(lmk_faces=faces[17:], lmk_bary=bary[17:].astype(np.float32))
        landmarks["ibug51"] = nearest[17:]
    if embedding == "dynamic":
        extras["lmk_dynamic_faces"] = rng.choice(len(tri), (79, 17))
        extras["lmk_dynamic_bary"] = rng.dirichlet(np.ones(3), (79, 17)).astype(np.float32)
    model = dataclasses.replace(base, name="flame-synthetic", landmark_ids=landmarks,
                                extras=extras)
    return flame_from_model(model)


def observe(flame: FlameModel, pose: np.ndarray, rot: np.ndarray, scale: float = 2.5,
            trans: tuple[float, float] = (320.0, 240.0)) -> np.ndarray:
    """(68, 2) px of the embedded landmarks of the posed face (NaN where not embedded)."""
    rest = flame.model.vertices(SHAPE, EXPR)
    verts = linear_blend_skinning(rest, pose, flame.posedirs, flame.j_regressor,
                                  flame.weights, flame.parents).astype(np.float64)
    v = verts @ rot.T
    px = np.column_stack([scale * v[:, 0] + trans[0], -scale * v[:, 1] + trans[1]])
    tri = flame.model.triangles
    ex = flame.model.extras
    out = np.full((68, 2), np.nan)
    faces, bary = ex["lmk_faces"], ex["lmk_bary"].astype(np.float64)
    out[68 - len(faces):] = np.einsum("lk,lka->la", bary, px[tri[faces]])
    if "lmk_dynamic_faces" in ex:
        b = dynamic_contour_bin(rot @ _rodrigues(pose[1]))
        out[:17] = np.einsum("lk,lka->la", ex["lmk_dynamic_bary"][b].astype(np.float64),
                             px[tri[ex["lmk_dynamic_faces"][b]]])
    return out


def _rodrigues(r: np.ndarray) -> np.ndarray:
    from facefit.model.io_flame import rodrigues

    return rodrigues(r)[0]


def truth_pose(jaw: tuple[float, float, float] = (0.2, 0.03, -0.02)) -> np.ndarray:
    pose = np.zeros((5, 3))
    pose[1] = [0.06, -0.05, 0.03]
    pose[2] = jaw
    return pose


@pytest.mark.parametrize("embedding", ["full", "dynamic"])
def test_recovers_shape_expression_jaw_neck_and_camera(embedding: str) -> None:
    flame = make_flame(embedding)
    pose = truth_pose()
    rot = rotation_from_euler(15.0, -6.0, 4.0)
    px = observe(flame, pose, rot)
    t0 = time.perf_counter()
    fit = fit_flame_points(flame, np.nan_to_num(px), landmark_sigma_px=0.01)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0
    assert fit.residual_px < 1e-3
    np.testing.assert_allclose(fit.shape_coeffs, SHAPE, atol=2e-3)
    np.testing.assert_allclose(fit.expression_coeffs, EXPR, atol=2e-3)
    np.testing.assert_allclose(fit.pose[2], pose[2], atol=2e-3)  # jaw, radians
    np.testing.assert_allclose(fit.pose[1], pose[1], atol=2e-3)  # neck
    np.testing.assert_allclose(fit.pose[[0, 3, 4]], 0.0)  # global in the camera; eyes at 0
    np.testing.assert_allclose(fit.rotation, rot, atol=2e-3)
    assert fit.scale == pytest.approx(2.5, rel=1e-3)
    assert any("eyeball" in n for n in fit.notes)


def test_jaw_changes_the_result_mesh() -> None:
    flame = make_flame("full")
    rot = rotation_from_euler(-10.0, 0.0, 0.0)
    px = observe(flame, truth_pose(jaw=(0.35, 0.0, 0.0)), rot)
    fit = fit_flame_points(flame, px, landmark_sigma_px=0.01)
    assert fit.pose[2, 0] == pytest.approx(0.35, abs=2e-3)
    res = flame_result(flame, fit)
    open_mouth = flame_vertices(flame, fit)
    np.testing.assert_allclose(res.vertices_mm, open_mouth, atol=1e-4)
    closed = flame.model.vertices(fit.shape_coeffs, fit.expression_coeffs)
    assert np.abs(open_mouth - closed).max() > 5.0  # mm: the jaw is open in the exported mesh
    np.testing.assert_allclose(res.landmarks_68_2d, px, atol=1e-2)
    np.testing.assert_allclose(res.extras["flame_pose"][2], fit.pose[2], atol=1e-6)


def test_static_embedding_fits_the_inner_points_and_says_contour_is_missing() -> None:
    flame = make_flame("static")
    pose = truth_pose()
    px = observe(flame, pose, rotation_from_euler(12.0, 5.0, 0.0))
    fit = fit_flame_points(flame, np.nan_to_num(px), landmark_sigma_px=0.01)
    assert fit.num_landmarks == 51
    np.testing.assert_allclose(fit.pose[2], pose[2], atol=5e-3)
    assert any("contour landmarks" in n for n in fit.notes)
    res = flame_result(flame, fit)
    assert np.isnan(res.landmarks_68_2d[:17]).all() and np.isfinite(res.landmarks_68_2d[17:]).all()


def test_no_embedding_one_line_error() -> None:
    flame = make_flame("none")
    with pytest.raises(FlameLandmarkError) as err:
        fit_flame_points(flame, np.zeros((68, 2)))
    msg = str(err.value)
    assert "\n" not in msg and "no landmark embedding" in msg and "landmark fitting" in msg


def test_dynamic_bins_follow_flame_convention() -> None:
    assert dynamic_contour_bin(np.eye(3)) == 0
    assert dynamic_contour_bin(rotation_from_euler(-20.0, 0, 0)) == 20
    assert dynamic_contour_bin(rotation_from_euler(20.0, 0, 0)) == 59
    assert dynamic_contour_bin(rotation_from_euler(-60.0, 0, 0)) == 39
    assert dynamic_contour_bin(rotation_from_euler(60.0, 0, 0)) == 78


class _FixedDetector:
    """A detector that returns given iBUG-68 landmarks."""

    scheme = "ibug68"

    def __init__(self, px: np.ndarray) -> None:
        self.px = px

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list:
        from facefit.detect.base import FaceLandmarks

        return [FaceLandmarks(box=np.array([0, 0, 640, 480], np.float32), score=1.0,
                              points_px=self.px.astype(np.float32), depth_px=None,
                              scheme="ibug68")]


def test_reconstructor_fits_flame_jaw_and_exports_it(tmp_path) -> None:
    from facefit.io.export import export_reconstructions
    from facefit.reconstruct import Reconstructor

    flame = make_flame("full")
    pose = truth_pose(jaw=(0.3, 0.0, 0.0))
    px = observe(flame, pose, rotation_from_euler(10.0, 0.0, 0.0))
    rec = Reconstructor(model=flame.model, detector=_FixedDetector(px), texture_size=0)
    image = np.zeros((480, 640, 3), np.uint8)
    faces = rec.reconstruct(image)
    fit = faces[0].fit
    assert 0.2 < fit.extras["flame_pose"][2, 0] < 0.32  # open; default priors shrink a little
    assert fit.residual_px < 2.0
    export_reconstructions(tmp_path, "img.png", image, faces, flame.model, ("npz", "obj"))
    with np.load(tmp_path / "img_face0.npz") as z:
        np.testing.assert_allclose(z["flame_pose"], fit.extras["flame_pose"])
        np.testing.assert_allclose(z["vertices_mm"], fit.vertices_mm @ fit.rotation.T.astype(
            np.float32), atol=1e-3)


def test_flame_pkl_through_load_model_uses_the_skinned_fit(tmp_path, monkeypatch) -> None:
    from _model_formats import flame_arrays, write_flame

    from facefit.model import load_model
    from facefit.reconstruct import Reconstructor

    base = make_model(albedo=False)
    path = write_flame(tmp_path / "generic_model.pkl", flame_arrays(base), monkeypatch)
    flame = make_flame("full")  # borrow its random embedding (same triangles)
    np.save(tmp_path / "landmark_embedding.npy",
            np.array({"full_lmk_faces_idx": flame.model.extras["lmk_faces"][None],
                      "full_lmk_bary_coords": flame.model.extras["lmk_bary"][None]},
                     dtype=object), allow_pickle=True)
    model = load_model(path)
    loaded = flame_from_model(model)
    pose = truth_pose(jaw=(0.25, 0.0, 0.0))
    pose[1] = 0.0
    rot = rotation_from_euler(8.0, 3.0, 0.0)
    rest = model.vertices(np.r_[SHAPE, np.zeros(model.num_shape - 6)],
                          np.r_[EXPR, np.zeros(model.num_expression - 4)])
    verts = linear_blend_skinning(rest, pose, loaded.posedirs, loaded.j_regressor,
                                  loaded.weights, loaded.parents).astype(np.float64) @ rot.T
    px_all = np.column_stack([320 + 2.5 * verts[:, 0], 240 - 2.5 * verts[:, 1]])
    px = np.einsum("lk,lka->la", model.extras["lmk_bary"].astype(np.float64),
                   px_all[model.triangles[model.extras["lmk_faces"]]])
    rec = Reconstructor(model=model, detector=_FixedDetector(px), texture_size=0)
    fit = rec.reconstruct(np.zeros((480, 640, 3), np.uint8))[0].fit
    assert "flame_pose" in fit.extras and fit.extras["flame_pose"][2, 0] > 0.15


def test_perspective_camera_keeps_jaw_skinning() -> None:
    from facefit.detect.base import FaceLandmarks
    from facefit.fit.core.camera import PerspectiveCamera
    from facefit.fit.face_fit import fit_face

    flame = make_flame("full")
    pose = truth_pose(jaw=(0.35, 0.0, 0.0))
    rot = rotation_from_euler(12.0, -4.0, 2.0)
    truth = PerspectiveCamera(rot, np.array([3.0, -2.0, -450.0]), 1200.0,
                              np.array([320.0, 240.0]))
    rest = flame.model.vertices(SHAPE, EXPR)
    verts = linear_blend_skinning(rest, pose, flame.posedirs, flame.j_regressor, flame.weights,
                                  flame.parents).astype(np.float64)
    ex = flame.model.extras
    corners = flame.model.triangles[ex["lmk_faces"]]
    lm3d = np.einsum("lk,lka->la", ex["lmk_bary"].astype(np.float64), verts[corners])
    px, _ = truth.project(lm3d)
    face = FaceLandmarks(box=np.array([0, 0, 640, 480], np.float32), score=1.0,
                         points_px=px.astype(np.float32), depth_px=None, scheme="ibug68")
    fit = fit_face(flame.model, face, (640, 480), camera="perspective", focal_px=1200.0,
                   landmark_sigma=1e-5)
    assert fit.camera.kind == "perspective" and fit.camera.focal_px == 1200.0
    assert fit.extras["flame_pose"][2, 0] == pytest.approx(0.35, abs=5e-3)  # jaw kept
    np.testing.assert_allclose(fit.translation, truth.translation, rtol=0.02)
    assert fit.residual_px < 1e-3
    # result landmarks interpolate the projected triangle corners: under perspective that is
    # within a fraction of a pixel of projecting the interpolated 3D point
    np.testing.assert_allclose(fit.landmarks_68_2d, px, atol=0.3)
    closed = flame.model.vertices(fit.shape_coeffs, fit.expression_coeffs)
    assert np.abs(fit.vertices_mm - closed).max() > 5.0  # the exported mesh has the jaw open
    # the default Reconstructor path: the same dispatch with the orthographic camera
    ortho = fit_face(flame.model, face, (640, 480))
    assert ortho.camera.kind == "scaled_orthographic" and ortho.extras["flame_pose"][2, 0] > 0.2


@pytest.mark.parametrize("method", ["joint", "confidence"])
def test_same_person_keeps_each_photos_jaw(method: str) -> None:
    from facefit.fit.multi_image import ViewPoints, fit_same_person

    base = make_flame("full").model
    lm68 = base.triangles[base.extras["lmk_faces"], 0].astype(np.int64)  # a vertex per landmark
    flame = flame_from_model(dataclasses.replace(base, landmark_ids={"ibug68": lm68}))
    m = flame.model
    ids = np.arange(0, m.num_vertices, 2)
    jaws = [0.05, 0.3, 0.15]
    views, posed = [], []
    for jaw, yaw in zip(jaws, (-20.0, 5.0, 25.0), strict=True):
        verts = linear_blend_skinning(m.vertices(SHAPE, EXPR), truth_pose((jaw, 0.0, 0.0)),
                                      flame.posedirs, flame.j_regressor, flame.weights,
                                      flame.parents).astype(np.float64)
        rot = rotation_from_euler(yaw, 3.0, 0.0)
        v = verts[ids] @ rot.T
        px = np.column_stack([2.0 * v[:, 0] + 320.0, -2.0 * v[:, 1] + 240.0])
        views.append(ViewPoints(px, ids, np.ones(len(ids)), 0.05))
        posed.append(verts)
    multi = fit_same_person(m, views, method=method, iterations=10)
    for fit, jaw, verts in zip(multi.fits, jaws, posed, strict=True):
        assert fit.extras["flame_pose"][2, 0] == pytest.approx(jaw, abs=0.02)
        # the exported mesh is the skinned one (jaw and neck) ...
        skinned = linear_blend_skinning(m.vertices(fit.shape_coeffs, fit.expression_coeffs),
                                        fit.extras["flame_pose"], flame.posedirs,
                                        flame.j_regressor, flame.weights, flame.parents)
        np.testing.assert_allclose(fit.vertices_mm, skinned, atol=1e-3)
        if method == "joint":  # ... and, with the identity fitted jointly, the true posed face
            np.testing.assert_allclose(fit.vertices_mm, verts, atol=0.5)
        assert fit.residual_px < 0.5
