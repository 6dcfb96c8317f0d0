"""Landmark metrics (`facefit.metrics.landmarks`) and their benchmark protocols
(`facefit.eval.landmarks`) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.eval.landmarks import (
    evaluate_300w,
    evaluate_aflw2000,
    stack_predictions,
    yaw_bucket,
)
from facefit.metrics.landmarks import (
    auc_at,
    bbox_size,
    ced_curve,
    failure_rate,
    interocular_distance,
    mean_point_error,
    nme_bbox,
    nme_interocular,
)


def _square_face(w: float = 40.0, h: float = 10.0) -> np.ndarray:
    """68 points whose bounding box is w x h (sqrt(w h) = 20 by default)."""
    pts = np.zeros((68, 2))
    pts[:, 0] = np.linspace(0, w, 68)
    pts[:, 1] = np.linspace(0, h, 68)[::-1]
    return pts + 100.0


def test_nme_bbox_hand_computed() -> None:
    gt = _square_face()
    pred = gt + np.array([3.0, 4.0])  # every point off by 5 px
    assert bbox_size(gt)[0] == pytest.approx(20.0)
    assert nme_bbox(pred, gt)[0] == pytest.approx(5.0 / 20.0)


def test_nme_bbox_3d_centres_depth() -> None:
    gt = np.concatenate([_square_face(), np.linspace(-5, 5, 68)[:, None]], axis=1)
    pred = gt.copy()
    pred[:, 2] += 1000.0  # a depth offset is not an error
    assert nme_bbox(pred, gt)[0] == pytest.approx(0.0)
    pred[:, 0] += 2.0
    assert nme_bbox(pred, gt)[0] == pytest.approx(2.0 / 20.0)


def test_interocular_nme() -> None:
    gt = np.zeros((68, 2))
    gt[36] = [10.0, 50.0]
    gt[45] = [110.0, 50.0]
    assert interocular_distance(gt)[0] == pytest.approx(100.0)
    pred = gt.copy()
    pred[0] += [68.0, 0.0]  # one point off by 68 px -> mean 1 px
    assert nme_interocular(pred, gt)[0] == pytest.approx(0.01)


def test_missing_and_nan_predictions() -> None:
    gt = np.stack([_square_face()] * 3)
    pred = gt.copy()
    pred[0] += [3.0, 4.0]
    pred[1] = np.nan  # no face
    pred[2, :34] += [0.0, 2.0]
    pred[2, 0] = np.nan  # one NaN landmark
    e = mean_point_error(pred, gt)
    assert e[0] == pytest.approx(5.0)
    assert np.isnan(e[1]) and np.isnan(e[2])  # partial NaN counts as missing by default
    e = mean_point_error(pred, gt, nan_policy="omit")
    assert np.isnan(e[1])
    assert e[2] == pytest.approx(33 * 2.0 / 67)  # mean over the 67 finite points
    with pytest.raises(ValueError):
        mean_point_error(pred, gt, nan_policy="bogus")  # type: ignore[arg-type]


def test_stack_predictions_missing_kinds() -> None:
    p = stack_predictions({"a": np.ones((68, 3)), "b": None, "c": np.zeros((0, 2))},
                          ["a", "b", "c", "d"], dims=2)
    assert p.shape == (4, 68, 2)
    assert np.all(p[0] == 1) and np.isnan(p[1:]).all()
    z = stack_predictions({"a": np.ones((68, 2))}, ["a"], dims=3)
    assert np.isnan(z).all()  # no depth given
    with pytest.raises(ValueError):
        stack_predictions({"a": np.ones((5, 2))}, ["a"])


def test_yaw_bucket_boundaries() -> None:
    yaws = np.array([0.0, 29.999, 30.0, -30.0, 59.999, 60.0, -60.0, 89.0, 95.0, -120.0])
    assert yaw_bucket(yaws).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]


def test_aflw2000_hand_computed() -> None:
    gt2 = _square_face()
    gt = np.stack([np.concatenate([gt2, np.zeros((68, 1))], axis=1)] * 5)
    yaw = np.array([10.0, -20.0, 45.0, 70.0, -80.0])
    offsets = [1.0, 3.0, 2.0, 4.0, None]  # px along x; the last image has no prediction
    pred = np.full_like(gt, np.nan)
    for i, o in enumerate(offsets):
        if o is not None:
            pred[i] = gt[i]
            pred[i, :, 0] += o
    r = evaluate_aflw2000(pred, gt, yaw, stems=list("abcde"))
    # bucket means: [0,30): (1+3)/2/20 = 0.1; [30,60): 2/20 = 0.1; [60,inf): 4/20 = 0.2
    assert r.bucket_nme_2d == pytest.approx([0.1, 0.1, 0.2])
    assert r.balanced_2d == pytest.approx(0.4 / 3)
    assert r.mean_2d == pytest.approx((1 + 3 + 2 + 4) / 4 / 20)
    assert r.bucket_nme_3d == pytest.approx([0.1, 0.1, 0.2])
    assert r.bucket_counts == [2, 1, 2] and r.bucket_missing == [0, 0, 1]
    assert r.missing == ["e"]
    text = r.table()
    assert "13.333" in text and "1 image(s) without a prediction" in text
    d = r.to_dict()
    assert d["num_missing"] == 1 and d["per_image"]["e"]["nme_2d"] is None


def test_aflw2000_another_face_counted_as_a_miss_beside() -> None:
    """Image b's scored face lies 200 px away from the annotated one (another person): the
    strict columns score it (NME 200 / 20 = 10), the matched ones count it as a miss."""
    gt2 = _square_face()
    gt = np.stack([np.concatenate([gt2, np.zeros((68, 1))], axis=1)] * 5)
    yaw = np.array([10.0, -20.0, 45.0, 70.0, -80.0])
    pred = gt.copy()
    for i, o in enumerate([1.0, 200.0, 2.0, 4.0, 6.0]):  # px along x
        pred[i, :, 0] += o
    r = evaluate_aflw2000(pred, gt, yaw, stems=list("abcde"))
    assert r.bucket_nme_2d == pytest.approx([(0.05 + 10.0) / 2, 0.1, 0.25])
    assert r.another_face == ["b"]
    assert r.bucket_matched_2d == pytest.approx([0.05, 0.1, 0.25])
    assert r.balanced_matched_2d == pytest.approx(0.4 / 3)
    assert "1 image(s) scored on another person's face" in r.table()
    assert r.to_dict()["balanced_2d_another_face_miss"] == pytest.approx(0.4 / 3)
    clean = evaluate_aflw2000(gt, gt, yaw)
    assert clean.another_face == [] and "another person" not in clean.table()


def test_aflw2000_2d_only_predictions_give_no_3d() -> None:
    gt = np.stack([np.concatenate([_square_face(), np.zeros((68, 1))], axis=1)])
    r = evaluate_aflw2000(gt[..., :2], gt, np.array([0.0]))
    assert r.mean_2d == 0.0 and np.isnan(r.mean_3d)


def test_single_image() -> None:
    gt = _square_face(400.0, 100.0)[None]
    r = evaluate_300w(gt + [0.0, 1.0], gt)
    iod = interocular_distance(gt)[0]
    assert r.mean_nme == pytest.approx(1.0 / iod)
    assert r.median_nme == pytest.approx(1.0 / iod)
    assert r.failure == 0.0


def test_ced_auc_failure_hand_computed() -> None:
    e = np.array([0.0, 0.02, 0.04, 0.1, np.nan])
    # AUC@0.08 = mean(max(0, 0.08 - e)) / 0.08 = (0.08 + 0.06 + 0.04 + 0 + 0) / 5 / 0.08
    assert auc_at(e, 0.08) == pytest.approx(0.45)
    assert failure_rate(e, 0.08) == pytest.approx(2 / 5)
    t, frac = ced_curve(e, 0.08, num=5)  # thresholds 0, .02, .04, .06, .08
    assert frac.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.6, 0.6])
    # the trapezoid of a fine CED agrees with the exact AUC
    t, frac = ced_curve(e, 0.08, num=80001)
    assert np.trapezoid(frac, t) / 0.08 == pytest.approx(0.45, abs=1e-4)
    assert np.isnan(auc_at(np.array([])))


def test_evaluate_300w_counts_missing_as_failures(tmp_path) -> None:
    gt = np.zeros((2, 68, 2))
    gt[:, 36] = [0.0, 0.0]
    gt[:, 45] = [100.0, 0.0]
    pred = gt.copy()
    pred[0] += 2.0 / np.sqrt(2)  # 2 px error -> NME 0.02
    pred[1] = np.nan
    r = evaluate_300w(pred, gt, ["x", "y"])
    assert r.mean_nme == pytest.approx(0.02)
    assert r.missing == ["y"]
    assert r.failure == pytest.approx(0.5)
    assert r.auc == pytest.approx(0.5 * 0.06 / 0.08)
    r.plot_ced(str(tmp_path / "ced.png"))
    assert (tmp_path / "ced.png").stat().st_size > 1000
    assert "counted as failures" in r.table()


def test_aflw2000_failures_and_capped_nme_hand_computed() -> None:
    """NMEs 0.05, 0.15, 0.10, 0.20 and a miss (box side 20 px, offsets 1, 3, 2, 4 px):
    with threshold 0.12, failures per bucket [1, 0, 2] (0.15; 0.20 and the miss); capped
    NMEs [(0.05 + 0.12) / 2, 0.10, (0.12 + 0.12) / 2]."""
    gt2 = _square_face()
    gt = np.stack([np.concatenate([gt2, np.zeros((68, 1))], axis=1)] * 5)
    yaw = np.array([10.0, -20.0, 45.0, 70.0, -80.0])
    pred = np.full_like(gt, np.nan)
    for i, o in enumerate([1.0, 3.0, 2.0, 4.0]):
        pred[i] = gt[i]
        pred[i, :, 0] += o
    r = evaluate_aflw2000(pred, gt, yaw, failure_threshold=0.12)
    assert r.bucket_nme_2d == pytest.approx([0.1, 0.1, 0.2])  # predicted images only
    assert r.bucket_failures == [1, 0, 2]
    assert r.bucket_capped_2d == pytest.approx([0.085, 0.10, 0.12])
    assert r.balanced_capped_2d == pytest.approx((0.085 + 0.10 + 0.12) / 3)
    assert r.mean_capped_2d == pytest.approx((0.05 + 0.12 + 0.10 + 0.12 + 0.12) / 5)
    text = r.table()
    assert "NME>0.12" in text and "sqrt(w*h)" in text and "12 %" in text
    assert r.to_dict()["bucket_failures"] == [1, 0, 2]


def test_300w_table_failures_and_capped() -> None:
    gt = np.zeros((3, 68, 2))
    gt[:, 36], gt[:, 45] = [0.0, 0.0], [100.0, 0.0]
    pred = gt.copy()
    pred[0, :, 0] += 2.0  # NME 0.02
    pred[1, :, 0] += 10.0  # NME 0.10: a failure at 0.08
    pred[2] = np.nan  # a miss
    r = evaluate_300w(pred, gt)
    d = r.to_dict()
    assert d["num_failures"] == 2
    assert d["capped_mean_nme"] == pytest.approx((0.02 + 0.08 + 0.08) / 3)
    assert "outer-eye-corner distance" in r.table()
