"""Model-agnostic pipeline: a BFM-2009-layout model without UVs but with an albedo basis
reconstructs a photo end to end; UVs are made, the albedo is exported."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from _model_formats import make_model, write_bfm2009

from facefit import cli
from facefit.model import load_model

ROOT = Path(__file__).resolve().parents[2]


def small_bfm_like(folder: Path) -> Path:
    """A 20 x 20 grid model whose 68 landmarks are the grid vertices nearest to the default
    model's iBUG-68 points (so a real photo's landmarks fit it sensibly), in BFM 2009 layout."""
    from facefit.model import load_default_model

    base = make_model(seed=3, n=20, albedo=True)
    ref = load_default_model()
    lm = ref.mean[ref.landmark_ids["ibug68"]].astype(np.float64)
    lm_xy = lm[:, :2] - lm[:, :2].mean(0)
    grid = base.mean[:, :2] - base.mean[:, :2].mean(0)
    ids = np.argmin(((grid[None] - lm_xy[:, None]) ** 2).sum(-1), axis=1).astype(np.int64)
    model = dataclasses.replace(base, landmark_ids={"ibug68": ids})
    return write_bfm2009(folder, model)


@pytest.mark.skipif(importlib.util.find_spec("facefit.detect.mediapipe") is None,
                    reason="facefit.detect.mediapipe is not there")
def test_bfm2009_layout_model_reconstructs_astronaut_with_albedo_and_made_uvs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        path = small_bfm_like(tmp_path)
    except Exception as exc:  # the default model's data is not installed
        pytest.skip(f"default model unavailable: {exc}")
    model = load_model(path)
    assert "UVs generated" in model.source and model.albedo_basis is not None
    assert np.ptp(model.uv, axis=0).min() > 0.5  # made UVs spread over the square
    out = tmp_path / "out"
    code = cli.main(["reconstruct", str(ROOT / "examples" / "astronaut.png"), "-o", str(out),
                     "--model", str(path), "--formats", "all", "--texture-size", "64",
                     "--npz-fields", "all", "-q"])
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    for want in ("astronaut.json", "astronaut_face0.obj", "astronaut_face0.mtl",
                 "astronaut_face0.ply", "astronaut_face0.glb", "astronaut_face0.npz",
                 "astronaut_overlay.jpg"):
        assert want in names
    assert any(n.endswith(".png") and "overlay" not in n for n in names)  # UV texture
    obj = (out / "astronaut_face0.obj").read_text()
    assert obj.count("\nvt ") == model.num_vertices
    summary = json.loads((out / "astronaut.json").read_text())
    face = summary["faces"][0]
    assert np.isfinite(face["residual_px"])
    with np.load(out / "astronaut_face0.npz") as z:
        np.testing.assert_allclose(z["model_albedo_mean"], model.albedo_mean, atol=1e-6)
        assert int(z["model_albedo_components"]) == model.albedo_basis.shape[2]
        np.testing.assert_allclose(z["model_uv"], model.uv)
        assert z["vertices_mm"].shape == (model.num_vertices, 3)
