"""Prediction files and the facefit predict step (with a stand-in reconstructor)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.detect.base import box_iou
from facefit.eval.predictions import (
    ANOTHER_FACE_IOU,
    another_face,
    load_predictions,
    predict_with_facefit,
    save_predictions,
    select_face,
)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_roundtrip_with_missing_and_nan(tmp_path: Path, suffix: str) -> None:
    a = np.arange(136, dtype=np.float64).reshape(68, 2)
    b = np.concatenate([a, np.ones((68, 1))], axis=1)
    b[3, 0] = np.nan
    preds = {"img 1": a, "file": b, "none": None, "allnan": np.full((68, 2), np.nan)}
    path = save_predictions(tmp_path / f"p{suffix}", preds)
    got = load_predictions(path)
    assert set(got) == set(preds)
    np.testing.assert_array_equal(got["img 1"], a)
    np.testing.assert_array_equal(got["file"], b)  # NaN kept, 3 columns kept
    assert got["none"] is None and got["allnan"] is None
    with pytest.raises(ValueError):
        save_predictions(tmp_path / "p.csv", preds)


def test_json_written_by_another_tool(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(
        '{"format": "facefit-landmarks-v1", "landmarks": {"a": [[1, 2], [3, null]], "b": null}}')
    got = load_predictions(tmp_path / "p.json")
    assert got["b"] is None and np.isnan(got["a"][1, 1]) and got["a"][0, 1] == 2


def test_box_iou_and_select_face() -> None:
    assert box_iou(np.array([0, 0, 2, 2]), np.array([1, 0, 3, 2])) == pytest.approx(2 / 6)
    many = box_iou(np.array([0, 0, 2, 2]), np.array([[1, 0, 3, 2], [5, 5, 6, 6], [0, 0, 2, 2],
                                                     [1, 1, 1, 1]]))
    np.testing.assert_allclose(many, [2 / 6, 0, 1, 0])  # disjoint and empty boxes: 0
    gt = np.array([[50.0, 50.0], [90.0, 100.0]])  # box [50, 50, 90, 100]
    boxes = [np.array([0, 0, 40, 40]), np.array([45, 45, 95, 105]), np.array([60, 60, 200, 200])]
    assert select_face(boxes, gt) == 1
    assert select_face(boxes, None) == 0
    far = [np.array([0, 0, 10, 10]), np.array([300, 300, 310, 310])]
    assert select_face(far, np.array([[250.0, 250.0], [260.0, 260.0]])) == 1  # nearest centre
    with pytest.raises(ValueError):
        select_face([], gt)


def test_another_face_is_a_scored_face_that_misses_the_annotated_one() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(100, 200, (5, 68, 2))  # boxes about [100, 100, 200, 200]
    pred = gt + rng.normal(0, 2, gt.shape)  # 0: the annotated face read well
    pred[1] = gt[1] + [300.0, 0.0]  # 1: a face beside it, no overlap
    pred[2] = np.nan  # 2: no face found: a miss already, not "another face"
    pred[3] = (gt[3] - gt[3].min(0)) * 0.5 + gt[3].max(0) - 10.0  # 3: overlaps a corner only
    pred[4] = gt[4] + [50.0, 0.0]  # 4: the annotated face read badly (IoU about 1/3)
    got = another_face(pred, gt)
    ious = [float(box_iou(np.r_[p.min(0), p.max(0)], np.r_[g.min(0), g.max(0)]))
            for p, g in zip(pred[[0, 1, 3, 4]], gt[[0, 1, 3, 4]], strict=True)]
    assert ious[0] > 0.9 and ious[1] == 0.0 and 0 < ious[2] < ANOTHER_FACE_IOU < ious[3] < 0.5
    np.testing.assert_array_equal(got, [False, True, False, True, False])
    np.testing.assert_array_equal(another_face(pred, gt, max_iou=0.5), [False, True, False,
                                                                         True, True])
    z = np.full((5, 68, 1), 7.0)  # (68, 3) points: the depth plays no part
    np.testing.assert_array_equal(another_face(np.concatenate([pred, z], 2),
                                               np.concatenate([gt, z], 2)), got)


@dataclass
class _Face:
    box: np.ndarray


@dataclass
class _Fit:
    landmarks_68_2d: np.ndarray
    landmarks_68_3d: np.ndarray
    landmarks_68_2d_contour: np.ndarray


@dataclass
class _Rec:
    face: _Face
    fit: _Fit


class _FakeReconstructor:
    """Two faces in 'two.png', none in 'none.png'."""

    def reconstruct(self, image_rgb: np.ndarray) -> list[_Rec]:
        n = int(image_rgb[0, 0, 0])
        recs = []
        for k in range(n):
            p2 = np.full((68, 2), 10.0 + 100.0 * k)
            p3 = np.concatenate([p2, np.full((68, 1), 5.0)], axis=1)
            recs.append(_Rec(_Face(np.array([100.0 * k, 100.0 * k, 100.0 * k + 30,
                                             100.0 * k + 30])), _Fit(p2, p3, p2 + 1.0)))
        return recs


def test_predict_with_facefit_picks_overlapping_face(tmp_path: Path) -> None:
    for name, n in (("two", 2), ("none", 0)):
        Image.new("RGB", (4, 4), (n, 0, 0)).save(tmp_path / f"{name}.png")
    paths = [tmp_path / "two.png", tmp_path / "none.png"]
    gt = {"two": np.array([[100.0, 100.0], [125.0, 125.0]])}  # overlaps the second face
    preds = predict_with_facefit(paths, _FakeReconstructor(), gt)
    assert preds["none"] is None
    assert preds["two"].shape == (68, 3)
    np.testing.assert_allclose(preds["two"][:, :2], 110.0)
    np.testing.assert_allclose(preds["two"][:, 2], -5.0)  # depth flipped to "towards viewer"
    preds = predict_with_facefit(paths, _FakeReconstructor(), None, convention="300w")
    np.testing.assert_allclose(preds["two"], 11.0)  # first face, silhouette jaw, (68, 2)
    with pytest.raises(ValueError):
        predict_with_facefit(paths, _FakeReconstructor(), convention="x")
