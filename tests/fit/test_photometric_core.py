"""The photometric refinement's parts: one loop for one or several photos, the config, the
priors, free parameter groups, and FLAME's skinning through the refinement."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera, rotation_from_euler
from facefit.fit.core.camera import camera_pose
from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.rotation import rodrigues
from facefit.fit.flame_fit import fit_flame_points, flame_embedding, flame_result
from facefit.fit.landmark_fit import fit_points, make_result
from facefit.fit.photometric import (
    PhotometricConfig,
    refine_photometric,
    refine_photometric_multi,
)
from facefit.fit.photometric.config import JOINT_ITERATIONS, JOINT_LR_COEFFS, parse_settings
from facefit.fit.photometric.objective import FlameMesh, LinearMesh, unique_ids
from facefit.fit.photometric.priors import (
    TorchGaussian,
    albedo_quadratic,
    albedo_regulariser,
    gaussian_cost,
    quadratic_cost,
)
from facefit.fit.result import image_vertices
from facefit.model import load_default_model
from facefit.model.io_flame import FlameModel, flame_from_model, linear_blend_skinning
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel
from facefit.render import differentiable as dr
from facefit.synthetic.photos import make_synthetic_face, random_light, smooth_albedo


@pytest.fixture(scope="module")
def model():
    return load_default_model()


def _landmark_fit(model, face, rng):
    ids = model.landmark_ids["ibug68"]
    pts = face.landmarks + rng.normal(0, 1.0, face.landmarks.shape)
    size = float(np.sqrt(np.prod(pts.max(0) - pts.min(0))))
    a, b, pose, rms, n = fit_points(model, pts, ids, landmark_sigma_px=0.02 * size)
    return make_result(model, a, b, pose, Camera(), rms, n, 5), pts


def test_single_photo_is_the_multi_photo_refinement_with_one_photo(model):
    rng = np.random.default_rng(2)
    face = make_synthetic_face(model, rng)
    fit, pts = _landmark_fit(model, face, rng)
    cfg = PhotometricConfig(iterations=40, size=160)
    single = refine_photometric(model, fit, face.image, landmarks_px=pts, config=cfg)
    multi = refine_photometric_multi(model, [fit], [face.image], landmarks_px=[pts], config=cfg)
    one = multi.results[0]
    for a, b in ((single.fit.verts_px, one.fit.verts_px),
                 (single.fit.shape_coeffs, one.fit.shape_coeffs),
                 (single.fit.shape_coeffs, multi.shape_coeffs),
                 (single.fit.expression_coeffs, one.fit.expression_coeffs),
                 (single.fit.rotation, one.fit.rotation),
                 (single.fit.translation, one.fit.translation),
                 (single.sh_coeffs, one.sh_coeffs), (single.albedo, one.albedo),
                 (single.albedo, multi.albedo)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    assert single.fit.scale == pytest.approx(one.fit.scale, abs=1e-4)
    assert single.photometric_error == pytest.approx(one.photometric_error, abs=1e-4)
    assert single.landmark_error_px == pytest.approx(one.landmark_error_px, abs=1e-4)
    assert single.iterations == one.iterations == 40
    # and it is a refinement: the photo is matched much better than by the landmark fit
    assert single.photometric_error < 0.7 * single.initial_photometric_error


def test_config_checks_and_defaults():
    for bad in (dict(image_loss="l1"), dict(normals="smooth"), dict(normals=("face",)),
                dict(optimizer="sgd"), dict(free=("pose", "teeth")), dict(levels=()),
                dict(refresh_every=0), dict(albedo_levels=(3,)), dict(albedo_levels=(-4,)),
                dict(albedo_levels="finest"), dict(albedo_after=-1),
                dict(max_pixels=(8000, 3000))):
        with pytest.raises(ValueError):
            PhotometricConfig(**bad)
    # by default the per-vertex albedo is held on every level of one photo's refinement and
    # joins at the finest level only of a joint one, unless told otherwise
    assert not any(PhotometricConfig().albedo_free_at(i) for i in range(3))
    assert [PhotometricConfig().albedo_free_at(i, 6) for i in range(3)] == [False, False, True]
    assert [PhotometricConfig(albedo_levels=(-1,)).albedo_free_at(i)
            for i in range(3)] == [False, False, True]
    assert PhotometricConfig(albedo_levels=()).albedo_levels_for(6) == ()
    assert all(PhotometricConfig(albedo_levels=None).albedo_free_at(i) for i in range(3))
    assert [PhotometricConfig(albedo_levels=(0, -2)).albedo_free_at(i)
            for i in range(3)] == [True, True, False]
    assert not PhotometricConfig(free=("shape",), albedo_levels=None).albedo_free_at(2)
    cfg = PhotometricConfig()
    # stencil normals at the finest level, interpolated tangents on the coarser ones
    assert cfg.level_normals == ("tangents", "tangents", "stencil")
    assert PhotometricConfig(coarse_normals=None).level_normals == ("stencil",) * 3
    assert PhotometricConfig(normals="face", levels=(2, 1)).level_normals == ("tangents", "face")
    assert PhotometricConfig(normals=("vertex",) * 3).level_normals == ("vertex",) * 3
    with pytest.raises(ValueError, match="coarse_normals"):
        PhotometricConfig(coarse_normals="smooth")
    assert [PhotometricConfig(max_pixels=(1, 2, 3)).level_max_pixels(i)
            for i in range(3)] == [1, 2, 3]
    assert PhotometricConfig(max_pixels=5).level_max_pixels(1) == 5
    assert [cfg.level_max_pixels(i) for i in range(3)] == [3000, 3000, 8000]
    assert [PhotometricConfig(coarse_pixels=None).level_max_pixels(i)
            for i in range(3)] == [8000] * 3
    assert PhotometricConfig(image_loss="gradient").level_max_pixels(2) is None
    np.testing.assert_array_equal(cfg.level_counts(), [50, 30, 20])
    np.testing.assert_array_equal(PhotometricConfig(iterations=7).level_counts(), [3, 2, 2])
    # steps by photo count: 100 for one, JOINT_ITERATIONS for several, unless given
    assert cfg.iterations is None and cfg.iterations_for(1) == 100
    assert cfg.iterations_for(2) == cfg.iterations_for(6) == JOINT_ITERATIONS == 250
    np.testing.assert_array_equal(cfg.level_counts(6), [125, 75, 50])
    assert PhotometricConfig(iterations=7).iterations_for(6) == 7
    # coefficient steps by photo count: 0.05 for one, JOINT_LR_COEFFS for several
    assert cfg.lr_coeffs is None and cfg.lr_coeffs_for(1) == 0.05
    assert cfg.lr_coeffs_for(2) == JOINT_LR_COEFFS == 0.1
    assert PhotometricConfig(lr_coeffs=0.2).lr_coeffs_for(1) == 0.2
    assert cfg.landmark_weight_for(1) == 2.0 and cfg.landmark_weight_for(3) == 1.0
    assert PhotometricConfig(landmark_weight=2.0).landmark_weight_for(3) == 2.0
    # per-level landmark factors and identity components
    for bad in (dict(level_landmark_scale=(1.0, 0.0)), dict(shape_components=(10, 20))):
        with pytest.raises(ValueError, match="one value per level"):
            PhotometricConfig(**bad)
    scaled = PhotometricConfig(level_landmark_scale=(0.5, 1.0, 0.0))
    assert [scaled.level_landmark_weight(i, 1) for i in range(3)] == [1.0, 2.0, 0.0]
    assert [cfg.level_landmark_weight(i, 2) for i in range(3)] == [1.0, 1.0, 1.0]
    assert [PhotometricConfig(shape_components=(5, 20, 500)).level_shape_components(i, 80)
            for i in range(3)] == [5, 20, 80]
    assert cfg.level_shape_components(0, 80) == 80
    assert PhotometricConfig(shape_components=7).level_shape_components(2, 80) == 7


def test_settings_load_without_torch():
    """The settings and the command line's parsers need numpy only; the package's other
    names load on first use."""
    code = ("import sys\n"
            "import facefit.fit.photometric as ph\n"
            "from facefit.fit.photometric.config import JOINT_ITERATIONS\n"
            "import facefit.cli.reconstruct, facefit.cli.eval\n"
            "assert 'torch' not in sys.modules\n"
            "assert ph.IMAGE_LOSSES == sys.modules['facefit.reconstruct'].IMAGE_LOSSES\n"
            "assert 'torch' not in sys.modules\n"
            "from facefit.fit.photometric import best_refinement, mesh_edges\n"
            "assert 'torch' in sys.modules and callable(best_refinement)\n"
            "try:\n    ph.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parse_settings_reads_literals_and_bare_words():
    got = parse_settings(["coeff_prior=0.25", " level_landmark_scale = (1, 1, 0.5)",
                          "optimizer=lbfgs", "iterations=None", "normals='face'"])
    assert got == {"coeff_prior": 0.25, "level_landmark_scale": (1, 1, 0.5),
                   "optimizer": "lbfgs", "iterations": None, "normals": "face"}
    PhotometricConfig(**got)  # every value is a valid setting
    for bad in ("coeff_prior", "no_such_setting=1", "=1"):
        with pytest.raises(ValueError, match="PhotometricConfig setting"):
            parse_settings([bad])


def test_gaussian_cost_is_the_prior_cost():
    rng = np.random.default_rng(0)
    prior = GaussianPrior(rng.normal(size=7), rng.uniform(0.2, 2.0, 7))
    x = rng.normal(size=7)
    expected = float((((x - prior.mean) / prior.sigma) ** 2).sum())
    assert float(gaussian_cost(prior, torch.as_tensor(x))) == pytest.approx(expected, rel=1e-12)
    assert prior.cost(x) == pytest.approx(expected, rel=1e-12)
    cached = TorchGaussian(prior, torch.float64, torch.device("cpu"))
    assert float(cached(torch.as_tensor(x))) == pytest.approx(expected, rel=1e-12)


def test_albedo_quadratic_is_the_regulariser():
    """The sparse quadratic form of the per-vertex albedo prior has the regulariser's value
    and gradient (autograd through the gathers) on a random table, rows, mirrors and edges."""
    rng = np.random.default_rng(3)
    num = 40
    rows = np.sort(rng.choice(num, 30, replace=False))
    mirror = rng.integers(0, num, 30)
    edges = rng.integers(0, num, (2, 70))
    weights = (1.0, 30.0, 10.0)
    table = torch.as_tensor(rng.normal(size=(num, 3)), dtype=torch.float32)
    a, b = table.clone().requires_grad_(True), table.clone().requires_grad_(True)
    ref = albedo_regulariser(a, torch.as_tensor(rows), torch.as_tensor(mirror),
                             torch.as_tensor(edges), *weights)
    got = quadratic_cost(b, albedo_quadratic(num, rows, mirror, edges, *weights))
    ref.backward()
    got.backward()
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_fixed_groups_stay_at_their_start(model):
    rng = np.random.default_rng(4)
    face = make_synthetic_face(model, rng, size=160)
    fit, _ = _landmark_fit(model, face, rng)
    res = refine_photometric(model, fit, face.image, config=PhotometricConfig(
        iterations=12, size=112, levels=(2, 1), level_share=(0.5, 0.5),
        free=("light", "albedo")))
    np.testing.assert_array_equal(res.fit.shape_coeffs, fit.shape_coeffs)
    np.testing.assert_array_equal(res.fit.expression_coeffs, fit.expression_coeffs)
    np.testing.assert_allclose(res.fit.rotation, fit.rotation, atol=1e-6)
    np.testing.assert_allclose(res.fit.verts_px, fit.verts_px, atol=1e-3)
    assert res.photometric_error < res.initial_photometric_error


def test_shape_components_and_level_landmark_scale(model):
    """Only the leading ``shape_components`` identity coefficients move; a landmark factor
    of 0 on every level is the landmark weight 0."""
    rng = np.random.default_rng(6)
    face = make_synthetic_face(model, rng, size=160)
    fit, _ = _landmark_fit(model, face, rng)
    kw = dict(iterations=8, size=112, levels=(2, 1), level_share=(0.5, 0.5))
    res = refine_photometric(model, fit, face.image,
                             config=PhotometricConfig(shape_components=(3, 5), **kw))
    np.testing.assert_array_equal(res.fit.shape_coeffs[5:], fit.shape_coeffs[5:])
    assert np.abs(res.fit.shape_coeffs[:3] - fit.shape_coeffs[:3]).min() > 0
    off = refine_photometric(model, fit, face.image, config=PhotometricConfig(
        level_landmark_scale=(0.0, 0.0), **kw))
    zero = refine_photometric(model, fit, face.image,
                              config=PhotometricConfig(landmark_weight=0.0, **kw))
    np.testing.assert_array_equal(off.fit.shape_coeffs, zero.fit.shape_coeffs)
    on = refine_photometric(model, fit, face.image, config=PhotometricConfig(**kw))
    assert not np.array_equal(off.fit.shape_coeffs, on.fit.shape_coeffs)


def test_albedo_held_where_its_levels_say(model):
    """With no albedo level (and no `albedo_after` phase) the per-vertex correction never
    moves from the skin colour; at the finest level it does, after the shape had the coarse
    levels."""
    from facefit.fit.photometric.config import SKIN_RGB

    rng = np.random.default_rng(5)
    face = make_synthetic_face(model, rng, size=160)
    fit, _ = _landmark_fit(model, face, rng)
    kw = dict(iterations=12, size=112, levels=(2, 1), level_share=(0.5, 0.5))
    held = refine_photometric(model, fit, face.image,
                              config=PhotometricConfig(albedo_levels=(), albedo_after=0,
                                                       **kw))
    np.testing.assert_allclose(held.albedo, np.broadcast_to(SKIN_RGB, held.albedo.shape),
                               atol=1e-6)
    assert not np.array_equal(held.fit.shape_coeffs, fit.shape_coeffs)  # the shape moved
    late = refine_photometric(model, fit, face.image,
                              config=PhotometricConfig(albedo_levels=(-1,), **kw))
    assert np.abs(late.albedo - np.asarray(SKIN_RGB, np.float32)).max() > 1e-3


def test_several_photos_with_the_gradient_loss(model):
    rng = np.random.default_rng(6)
    faces = [make_synthetic_face(model, rng, size=160) for _ in range(2)]
    fits = [_landmark_fit(model, f, rng)[0] for f in faces]
    res = refine_photometric_multi(model, fits, [f.image for f in faces],
                                   config=PhotometricConfig(iterations=8, size=96, levels=(1,),
                                                            level_share=(1.0,),
                                                            image_loss="gradient"))
    assert len(res.results) == 2
    assert all(np.isfinite(r.photometric_error) for r in res.results)
    np.testing.assert_array_equal(res.results[0].fit.shape_coeffs, res.results[1].fit.shape_coeffs)


# --- FLAME ------------------------------------------------------------------------------------

SHAPE = np.array([0.8, -0.5, 0.3, 0.0, 0.4, -0.2])
EXPR = np.array([0.6, -0.3, 0.2, 0.1])
JAW = 2


def _grid_flame(n: int = 32) -> FlameModel:
    """A FLAME-layout model on a curved n x n grid (mm): 5 joints (root, neck, jaw, eyes),
    the lower face skinned to the jaw, small pose correctives, and a landmark embedding laid
    out like the default model's 68 landmarks (so the face-skin mask lies inside the mesh),
    with a corner of each landmark's triangle as its ``ibug68`` vertex."""
    rng = np.random.default_rng(5)
    gx, gy = np.meshgrid(np.linspace(-60, 60, n), np.linspace(-75, 75, n))
    mean = np.column_stack([gx.ravel(), gy.ravel(), (40 - 0.004 * gx**2 - 0.003 * gy**2).ravel()])
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int32)
    v = len(mean)
    q, _ = np.linalg.qr(rng.standard_normal((3 * v, 10)))
    shape = (q[:, :6] * [6.0, 4.5, 3.0, 2.0, 1.5, 1.0]).reshape(v, 3, 6)
    expr = (q[:, 6:] * [3.0, 2.0, 1.0, 0.5]).reshape(v, 3, 4)
    jreg = np.zeros((5, v))
    for j, where in enumerate([(0, -75, 30), (0, -55, 30), (0, -20, 20), (30, 30, 40),
                               (-30, 30, 40)]):
        jreg[j, np.argsort(((mean - np.asarray(where)) ** 2).sum(1))[:4]] = 0.25
    weights = np.zeros((v, 5))
    weights[:, 1] = 1.0
    weights[mean[:, 1] < -62] = [1.0, 0, 0, 0, 0]
    weights[(mean[:, 1] < -20) & (mean[:, 1] >= -62)] = [0, 0.2, 0.8, 0, 0]
    bfm = load_default_model()
    lm = bfm.mean[bfm.landmark_ids["ibug68"], :2].astype(np.float64)
    lm = (lm - lm.mean(0)) * 0.6 + np.array([0.0, -10.0])
    centres = mean[tri].mean(1)[:, :2]
    faces = np.argmin(((centres[None] - lm[:, None]) ** 2).sum(2), axis=1)
    extras = {"flame_posedirs": (rng.standard_normal((v, 3, 36)) * 0.01).astype(np.float32),
              "flame_J_regressor": jreg.astype(np.float32),
              "flame_weights": weights.astype(np.float32),
              "flame_parents": np.array([-1, 0, 1, 1, 1]), "lmk_faces": faces,
              "lmk_bary": np.full((68, 3), 1.0 / 3.0, np.float32)}
    kw = {}
    if "kind" in {f.name for f in dataclasses.fields(MorphableModel)}:
        kw["kind"] = "flame"
    model = MorphableModel(
        name="flame-grid", mean=mean.astype(np.float32), shape_basis=shape.astype(np.float32),
        expression_basis=expr.astype(np.float32), triangles=tri,
        uv=np.column_stack([(gx.ravel() + 60) / 120, (gy.ravel() + 75) / 150]).astype(np.float32),
        landmark_ids={"ibug68": tri[faces, 0].astype(np.int64)},
        mirror_ids=idx[:, ::-1].ravel().astype(np.int64), licence="test data",
        source="synthetic", extras=extras, **kw)
    return flame_from_model(model)


@pytest.fixture(scope="module")
def flame():
    return _grid_flame()


def test_torch_skinning_is_flame_skinning(flame):
    pose = np.zeros((5, 3))
    pose[1], pose[JAW], pose[3] = [0.1, -0.2, 0.05], [0.4, 0.05, -0.1], [0.0, 0.3, 0.0]
    m = flame.model
    f64 = dict(dtype=torch.float64, device=torch.device("cpu"))
    mesh = FlameMesh(face_model(m), np.concatenate([m.shape_basis, m.expression_basis], 2), f64)
    ours = mesh.every()(torch.as_tensor(np.r_[SHAPE, EXPR], **f64),
                        torch.as_tensor(rodrigues(pose), **f64)).numpy()
    ref = linear_blend_skinning(m.vertices(SHAPE, EXPR), pose, flame.posedirs,
                                flame.j_regressor, flame.weights, flame.parents)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    sub = mesh.subset(torch.as_tensor([5, 700, 99]))
    np.testing.assert_allclose(sub(torch.as_tensor(np.r_[SHAPE, EXPR], **f64),
                                   torch.as_tensor(rodrigues(pose), **f64)).numpy(),
                               ref[[5, 700, 99]], atol=1e-4)


@pytest.fixture(scope="module")
def jaw_open(flame):
    """(image, true image-space vertices, noisy landmarks px) of a jaw-open FLAME face
    (0.35 rad) rendered with smooth albedo and SH light."""
    m = flame.model
    rng = np.random.default_rng(0)
    pose = np.zeros((5, 3))
    pose[1], pose[JAW] = [0.05, -0.04, 0.02], [0.35, 0.0, 0.0]
    verts = linear_blend_skinning(m.vertices(SHAPE, EXPR), pose, flame.posedirs,
                                  flame.j_regressor, flame.weights, flame.parents)
    truth = image_vertices(camera_pose(rotation_from_euler(12.0, -5.0, 3.0), 1.2,
                                       np.array([128.0, 128.0])), verts.astype(np.float64))
    sh, _ = random_light(rng)
    color, cover = dr.render(torch.as_tensor(truth), m.triangles, 256, 256,
                             torch.as_tensor(smooth_albedo(m, rng)), torch.as_tensor(sh))
    image = np.clip(np.where(cover.numpy()[..., None], color.numpy(), 0.3) * 255 + 0.5, 0,
                    255).astype(np.uint8)
    emb = flame_embedding(flame)
    px = np.einsum("lk,lka->la", emb.bary, truth[emb.corners][:, :, :2])
    return image, truth, px + rng.normal(0, 0.5, px.shape)


def _assert_jaw_kept(flame: FlameModel, out, truth: np.ndarray) -> None:
    """The refined fit ``out`` keeps the open jaw: skinned vertices close to the truth, far
    closer than the linear (jaw-closed) vertices of its coefficients."""
    m = flame.model
    assert out.vertices_mm is not None
    assert 0.2 < out.extras["flame_pose"][JAW, 0] < 0.45
    jaw = flame.weights[:, JAW] > 0
    err = np.linalg.norm(out.verts_px[:, :2] - truth[:, :2], axis=1)[jaw]
    closed = image_vertices(camera_pose(out.rotation, out.scale, out.translation),
                            m.vertices(out.shape_coeffs, out.expression_coeffs))
    err_closed = np.linalg.norm(closed[:, :2] - truth[:, :2], axis=1)[jaw]
    assert err_closed.mean() > 2.5  # the jaw motion the linear vertices would lose
    assert err.mean() < 0.3 * err_closed.mean() and err.max() < 0.3 * err_closed.max()
    # the refined mesh is the skinned one: vertices_mm posed by the refined joints
    posed = linear_blend_skinning(m.vertices(out.shape_coeffs, out.expression_coeffs),
                                  out.extras["flame_pose"], flame.posedirs, flame.j_regressor,
                                  flame.weights, flame.parents)
    np.testing.assert_allclose(out.vertices_mm, posed, atol=1e-3)


def test_flame_keeps_its_open_jaw_through_the_refinement(flame, jaw_open):
    """The refinement starts from the skinned landmark fit and keeps the jaw (the linear
    model's vertices, which the refinement used before, leave it closed: 3.5 px mean, 9 px
    max error on the jaw-skinned vertices here)."""
    image, truth, px = jaw_open
    fit = flame_result(flame, fit_flame_points(flame, px, landmark_sigma_px=1.0))
    assert fit.extras["flame_pose"][JAW, 0] > 0.3
    # 60 steps: after 30 the jaw angle can still be overshooting the truth (0.35 rad): 0.468
    # with the packages a fresh install resolved on 2026-12-03 (0.42 after 60, 0.39 after 100).
    # The albedo free at the finest level: this face's random albedo, held at the skin colour
    # on every level (the one-photo default), leaves the jaw at 0.46 rad after 60 steps.
    # The pixel term on the landmarks' own mask: this grid face's albedo is random colour
    # blotches, so the skin-colour test of the grown mask (the default since session 28)
    # keeps an arbitrary part of it (jaw error 1.17 px mean there, 0.32 of the closed jaw's)
    res = refine_photometric(flame.model, fit, image, config=PhotometricConfig(
        iterations=60, size=128, levels=(2, 1), level_share=(0.5, 0.5), albedo_levels=(-1,),
        skin_forehead=0.7, skin_outline_scale=1.0))
    _assert_jaw_kept(flame, res.fit, truth)
    assert res.photometric_error < 0.6 * res.initial_photometric_error


class _FixedDetector:
    """A detector that returns given iBUG-68 landmarks."""

    scheme = "ibug68"

    def __init__(self, px: np.ndarray) -> None:
        self.px = px

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        return [FaceLandmarks(box=np.array([0, 0, 256, 256], np.float32), score=1.0,
                              points_px=self.px.astype(np.float32), depth_px=None,
                              scheme="ibug68")]


def test_reconstructor_refine_photometric_keeps_the_flame_jaw(flame, jaw_open):
    """``--refine photometric`` (the Reconstructor) on a FLAME model."""
    from facefit.reconstruct import Reconstructor

    image, truth, px = jaw_open
    rec = Reconstructor(model=flame.model, detector=_FixedDetector(px), texture_size=0,
                        refine="photometric", photometric_iterations=30)
    face = rec.reconstruct(image)[0]
    assert face.photometric is not None
    refined = face.photometric.fit  # the face's fit is it, with the landmark fit's 68 points
    np.testing.assert_array_equal(face.fit.shape_coeffs, refined.shape_coeffs)
    np.testing.assert_array_equal(face.fit.verts_px, refined.verts_px)
    _assert_jaw_kept(flame, face.fit, truth)


def test_stencil_operator_gives_positions_and_stencil_tangents(model):
    """offset + matrix @ coeffs holds the chosen vertices and their stencil differences
    x_a - x_b and x_c - x_d (computed here from the vertices); the refinement's normals
    from it are the stencil normals of `facefit.render.differentiable.stencil_normals`."""
    rng = np.random.default_rng(3)
    basis = np.concatenate([model.shape_basis, model.expression_basis], axis=2)
    mesh = LinearMesh(model, basis.astype(np.float32), dict(dtype=torch.float32,
                                                             device=torch.device("cpu")))
    stencil = dr.normal_stencil(model.mean, model.triangles)
    used = np.unique(model.triangles)  # vertices of the mesh (others have no stencil)
    ids = np.sort(rng.choice(used, 60, replace=False))
    coeffs = rng.normal(0, 1, basis.shape[2])
    offset, matrix = mesh.stencil_operator(ids, stencil, torch.device("cpu"))
    got = (offset + matrix @ torch.as_tensor(coeffs, dtype=torch.float32)).numpy()
    x = model.mean + np.einsum("vdk,k->vd", basis, coeffs)
    want = np.stack([x[ids], x[stencil[ids, 0]] - x[stencil[ids, 1]],
                     x[stencil[ids, 2]] - x[stencil[ids, 3]]])
    np.testing.assert_allclose(got.reshape(3, 60, 3), want, atol=2e-3)
    assert np.abs(want[1:]).max() > 0.5  # the tangents are not all zero
    n = np.cross(got.reshape(3, 60, 3)[1], got.reshape(3, 60, 3)[2])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    ref = dr.stencil_normals(torch.as_tensor(x), torch.as_tensor(stencil)).numpy()[ids]
    assert (n * ref).sum(1).min() > 0.9999


def test_pixel_operator_interpolates_positions_and_stencil_tangents(model):
    """offset + matrix @ coeffs holds, per pixel, the barycentric mix of the vertices and of
    their stencil differences x_a - x_b and x_c - x_d (computed here from the vertices)."""
    rng = np.random.default_rng(3)
    basis = np.concatenate([model.shape_basis, model.expression_basis], axis=2)
    mesh = LinearMesh(model, basis.astype(np.float32), dict(dtype=torch.float32,
                                                             device=torch.device("cpu")))
    stencil = dr.normal_stencil(model.mean, model.triangles)
    tri = np.asarray(model.triangles, np.int64)[rng.choice(len(model.triangles), 50)]
    bary = rng.dirichlet(np.ones(3), 50)
    coeffs = rng.normal(0, 1, basis.shape[2])
    offset, matrix = mesh.pixel_operator(tri, bary, stencil, torch.device("cpu"))
    got = (offset + matrix @ torch.as_tensor(coeffs, dtype=torch.float32)).numpy()
    x = model.mean + np.einsum("vdk,k->vd", basis, coeffs)
    want = np.stack([(x[tri] * bary[:, :, None]).sum(1),
                     ((x[stencil[tri, 0]] - x[stencil[tri, 1]]) * bary[:, :, None]).sum(1),
                     ((x[stencil[tri, 2]] - x[stencil[tri, 3]]) * bary[:, :, None]).sum(1)])
    np.testing.assert_allclose(got.reshape(3, 50, 3), want, atol=2e-3)
    assert np.abs(want[1:]).max() > 0.5  # the tangents are not all zero


def test_tangent_normals_refine_like_stencil_normals(model):
    """``normals="tangents"`` (tangents interpolated per pixel) and the default stencil
    normals give nearly the same refinement on a synthetic photo."""
    rng = np.random.default_rng(4)
    face = make_synthetic_face(model, rng, size=160)
    fit, _ = _landmark_fit(model, face, rng)
    kw = dict(iterations=12, size=112, levels=(2, 1), level_share=(0.5, 0.5))
    a = refine_photometric(model, fit, face.image, config=PhotometricConfig(**kw))
    b = refine_photometric(model, fit, face.image,
                           config=PhotometricConfig(normals="tangents", **kw))
    assert abs(a.photometric_error - b.photometric_error) < 0.1 * a.photometric_error
    moved = np.abs(a.fit.verts_px - fit.verts_px).mean()
    assert np.abs(a.fit.verts_px - b.fit.verts_px).mean() < 0.5 * moved


def test_unique_ids_is_numpys_unique():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 100, 70), rng.integers(0, 100, (5, 4))
    np.testing.assert_array_equal(unique_ids(100, a, b),
                                  np.unique(np.concatenate([a, b.ravel()])))
    assert unique_ids(10).size == 0


def test_flame_refinement_with_a_perspective_camera(flame, jaw_open):
    """A perspective FLAME fit refines too (skinned mesh, pinhole projection): its camera
    kind and focal length are kept, the photo's error falls, the jaw stays open."""
    from facefit.reconstruct import Reconstructor

    image, truth, px = jaw_open
    rec = Reconstructor(model=flame.model, detector=_FixedDetector(px), texture_size=0,
                        camera="perspective", focal_px=2000.0, refine="photometric",
                        photometric_iterations=20)
    face = rec.reconstruct(image)[0]
    assert face.photometric is not None
    cam = face.fit.camera
    assert cam.kind == "perspective" and cam.focal_px == 2000.0
    assert face.photometric.photometric_error < 0.7 * face.photometric.initial_photometric_error
    assert face.fit.extras["flame_pose"][JAW, 0] > 0.2
