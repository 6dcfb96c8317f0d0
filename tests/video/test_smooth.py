"""One Euro filter and the synthetic jitter experiment."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.video.smooth import OneEuroFilter


def test_one_euro_smooths_noise_and_follows_a_step() -> None:
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    noisy = 5.0 + rng.normal(scale=1.0, size=200)
    out = np.array([f(np.array([x]), i / 30)[0] for i, x in enumerate(noisy)])
    assert out[50:].std() < 0.4 * noisy[50:].std()
    assert abs(out[50:].mean() - 5.0) < 0.3
    f.reset()
    assert f(np.array([3.0]), 0.0)[0] == 3.0  # first sample passes through
    fast = OneEuroFilter(min_cutoff=1.0, beta=10.0)
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    for i in range(10):
        a, b = fast(np.array([10.0 * (i > 0)]), i / 30), slow(np.array([10.0 * (i > 0)]), i / 30)
    assert a[0] > b[0]  # the speed term makes it catch up faster


def test_smoothing_lowers_jitter_without_raising_error() -> None:
    from facefit.model import load_default_model
    from facefit.video.evaluate import run_synthetic_video

    r = run_synthetic_video(load_default_model(), n_frames=80, seed=1, amplitude=0.3)
    assert r["smoothed_accel_px"] < 0.8 * r["raw_accel_px"]
    assert r["smoothed_error_px"] <= r["raw_error_px"]
    assert r["raw_error_px"] < r["input_error_px"]
    assert r["truth_accel_px"] == pytest.approx(r["truth_accel_px"])


def test_constant_velocity_kalman_follows_a_ramp_without_lag() -> None:
    from facefit.video.smooth import ConstantVelocityKalman, OneEuroFilter

    rng = np.random.default_rng(0)
    t = np.arange(200) / 25
    truth = 30.0 * t  # steady sweep
    noisy = truth + rng.normal(scale=0.5, size=len(t))
    kf, oe = ConstantVelocityKalman(1.0, 0.5), OneEuroFilter(1.0, 0.0)
    k = np.array([kf(np.array([x]), s)[0] for x, s in zip(noisy, t, strict=True)])
    o = np.array([oe(np.array([x]), s)[0] for x, s in zip(noisy, t, strict=True)])
    assert abs((k - truth)[100:].mean()) < 0.1  # no lag on a constant velocity
    assert (o - truth)[100:].mean() < -2.0  # the low-pass filter lags behind
    assert np.abs(k - truth)[100:].mean() < 0.5 * np.abs(noisy - truth)[100:].mean()


def test_smoothing_does_not_raise_error_on_a_sweeping_head() -> None:
    from facefit.model import load_default_model
    from facefit.video.evaluate import run_synthetic_video

    r = run_synthetic_video(load_default_model(), n_frames=80, seed=1, amplitude=1.0)
    assert r["smoothed_accel_px"] < 0.8 * r["raw_accel_px"]
    assert r["smoothed_error_px"] <= r["raw_error_px"]
