"""scripts/make_profiled_set.py: deterministic, resumable, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from repo_scripts import load_script

from facefit.fit.camera import rotation_from_euler
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.model.bfm_3ddfa import load_default_model
from facefit.regress.dataset import read_shard


def _script():
    return load_script("scripts/make_profiled_set.py")


def _face(folder: Path) -> None:
    model = load_default_model()
    cam = ScaledOrthographicCamera(rotation_from_euler(5.0, 0.0, 0.0), 0.5, np.array([128., 128.]))
    pts = cam.image_points(model.vertices(ids=model.landmark_ids["ibug68"]))[:, :2]
    yy, xx = np.mgrid[0:256, 0:256]
    Image.fromarray(np.stack([xx, yy, xx], -1).astype(np.uint8)).save(folder / "f_1.jpg")
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts)
    (folder / "f_1.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")


def test_deterministic_and_resumable(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _face(data)
    mod = _script()
    args = ["--data", str(data), "--views", "2", "--limit", "1"]
    assert mod.main(args + ["--out", str(tmp_path / "a"), "--sheet", str(tmp_path / "s.png")]) == 0
    assert mod.main(args + ["--out", str(tmp_path / "b")]) == 0
    a, b = read_shard(tmp_path / "a" / "f_1.npz"), read_shard(tmp_path / "b" / "f_1.npz")
    assert a["images"].shape == (2, 120, 120, 3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert (tmp_path / "s.png").exists()
    capsys.readouterr()
    assert mod.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert "1 done already, 0 to make" in capsys.readouterr().out


def test_missing_folder_exits_2(tmp_path, capsys):
    assert _script().main(["--data", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_training_run_writes_and_resumes(tmp_path):
    from facefit.regress.train import TrainConfig, load_checkpoint, run

    data = tmp_path / "data"
    data.mkdir()
    _face(data)
    assert _script().main(["--data", str(data), "--views", "4", "--out", str(tmp_path / "p")]) == 0
    cfg = TrainConfig(epochs=2, batch=2, threads=1)
    model = load_default_model()
    hist = run(model, tmp_path / "p", tmp_path / "r", config=cfg, log=lambda s: None,
               stop_after=1)
    assert len(hist) == 1 and (tmp_path / "r" / "losses.png").exists()
    assert int(load_checkpoint(tmp_path / "r" / "last.pt")["epoch"]) == 1
    hist = run(model, tmp_path / "p", tmp_path / "r", config=cfg, log=lambda s: None)
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(np.isfinite(v) for h in hist for v in h["train"].values())
