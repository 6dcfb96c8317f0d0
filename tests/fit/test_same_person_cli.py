"""``facefit reconstruct --same-person`` on the example photo and a mirrored copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
@pytest.mark.parametrize("pooling", ["joint", "confidence"])
def test_same_person_writes_identity(tmp_path: Path, pooling: str) -> None:
    img = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(img).save(a)
    Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(b)
    out = tmp_path / "out"
    rc = main(["reconstruct", "--same-person", "--pooling", pooling, str(a), str(b), "-o",
               str(out), "--texture-size", "32", "--formats", "json", "-q"])
    assert rc == 0
    summary = json.loads((out / "identity.json").read_text())
    assert summary["method"] == pooling and len(summary["images"]) == 2
    a_face = json.loads((out / "a.json").read_text())["faces"][0]
    assert set(summary["images"][0]["pose"]) == set(a_face["pose"])  # one pose shape
    assert {p.name for p in out.iterdir()} >= {"identity.obj", "identity.glb", "a.json",
                                               "b.json", "identity.png"}
    sa = json.loads((out / "a.json").read_text())["faces"][0]["shape_coeffs"]
    np.testing.assert_allclose(sa, summary["shape_coeffs"], atol=1e-4)


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_same_person_photometric_refinement(tmp_path: Path) -> None:
    img = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(img).save(a)
    Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(b)
    out = tmp_path / "out"
    rc = main(["reconstruct", "--same-person", "--refine", "photometric",
               "--photometric-iterations", "4", str(a), str(b), "-o", str(out),
               "--texture-size", "32", "--formats", "json", "-q"])
    assert rc == 0
    summary = json.loads((out / "identity.json").read_text())
    fa = json.loads((out / "a.json").read_text())["faces"][0]
    fb = json.loads((out / "b.json").read_text())["faces"][0]
    np.testing.assert_allclose(fa["shape_coeffs"], summary["shape_coeffs"], atol=1e-4)
    np.testing.assert_allclose(fb["shape_coeffs"], summary["shape_coeffs"], atol=1e-4)
    assert fa["photometric"]["iterations"] == 4
    assert fa["photometric"]["photometric_error"] < fa["photometric"]["initial_photometric_error"]
