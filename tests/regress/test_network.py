"""Regression network: output shapes, projector against the profiling labels, losses, one
optimiser step, checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facefit.fit.camera import rotation_from_euler
from facefit.model.bfm_3ddfa import load_default_model
from facefit.regress.network import N_POSE, ParamNorm, Projector, build_network
from facefit.regress.profiling import ProfiledView, project_landmarks
from facefit.regress.train import Losses, load_checkpoint


@pytest.fixture(scope="module")
def model():
    return load_default_model()


def _views(model, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = ProfiledView(np.zeros((1, 1, 3), np.uint8),
                         rotation_from_euler(*rng.uniform(-60, 60, 3)), rng.uniform(0.3, 0.5),
                         rng.uniform(50, 70, 2),
                         rng.normal(size=model.num_shape).astype(np.float32),
                         rng.normal(size=model.num_expression).astype(np.float32),
                         np.zeros((68, 2), np.float32))
        out.append((v, project_landmarks(model, v)))
    return out


def test_output_shape_and_size(model):
    net = build_network(model)
    y = net(torch.rand(2, 3, 120, 120))
    assert y.shape == (2, N_POSE + 40 + 10)
    assert sum(p.numel() for p in net.parameters()) * 2 < 2_000_000  # fp16 under 2 MB


def test_projector_matches_labels(model):
    views = _views(model, 3)
    params = torch.tensor(np.stack([np.r_[v.pose8, v.shape, v.expression] for v, _ in views]))
    got = Projector(model, model.landmark_ids["ibug68"])(params).numpy()
    np.testing.assert_allclose(got, np.stack([lm for _, lm in views]), atol=1e-3)


def test_seeded_initialisation(model):
    """`build_network`'s ``seed`` fixes the initial weights (training runs start alike) and
    leaves torch's global generator where it was."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = build_network(model, seed=0).state_dict()
    assert torch.equal(torch.rand(3), expected)
    b = build_network(model, seed=0).state_dict()
    c = build_network(model, seed=1).state_dict()
    weights = [k for k in a if a[k].is_floating_point() and a[k].ndim > 1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in weights)


def test_losses_zero_at_target_and_one_step_lowers(model, tmp_path):
    torch.manual_seed(0)
    views = _views(model, 4, seed=1)
    target = torch.tensor(np.stack([np.r_[v.pose8, v.shape, v.expression] for v, _ in views]))
    lm = torch.tensor(np.stack([lm for _, lm in views]))
    norm = ParamNorm.from_targets(target.numpy())
    losses = Losses(model, norm, 120.0)
    at_target = losses(norm.normalise(target), target, lm)
    assert all(float(v) < 1e-5 for v in at_target.values())

    net = build_network(model)
    images = torch.rand(4, 3, 32, 32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def total() -> torch.Tensor:
        return sum(losses(net(images), target, lm).values())

    before = total()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = float(total())
    assert after < float(before.detach())

    path = tmp_path / "w.pt"
    torch.save({"net": net.state_dict(), "norm_mean": torch.from_numpy(norm.mean)}, path)
    ck = load_checkpoint(path)
    net2 = build_network(model)
    net2.load_state_dict(ck["net"])
    net.eval()
    net2.eval()
    torch.testing.assert_close(net(images), net2(images))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_channels_last_training_matches_the_plain_layout(model):
    """`facefit.regress.train` runs the network channels last (faster on the CPU): the same
    outputs and gradients as a float64 network in the plain layout (to float32 rounding,
    which batch norm's training-mode gradients amplify to ~1 % in both layouts), and its
    weights load into a plain network."""
    from facefit.regress.train import TrainConfig, to_tensor, training_network

    crops = np.random.default_rng(3).integers(0, 256, (8, 64, 64, 3), np.uint8)
    x = to_tensor(crops)
    assert x.is_contiguous(memory_format=torch.channels_last)
    plain_x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().contiguous() / 255.0
    torch.testing.assert_close(x, plain_x, rtol=0, atol=0)

    ref = build_network(model, seed=0).double()
    fast = training_network(model, TrainConfig(seed=0))
    assert fast.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    ref_out, out = ref(plain_x.double()), fast(x)
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-3, atol=1e-4)
    ref_out.square().sum().backward()
    out.square().sum().backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        rel = float((q.grad.double() - p.grad).norm() / p.grad.norm())
        assert rel < 0.05, name

    reloaded = build_network(model)
    reloaded.load_state_dict(fast.state_dict())
    assert reloaded.features[0].weight.is_contiguous()
    for net in (fast, reloaded):
        net.eval()
    torch.testing.assert_close(reloaded(plain_x), fast(x), rtol=1e-3, atol=1e-4)


def test_keep_freed_memory_sets_the_allocator_limits():
    """glibc accepts both limits (mallopt returns 1 for each); another C library is left
    alone and says so."""
    import platform

    from facefit.regress.train import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
