"""Metrics for generative models of faces: FID, IS, KID and path length.

* FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017. ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
* IS: Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016.
  ``exp(E_x KL(p(y|x) || p(y)))`` averaged over splits.
* KID: Bińkowski et al., "Demystifying MMD GANs", ICLR 2018. Unbiased MMD^2 with the
  kernel ``k(x, y) = (x.y / d + 1)^3`` averaged over random subsets.
* Path length: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
  CVPR 2020: ``E_{w, y} |J_w^T y|`` with ``y ~ N(0, I) / sqrt(pixels)`` and
  ``J_w^T y = grad_w (g(w) . y)``; the regulariser is ``E (|J_w^T y| - a)^2`` with ``a`` an
  exponential moving average of the lengths. The perceptual path length of Karras et al.,
  "A Style-Based Generator Architecture for GANs", CVPR 2019, is `perceptual_path_length`
  with a pluggable image distance (LPIPS is not shipped).

The feature-based metrics take features as arrays (see `facefit.eval.generative` for
extracting them with a user-supplied network); torch is imported only by the path-length
functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import gammaln, xlogy


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 (N >= 2)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str = "eigh",
                       eps: float = 1e-6) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD S1, S2 (D, D).

    ``"eigh"`` (default): the eigenvalues of the symmetric PSD matrix
    ``S1^(1/2) S2 S1^(1/2)`` (similar to S1 S2) are clipped at 0 and their roots summed;
    stable for singular covariances. ``"sqrtm"``: `scipy.linalg.sqrtm` of S1 S2, retried with
    ``eps * I`` added to both covariances when the result is not finite, imaginary parts
    dropped.
    """
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if method == "eigh":
        r = _sym_sqrt(s1)
        m = r @ s2 @ r
        w = np.linalg.eigvalsh((m + m.T) / 2)
        return float(np.sqrt(np.clip(w, 0.0, None)).sum())
    if method == "sqrtm":
        import warnings

        from scipy.linalg import LinAlgWarning, sqrtm

        with warnings.catch_warnings():
            warnings.simplefilter("error", LinAlgWarning)
            try:
                covmean = sqrtm(s1 @ s2)
                ok = bool(np.isfinite(covmean).all())
            except (LinAlgWarning, np.linalg.LinAlgError, ValueError):
                ok = False
        if not ok:  # singular product: regularise both covariances
            offset = np.eye(s1.shape[0]) * eps
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LinAlgWarning)
                covmean = sqrtm((s1 + offset) @ (s2 + offset))
        return float(np.real(np.trace(covmean)))
    raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "eigh") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (means (D,), covs (D, D))."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: {mu1.shape} {s1.shape} vs {mu2.shape} {s2.shape}")
    diff = mu1 - mu2
    d = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2, method)
    return float(max(d, 0.0))


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray,
                      method: str = "eigh") -> float:
    """FID between two (N, D) and (M, D) feature sets (N, M >= 2)."""
    mu1, s1 = feature_statistics(features_a)
    mu2, s2 = feature_statistics(features_b)
    return frechet_distance(mu1, s1, mu2, s2, method)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score of (N, C) class probabilities p(y|x) (rows sum to 1).

    The images are cut into ``splits`` contiguous parts (`numpy.array_split`); returns the
    mean and standard deviation of ``exp(mean_x KL(p(y|x) || p(y)))`` over the parts.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be (N, C) with N >= 1, got {p.shape}")
    if (p < -1e-9).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be non-negative rows summing to 1 (apply `softmax` first)")
    splits = max(1, min(int(splits), p.shape[0]))
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, py)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """``(gamma x.y + coef0)^degree`` for (N, D) and (M, D) inputs; gamma defaults to 1/D."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray,
                  kernel: Callable[[np.ndarray, np.ndarray], np.ndarray] = polynomial_kernel
                  ) -> float:
    """Unbiased MMD^2 estimate between samples (m, D) and (n, D), m, n >= 2."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples per set")
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int | None = 0) -> tuple[float, float]:
    """KID: mean and std of the unbiased polynomial-kernel MMD^2 over random subsets.

    Each subset draws ``min(subset_size, N, M)`` rows of each set without replacement.
    Can be slightly negative (it is unbiased).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {a.shape} and {b.shape}")
    size = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)],
                          b[rng.choice(b.shape[0], size, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(vals)), float(np.std(vals))


# ----------------------------------------------------------------------------- path length


def _num_pixels(shape: tuple[int, ...]) -> int:
    """H*W for (N, C, H, W) images, otherwise the element count of one output."""
    if len(shape) == 4:
        return int(shape[2] * shape[3])
    return int(np.prod(shape[1:]))


def path_lengths(generator: Callable[[Any], Any], w: Any, create_graph: bool = False,
                 generator_noise: Any = None) -> Any:
    """``|J_w^T y|`` per sample, with ``J_w^T y = grad_w (g(w) . y)``.

    Args:
        generator: torch callable mapping latents (B, ...) to images (B, C, H, W) (or any
            (B, ...) output).
        w: (B, ...) latents (a torch tensor; gradients are taken with respect to it).
        create_graph: keep the graph (for training with the regulariser).
        generator_noise: fixed ``y`` (same shape as the output); default
            ``randn / sqrt(H * W)``.

    Returns:
        (B,) torch tensor of path lengths.
    """
    import torch

    w = w.detach().requires_grad_(True)
    img = generator(w)
    y = generator_noise
    if y is None:
        y = torch.randn_like(img) / np.sqrt(_num_pixels(tuple(img.shape)))
    (grad,) = torch.autograd.grad((img * y).sum(), w, create_graph=create_graph)
    return grad.flatten(1).norm(dim=1)


class PathLengthRegularizer:
    """StyleGAN2 path-length regulariser ``E (|J_w^T y| - a)^2``; ``a`` is an exponential
    moving average of the path lengths (``a <- a + decay (mean - a)``, starting at 0).

    Call it during training: returns the differentiable penalty (scalar tensor); the state
    ``mean`` (float) is updated each call.
    """

    def __init__(self, decay: float = 0.01) -> None:
        self.decay = decay
        self.mean = 0.0

    def __call__(self, generator: Callable[[Any], Any], w: Any) -> Any:
        lengths = path_lengths(generator, w, create_graph=True)
        self.mean = self.mean + self.decay * (float(lengths.detach().mean()) - self.mean)
        return ((lengths - self.mean) ** 2).mean()


def path_length(generator: Callable[[Any], Any], sample_w: Callable[[int], Any],
                num_samples: int = 1000, batch_size: int = 32) -> tuple[float, float]:
    """Mean and std of ``|J_w^T y|`` over ``num_samples`` latents from ``sample_w(batch)``."""
    vals = []
    done = 0
    while done < num_samples:
        b = min(batch_size, num_samples - done)
        vals.append(path_lengths(generator, sample_w(b)).detach().cpu().numpy())
        done += b
    v = np.concatenate(vals)
    return float(v.mean()), float(v.std())


def perceptual_path_length(generator: Callable[[Any], Any], sample_w: Callable[[int], Any],
                           distance: Callable[[Any, Any], Any] | None = None,
                           num_samples: int = 1000, batch_size: int = 32,
                           epsilon: float = 1e-4, seed: int = 0) -> float:
    """PPL in W (Karras et al. 2019): ``E d(g(lerp(w1, w2, t)), g(lerp(w1, w2, t + eps))) / eps^2``
    with ``t ~ U(0, 1)``.

    ``distance`` maps two image batches to (B,) distances; LPIPS is the paper's choice (not
    shipped). The default is the squared L2 distance of the outputs (not perceptual).
    """
    import torch

    if distance is None:
        def distance(a: Any, b: Any) -> Any:
            return ((a - b) ** 2).flatten(1).sum(dim=1)

    gen = torch.Generator().manual_seed(seed)
    vals = []
    done = 0
    with torch.no_grad():
        while done < num_samples:
            b = min(batch_size, num_samples - done)
            w1, w2 = sample_w(b), sample_w(b)
            t = torch.rand((b,) + (1,) * (w1.dim() - 1), generator=gen, dtype=w1.dtype)
            wa = w1 + (w2 - w1) * t
            wb = w1 + (w2 - w1) * (t + epsilon)
            vals.append((distance(generator(wa), generator(wb)) / epsilon**2).cpu().numpy())
            done += b
    return float(np.concatenate(vals).mean())


def chi_mean(k: int, sigma: float = 1.0) -> float:
    """``E|z|`` for z ~ N(0, sigma^2 I_k): ``sigma sqrt(2) Gamma((k+1)/2) / Gamma(k/2)``."""
    return float(sigma * np.sqrt(2.0) * np.exp(gammaln((k + 1) / 2) - gammaln(k / 2)))
