"""FID, IS, KID and path length against independently computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.metrics.generative import (
    chi_mean,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
    softmax,
    trace_sqrt_product,
)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_fid_identical_sets_is_zero() -> None:
    f = np.random.default_rng(0).normal(size=(200, 6))
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-9)
    assert fid_from_features(f, f, method="sqrtm") == pytest.approx(0.0, abs=1e-6)


def test_frechet_closed_form_commuting_covariances() -> None:
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: FD = |dmu|^2 + sum (sqrt a - sqrt b)^2.
    q = _rotation(4, 1)
    a, b = np.array([1.0, 2.0, 0.5, 4.0]), np.array([3.0, 0.25, 0.5, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    analytic = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(analytic, rel=1e-10)
    assert frechet_distance(mu1, s1, mu2, s2, method="sqrtm") == pytest.approx(analytic, rel=1e-8)


def test_fid_of_gaussian_samples_matches_analytic() -> None:
    rng = np.random.default_rng(2)
    q = _rotation(3, 3)
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, -1.0, 0.5])
    analytic = 2.25 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    x = rng.multivariate_normal(mu1, q @ np.diag(a) @ q.T, size=40000)
    y = rng.multivariate_normal(mu2, q @ np.diag(b) @ q.T, size=40000)
    assert fid_from_features(x, y) == pytest.approx(analytic, rel=0.03)


def test_eigh_and_sqrtm_agree_on_non_commuting() -> None:
    rng = np.random.default_rng(4)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    assert trace_sqrt_product(s1, s2) == pytest.approx(trace_sqrt_product(s1, s2, "sqrtm"),
                                                       rel=1e-7)
    with pytest.raises(ValueError):
        trace_sqrt_product(s1, s2, "nope")


def test_fid_singular_covariances() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, 16))  # N < D: rank-4 covariance
    y = rng.normal(size=(5, 16)) + 1.0
    y[:, 3] = 7.0  # a constant feature
    for method in ("eigh", "sqrtm"):
        fid = fid_from_features(x, y, method=method)
        assert np.isfinite(fid) and fid > 0
        assert fid_from_features(x, x, method=method) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(x, y) == pytest.approx(fid_from_features(x, y, "sqrtm"), rel=1e-4)
    # Zero covariances: the distance is the squared mean difference.
    assert frechet_distance(np.zeros(3), np.zeros((3, 3)), np.ones(3),
                            np.zeros((3, 3))) == pytest.approx(3.0)


def test_fid_needs_two_images() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.ones((1, 4)), np.ones((10, 4)))
    mu, cov = feature_statistics(np.array([[0.0], [2.0]]))
    assert mu.tolist() == [1.0] and cov.tolist() == [[2.0]]


def test_inception_score_bounds() -> None:
    c = 10
    uniform = np.full((100, c), 1.0 / c)
    assert inception_score(uniform, splits=5)[0] == pytest.approx(1.0)
    onehot = np.eye(c)[np.arange(100) % c]  # balanced within each split
    mean, std = inception_score(onehot, splits=5)
    assert mean == pytest.approx(float(c)) and std == pytest.approx(0.0, abs=1e-12)
    assert inception_score(onehot[:1], splits=10)[0] == pytest.approx(1.0)  # a single image
    # hand computation: two images, p = [.5 .5] and [1 0]; p(y) = [.75 .25]
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    kl = 0.5 * (0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)) + 0.5 * np.log(1 / 0.75)
    assert inception_score(p, splits=1)[0] == pytest.approx(np.exp(kl))
    np.testing.assert_allclose(softmax(np.log(p + 1e-300)), p, atol=1e-12)
    with pytest.raises(ValueError):
        inception_score(np.ones((3, 2)))


def test_kid_kernel_and_mmd_hand_computed() -> None:
    x, y = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])
    assert polynomial_kernel(x, y)[0, 0] == pytest.approx(6.5**3)
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return (u @ v / 3 + 1) ** 3

    xx = sum(k(a[i], a[j]) for i in range(4) for j in range(4) if i != j) / 12
    yy = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(a[i], b[j]) for i in range(4) for j in range(5)) / 20
    assert mmd2_unbiased(a, b) == pytest.approx(xx + yy - 2 * xy)
    with pytest.raises(ValueError):
        mmd2_unbiased(a[:1], b)


def test_kid_same_distribution_near_zero_and_unbiased() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = kernel_inception_distance(x, y, num_subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(x, y + 0.5, num_subsets=20, subset_size=200)
    assert abs(same) < 0.02 < shifted
    # Unbiased: over many independent pairs of small samples the mean is ~0 (both signs occur).
    vals = np.array([mmd2_unbiased(rng.normal(size=(10, 4)), rng.normal(size=(10, 4)))
                     for _ in range(400)])
    assert (vals < 0).any() and (vals > 0).any()
    assert abs(vals.mean()) < 4 * vals.std() / np.sqrt(len(vals))


# ----------------------------------------------------------------------------- path length

torch = pytest.importorskip("torch")


def _linear_generator(d_out: int, k: int, s: float, image: bool = False):
    q, _ = np.linalg.qr(np.random.default_rng(8).normal(size=(d_out, k)))
    a = torch.tensor(s * q, dtype=torch.float64)  # A^T A = s^2 I_k

    def g(w):
        out = w @ a.T
        return out.reshape(w.shape[0], 3, 4, d_out // 12) if image else out

    return g, a


def test_path_length_linear_generator_analytic() -> None:
    from facefit.metrics.generative import path_length, path_lengths

    torch.manual_seed(0)
    d, k, s = 48, 6, 3.0
    g, a = _linear_generator(d, k, s)
    w = torch.randn(5, k, dtype=torch.float64)
    y = torch.randn(5, d, dtype=torch.float64)
    exact = (y @ a).norm(dim=1)  # |A^T y| per sample
    torch.testing.assert_close(path_lengths(g, w, generator_noise=y), exact)

    def sample(n):
        return torch.randn(n, k, dtype=torch.float64)

    mean, _ = path_length(g, sample, num_samples=4000, batch_size=1000)
    assert mean == pytest.approx(s / np.sqrt(d) * chi_mean(k), rel=0.02)
    # image-shaped output: y ~ N(0, I) / sqrt(H * W) with H * W = 16 (3 channels)
    gi, _ = _linear_generator(d, k, s, image=True)
    mean, _ = path_length(gi, sample, num_samples=4000, batch_size=1000)
    assert mean == pytest.approx(s / np.sqrt(16) * chi_mean(k), rel=0.02)


def test_path_length_regularizer_ema_and_grad() -> None:
    from facefit.metrics.generative import PathLengthRegularizer

    torch.manual_seed(1)
    lin = torch.nn.Linear(4, 12, bias=False).double()
    reg = PathLengthRegularizer(decay=0.1)
    w = torch.randn(64, 4, dtype=torch.float64)
    penalty = reg(lin, w)
    first = reg.mean
    assert first > 0
    penalty.backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    reg(lin, w)
    assert first < reg.mean  # moves towards the mean length


def test_perceptual_path_length_linear() -> None:
    from facefit.metrics.generative import perceptual_path_length

    torch.manual_seed(2)
    d, k, s = 24, 8, 0.5
    g, _ = _linear_generator(d, k, s)
    ppl = perceptual_path_length(g, lambda n: torch.randn(n, k, dtype=torch.float64),
                                 num_samples=4000, batch_size=1000)
    assert ppl == pytest.approx(2 * s**2 * k, rel=0.05)  # E|A (w2 - w1)|^2


# ----------------------------------------------------------------------------- extractors


class _TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3)

    def forward(self, x):
        return self.conv(x)


def test_feature_extractors(tmp_path: Path) -> None:
    from facefit.eval.generative import FeatureExtractor, load_feature_extractor

    torch.manual_seed(3)
    net = _TinyNet().eval()
    with pytest.warns(DeprecationWarning):  # torch.jit is deprecated but still common
        torch.jit.script(net).save(str(tmp_path / "net.ts"))
    torch.save(net.state_dict(), tmp_path / "net.pt")
    images = [np.random.default_rng(i).integers(0, 255, (20, 30, 3), dtype=np.uint8)
              for i in range(3)]
    f_ts = load_feature_extractor(tmp_path / "net.ts", input_size=16)(images)
    f_sd = load_feature_extractor(tmp_path / "net.pt", module=_TinyNet, input_size=16)(images)
    assert f_ts.shape == (3, 5)  # spatial axes averaged
    np.testing.assert_allclose(f_ts, f_sd, rtol=1e-5, atol=1e-6)
    exported = torch.export.export(net, (torch.zeros(3, 3, 16, 16),))
    torch.export.save(exported, str(tmp_path / "net.pt2"))
    f_ex = load_feature_extractor(tmp_path / "net.pt2", input_size=16)(images)
    np.testing.assert_allclose(f_ex, f_sd, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="module"):
        load_feature_extractor(tmp_path / "net.pt")
    fe = FeatureExtractor(lambda x: x, input_size=4, input_range="symmetric")
    batch = fe.preprocess([np.full((8, 8, 3), 255, np.uint8)])
    assert batch.shape == (1, 3, 4, 4) and np.allclose(batch, 1.0)


def test_onnx_without_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("facefit.eval.generative")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        from facefit.eval.generative import load_feature_extractor

        (tmp_path / "m.onnx").write_bytes(b"")
        with pytest.raises(RuntimeError, match="onnxruntime"):
            load_feature_extractor(tmp_path / "m.onnx")
    else:
        pytest.skip("onnxruntime is installed")
