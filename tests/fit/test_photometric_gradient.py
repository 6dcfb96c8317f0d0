"""The photometric refinement's closed-form gradients (`facefit.fit.photometric.gradient`)
against autograd through the reference render (`PhotoState.render`, `pixel_loss`,
`landmark_loss`), and whole refinements with either."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facefit.fit.camera import Camera
from facefit.fit.landmark_fit import fit_points, make_result
from facefit.fit.photometric import PhotometricConfig, refine_photometric
from facefit.fit.photometric.data import prepare_photo
from facefit.fit.photometric.gradient import analytic_supported, photo_objective
from facefit.fit.photometric.objective import (
    LinearMesh,
    PhotoState,
    landmark_loss,
    pixel_loss,
)
from facefit.model import load_default_model
from facefit.render import differentiable as dr
from facefit.synthetic.photos import make_synthetic_face


@pytest.fixture(scope="module")
def model():
    return load_default_model()


@pytest.fixture(scope="module")
def photo(model):
    rng = np.random.default_rng(11)
    face = make_synthetic_face(model, rng, size=160)
    ids = model.landmark_ids["ibug68"]
    pts = face.landmarks + rng.normal(0, 1.0, face.landmarks.shape)
    a, b, pose, rms, n = fit_points(model, pts, ids)
    return make_result(model, a, b, pose, Camera(), rms, n, 5), face.image, pts


@pytest.fixture(scope="module")
def close_up(model):
    """A face close to a pinhole camera (focal length = photo side), fitted with it."""
    rng = np.random.default_rng(12)
    face = make_synthetic_face(model, rng, size=160, focal_px=160.0)
    ids = model.landmark_ids["ibug68"]
    pts = face.landmarks + rng.normal(0, 1.0, face.landmarks.shape)
    cam = Camera("perspective", 160.0, (79.5, 79.5))
    a, b, pose, rms, n = fit_points(model, pts, ids, camera=cam)
    return make_result(model, a, b, pose, cam, rms, n, 5), face.image, pts


@pytest.mark.parametrize("normals,camera", [("stencil", "photo"), ("tangents", "photo"),
                                            ("stencil", "close_up")])
def test_gradients_equal_autograd(model, normals, camera, request):
    fit, image, pts = request.getfixturevalue(camera)
    f32 = dict(dtype=torch.float32, device=torch.device("cpu"))
    basis = np.concatenate([model.shape_basis, model.expression_basis], 2).astype(np.float32)
    mesh = LinearMesh(model, basis, f32)
    corners = np.asarray(model.landmark_ids["ibug68"], np.int64)[:, None]
    data = prepare_photo(fit, image, 112, (2, 1), (normals, normals), corners,
                         np.ones(corners.shape), pts, f32["device"])
    stencil = dr.normal_stencil(model.mean, model.triangles)
    ph = PhotoState(data, mesh, None, stencil, np.asarray(model.triangles, np.int64), f32)
    rng = np.random.default_rng(0)
    shape = torch.as_tensor(fit.shape_coeffs, **f32)
    act = ph.rasterise(data.pyramid[1], torch.cat([shape, ph.expr]), 2000, rng)
    assert analytic_supported(ph, "l2", False, False)
    # a state away from the start: pose, light, coefficients and per-pixel weights moved
    with torch.no_grad():
        ph.omega.copy_(torch.tensor([0.8, -0.5, 0.3]))
        ph.log_s.fill_(1.5)
        ph.trans.add_(torch.tensor([0.7, -0.4]))
        ph.sh.copy_(torch.as_tensor(np.random.default_rng(1).normal(0, 0.3, (9, 3))))
        ph.sh[0] += 1.5
        ph.expr.add_(0.3)
        act.weight[::7] = 0
    shape = (shape + 0.2).requires_grad_(True)
    albedo = torch.as_tensor(np.random.default_rng(2).uniform(0.3, 0.8, (len(act.local), 3)),
                             **f32).requires_grad_(True)
    params = [shape, ph.expr, ph.omega, ph.log_s, ph.trans, ph.sh, albedo]
    for p in params:
        p.requires_grad_(True)
    out = ph.render(torch.cat([shape, ph.expr]), albedo)
    loss = (pixel_loss(out, act, "l2", 0.01)
            + landmark_loss(out["lm"], ph.lm_target, 3.0, 3.0))
    want = torch.autograd.grad(loss, params)

    coeffs = torch.cat([shape, ph.expr]).detach()
    alb_px = dr.interpolate(albedo.detach(), act.pix_vids, act.samp.bary)
    got_loss, g = photo_objective(ph, coeffs, alb_px, 3.0, 3.0, 0.01)
    g_albedo = torch.zeros_like(albedo).index_add_(
        0, act.pix_vids.reshape(-1),
        (g["albedo_px"][:, None, :] * act.samp.bary[:, :, None]).reshape(-1, 3))
    got = [g["coeffs"][:len(shape)], g["coeffs"][len(shape):], g["omega"], g["log_s"],
           g["trans"], g["sh"], g_albedo]
    assert float(got_loss) == pytest.approx(float(loss.detach()), rel=1e-5)
    for name, a, b in zip(["shape", "expr", "omega", "log_s", "trans", "sh", "albedo"],
                          got, want, strict=True):
        scale = float(b.abs().max())
        assert scale > 0, name
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-4 * scale, err_msg=name)


@pytest.mark.parametrize("camera", ["photo", "close_up"])
def test_analytic_refinement_follows_the_autograd_one(model, camera, request):
    """A few steps with either gradient end at nearly the same fit (float32 rounding, then
    Adam's normalised steps, keep them from being identical); either camera."""
    fit, image, pts = request.getfixturevalue(camera)
    kw = dict(iterations=6, size=112, levels=(2, 1), level_share=(0.5, 0.5))
    a = refine_photometric(model, fit, image, landmarks_px=pts, config=PhotometricConfig(**kw))
    b = refine_photometric(model, fit, image, landmarks_px=pts,
                           config=PhotometricConfig(gradients="autograd", **kw))
    moved = np.abs(b.fit.verts_px - fit.verts_px).mean()
    assert moved > 0.05
    assert np.abs(a.fit.verts_px - b.fit.verts_px).mean() < 0.05 * moved
    assert a.photometric_error == pytest.approx(b.photometric_error, rel=0.02)
    with pytest.raises(ValueError, match="gradients"):
        PhotometricConfig(gradients="numeric")
