"""Dataset and landmark-file readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.eval.datasets import (
    load_300w,
    load_aflw2000,
    read_landmarks,
    read_ljson,
    read_pts,
    write_pts,
)

PTS = np.arange(136, dtype=np.float64).reshape(68, 2) + 0.5


def test_pts_with_ibug_header(tmp_path: Path) -> None:
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in PTS)
    p = tmp_path / "a.pts"
    p.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    np.testing.assert_allclose(read_pts(p), PTS - 1.0)
    np.testing.assert_allclose(read_pts(p, one_based=False), PTS)


def test_pts_bare_lines(tmp_path: Path) -> None:
    p = tmp_path / "b.pts"
    p.write_text("\n".join(f"{x} {y}" for x, y in PTS) + "\n\n")
    np.testing.assert_allclose(read_pts(p), PTS - 1.0)


def test_pts_roundtrip_and_bad_count(tmp_path: Path) -> None:
    write_pts(tmp_path / "c.pts", PTS)
    np.testing.assert_allclose(read_pts(tmp_path / "c.pts"), PTS)
    (tmp_path / "d.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(ValueError, match="n_points"):
        read_pts(tmp_path / "d.pts")


def test_ljson_versions(tmp_path: Path) -> None:
    yx = [[2.0, 1.0], [4.0, 3.0], [None, None]]
    v2 = tmp_path / "v2.ljson"
    v2.write_text(json.dumps({"version": 2, "landmarks": {"points": yx}, "labels": []}))
    got = read_ljson(v2)
    np.testing.assert_allclose(got[:2], [[1.0, 2.0], [3.0, 4.0]])
    assert np.isnan(got[2]).all()
    v3 = tmp_path / "v3.ljson"
    v3.write_text(json.dumps({"version": 3, "groups": {"g": {"landmarks": {
        "points": [[1.0, 2.0, 3.0]] * 7, "connectivity": []}}}}))
    assert read_landmarks(v3).shape == (7, 3)
    v1 = tmp_path / "v1.ljson"
    v1.write_text(json.dumps({"groups": [{"label": "all", "landmarks": [
        {"point": [2.0, 1.0]}, {"point": [4.0, 3.0]}]}]}))
    np.testing.assert_allclose(read_ljson(v1), [[1.0, 2.0], [3.0, 4.0]])


def test_npy_txt_pp(tmp_path: Path) -> None:
    pts = np.random.default_rng(0).normal(size=(7, 3))
    np.save(tmp_path / "a.npy", pts.T.copy())  # (3, 7) is transposed back
    np.testing.assert_allclose(read_landmarks(tmp_path / "a.npy"), pts)
    np.savetxt(tmp_path / "a.txt", pts, delimiter=",")
    np.testing.assert_allclose(read_landmarks(tmp_path / "a.txt"), pts)
    pp = "".join(f'<point x="{x}" y="{y}" z="{z}" name="{i}"/>' for i, (x, y, z) in enumerate(pts))
    (tmp_path / "a.pp").write_text(f"<!DOCTYPE PickedPoints><PickedPoints>{pp}</PickedPoints>")
    np.testing.assert_allclose(read_landmarks(tmp_path / "a.pp"), pts)
    with pytest.raises(ValueError):
        read_landmarks(tmp_path / "a.xyzw")


def test_load_300w(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "img1.jpg")
    write_pts(tmp_path / "img1.pts", PTS)
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "img2.png")
    (tmp_path / "sub" / "img2.pts").write_text("\n".join(f"{x} {y}" for x, y in PTS + 1))
    samples = load_300w(tmp_path)
    assert [s.stem for s in samples] == ["img1", "img2"]
    np.testing.assert_allclose(samples[1].landmarks, PTS)
    assert samples[1].image_path.suffix == ".png"


def test_load_aflw2000(tmp_path: Path) -> None:
    from scipy.io import savemat

    pts = np.random.default_rng(1).normal(size=(3, 68))
    pose = np.array([[0.1, np.radians(45.0), -0.2, 1, 2, 3, 0.001]])
    savemat(tmp_path / "image00001.mat", {"pt3d_68": pts, "Pose_Para": pose})
    Image.new("RGB", (8, 8)).save(tmp_path / "image00001.jpg")
    (s,) = load_aflw2000(tmp_path)
    assert s.stem == "image00001" and s.yaw_deg == pytest.approx(45.0)
    assert s.pitch_deg == pytest.approx(np.degrees(0.1))
    np.testing.assert_allclose(s.landmarks_2d, pts[:2].T)
    with pytest.raises(FileNotFoundError):
        load_aflw2000(tmp_path / "sub")
