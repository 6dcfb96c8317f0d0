"""``facefit eval`` sub-commands through an own argparse parser, on tiny synthetic data.

The printed numbers are checked against independent recomputations from the files alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.cli import eval as commands
from facefit.eval.datasets import write_pts
from facefit.eval.predictions import load_predictions, save_predictions


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facefit")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _face68(rng: np.random.Generator, scale: float = 100.0) -> np.ndarray:
    pts = rng.uniform(100, 100 + scale, size=(68, 2))
    pts[36], pts[45] = [110.0, 130.0], [110.0 + 0.6 * scale, 130.0]
    return pts


def _aflw_folder(root: Path, n: int = 4) -> tuple[list[str], np.ndarray, np.ndarray]:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    root.mkdir()
    stems, gts, yaws = [], [], np.array([5.0, -40.0, 75.0, 20.0])[:n]
    for i in range(n):
        stem = f"image{i:05d}"
        gt = np.concatenate([_face68(rng), rng.normal(0, 20, (68, 1))], axis=1)
        pose = np.array([[0.0, np.radians(yaws[i]), 0.0, 0, 0, 0, 1]])
        savemat(root / f"{stem}.mat", {"pt3d_68": gt.T, "Pose_Para": pose})
        Image.new("RGB", (8, 8)).save(root / f"{stem}.jpg")
        stems.append(stem)
        gts.append(gt)
    return stems, np.stack(gts), yaws


def test_aflw2000_with_pred_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stems, gt, yaws = _aflw_folder(tmp_path / "data")
    rng = np.random.default_rng(1)
    preds = {s: g + rng.normal(0, 2, g.shape) for s, g in zip(stems, gt, strict=True)}
    preds[stems[3]] = None  # no face
    save_predictions(tmp_path / "p.json", preds)
    assert _run(["eval", "aflw2000", str(tmp_path / "data"), "--pred", str(tmp_path / "p.json"),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    # Independent recomputation.
    nme = {}
    for s, g in zip(stems[:3], gt[:3], strict=True):
        w, h = np.ptp(g[:, 0]), np.ptp(g[:, 1])
        nme[s] = np.mean(np.hypot(*(preds[s][:, :2] - g[:, :2]).T)) / np.sqrt(w * h)
    buckets = [nme[stems[0]], nme[stems[1]], nme[stems[2]]]  # yaw 5, -40, 75 (20: missing)
    balanced = 100 * np.mean(buckets)
    mean = 100 * np.mean(list(nme.values()))
    assert f"{balanced:6.3f}" in out and f"{mean:6.3f}" in out
    assert "1 image(s) without a prediction" in out
    res = json.loads((tmp_path / "out" / "aflw2000.json").read_text())
    assert res["missing"] == [stems[3]] and res["balanced_2d"] == pytest.approx(balanced / 100)
    from facefit.io.schemas import SCHEMA_VERSION

    assert res["schema_version"] == SCHEMA_VERSION  # every JSON facefit writes carries it
    # the per-yaw bars and the CED curve are PNGs, inlined in the run's HTML report
    from PIL import Image

    for name in ("aflw2000_yaw.png", "aflw2000_ced.png"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.format == "PNG" and im.width > 300
    report = (tmp_path / "out" / "aflw2000_report.html").read_text()
    assert report.count("data:image/png;base64,") == 2


def test_aflw2000_runs_predict_step_and_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    stems, gt, _ = _aflw_folder(tmp_path / "data", n=3)

    def fake_predict(paths, gt_map, convention, args):  # noqa: ANN001
        assert convention == "aflw2000" and [p.stem for p in paths] == stems
        assert args.landmarks == "auto" and args.model is None
        return {s: gt_map[s] + 1.0 for s in stems}

    monkeypatch.setattr(commands, "_predict", fake_predict)
    assert _run(["eval", "aflw2000", str(tmp_path / "data"), "--limit", "3",
                 "--out", str(tmp_path / "out")]) == 0
    saved = load_predictions(tmp_path / "out" / "aflw2000_predictions.npz")
    np.testing.assert_allclose(saved[stems[0]], gt[0] + 1.0)
    assert "mean" in capsys.readouterr().out


def test_300w_with_pred_writes_ced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    data = tmp_path / "data"
    data.mkdir()
    preds = {}
    errors = []
    for i in range(5):
        gt = _face68(rng)
        write_pts(data / f"f{i}.pts", gt)  # 1-based on disk, 0-based when read
        Image.new("RGB", (8, 8)).save(data / f"f{i}.jpg")
        preds[f"f{i}"] = gt + rng.normal(0, 3, gt.shape)
        errors.append(np.mean(np.hypot(*(preds[f"f{i}"] - gt).T)) / 60.0)
    preds["f4"] = None
    save_predictions(tmp_path / "p.npz", preds)
    assert _run(["eval", "300w", str(data), "--pred", str(tmp_path / "p.npz"),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    e = np.array(errors[:4])
    auc = np.mean(np.clip(0.08 - np.append(e, np.inf), 0, None)) / 0.08
    assert f"{100 * e.mean():7.3f}" in out and f"{auc:10.4f}" in out
    assert (tmp_path / "out" / "300w_ced.png").stat().st_size > 1000


def test_fid_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.warns(DeprecationWarning):
        torch.jit.script(net).save(str(tmp_path / "net.ts"))
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(4):
            arr = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    assert _run(["eval", "fid", str(tmp_path / "a"), str(tmp_path / "a"), "--features",
                 str(tmp_path / "net.ts"), "--input-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and float(out.split("FID")[1].split()[0]) == pytest.approx(0, abs=1e-6)
    assert _run(["eval", "fid", str(tmp_path / "a"), str(tmp_path / "b"), "--features",
                 str(tmp_path / "sd.pt"), "--input-size", "8"]) == 1  # state dict, no module
    assert "module" in capsys.readouterr().err


def test_scan_command_with_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    import trimesh

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
    from test_scan import _setup

    recon, tris, recon_lm, scan, scan_lm, _ = _setup()
    trimesh.Trimesh(recon, tris, process=False).export(tmp_path / "recon.obj")
    trimesh.PointCloud(scan).export(tmp_path / "scan.ply")
    np.save(tmp_path / "recon_lm.npy", recon_lm)
    np.savetxt(tmp_path / "scan_lm.txt", scan_lm)
    assert _run(["eval", "scan", "--mesh", str(tmp_path / "recon.obj"), "--mesh-landmarks",
                 str(tmp_path / "recon_lm.npy"), "--scan", str(tmp_path / "scan.ply"),
                 "--scan-landmarks", str(tmp_path / "scan_lm.txt"),
                 "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "scan_error.json").read_text())
    assert res["median_mm"] < 0.1
    assert f"{res['median_mm']:11.3f}" in capsys.readouterr().out
    assert (tmp_path / "out" / "scan_error.png").exists()


def test_eval_without_benchmark_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["eval"]) == 2


def test_aflw2000_with_model_and_landmarks_options(tmp_path, capsys) -> None:
    """``--model`` and ``--landmarks`` reach the fit (an unknown model is exit 4, one line)."""
    from facefit.cli import main

    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "aflw2000-3d-dev"
    if not root.is_dir():
        pytest.skip("../shared/data/aflw2000-3d-dev not present")
    assert main(["eval", "aflw2000", str(root), "--limit", "1", "--model", "nope",
                 "--out", str(tmp_path)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert main(["eval", "aflw2000", str(root), "--limit", "2", "--model", "ict",
                 "--landmarks", "mediapipe", "--quiet", "--out", str(tmp_path)]) == 0
    preds = np.load(tmp_path / "aflw2000_predictions.npz")
    assert len(preds.files) >= 1
