"""The HTML pages in a real browser: headless Chromium opens them from disk with networking
disabled; the WebGL canvas must show the face, react to a drag, and log no errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from real_clients import Browser, browser_path

from facefit.io.html import build_pages, write_image_page, write_video_page
from facefit.io.records import face_record, pose_record
from facefit.io.schemas import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "astronaut.png"
BACKGROUND = np.array([41, 43, 48])  # the viewer's clear colour (0.16, 0.17, 0.19)

needs_browser = pytest.mark.skipif(
    browser_path() is None,
    reason="no Chromium browser installed (.ci/run installs Debian's chromium; "
           "apt-get install chromium)")


def _skin_fraction(rgb: np.ndarray) -> float:
    """Fraction of pixels that are skin-coloured (red above green above blue, not dark)."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    return float(((r > 80) & (r > g) & (g > b) & (r - b > 25)).mean())


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo photo reconstructed with every format and its pages built."""
    from facefit.io.export import export_reconstructions
    from facefit.io.image import load_image
    from facefit.reconstruct import Reconstructor

    try:
        rec = Reconstructor()
    except Exception as exc:  # noqa: BLE001 - model data or detector missing
        pytest.skip(f"default model or detector unavailable: {exc}")
    out = tmp_path_factory.mktemp("demo")
    image = load_image(DEMO)
    faces = rec.reconstruct(image)
    export_reconstructions(out, DEMO, image, faces, rec.model,
                           formats=("json", "glb", "overlay", "html"))
    assert (out / "astronaut.html").is_file()
    assert sorted(p.name for p in build_pages(out)) == ["astronaut.html", "index.html"]
    return out


@pytest.fixture(scope="module")
def browser():
    if browser_path() is None:
        pytest.skip("no Chromium browser installed")
    pytest.importorskip("websocket", reason="websocket-client (a dev extra) is not installed")
    b = Browser()
    yield b
    b.close()


def test_image_page_is_self_contained(demo_out: Path) -> None:
    page = (demo_out / "astronaut.html").read_text(encoding="utf-8")
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert page.count('id="glb-') == 1 and "<canvas" in page
    index = (demo_out / "index.html").read_text(encoding="utf-8")
    assert 'href="astronaut.html"' in index


@needs_browser
def test_image_page_renders_the_face_and_turns(demo_out: Path, browser: Browser) -> None:
    t0 = time.perf_counter()
    browser.open(demo_out / "astronaut.html")
    browser.wait_for("window.facefitFirstFrameMs", timeout=90)
    load_s = time.perf_counter() - t0
    before = browser.screenshot("#mesh")
    h, w = before.shape[:2]
    centre = before[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    assert _skin_fraction(centre) > 0.3, "no face-coloured pixels where the mesh is"
    corner = before[:10, :10].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(corner, BACKGROUND, atol=6)
    browser.drag("#mesh", 150, 0)
    time.sleep(0.5)
    after = browser.screenshot("#mesh")
    changed = np.abs(after.astype(int) - before.astype(int)).max(-1) > 30
    assert changed.mean() > 0.05, "the view did not change after a drag"
    # the overlay toggle shows and hides the overlay image
    assert browser.evaluate("getComputedStyle(document.getElementById('overlay')).display") \
        != "none"
    browser.evaluate("document.getElementById('show-overlay').click()")
    assert browser.evaluate("getComputedStyle(document.getElementById('overlay')).display") \
        == "none"
    for mode in ("shading", "wireframe"):
        browser.evaluate(f"document.querySelector('button[data-mode={mode}]').click()")
    time.sleep(0.3)
    assert not browser.errors, browser.errors
    assert not browser.requests, browser.requests
    print(f"image page {(demo_out / 'astronaut.html').stat().st_size / 1e6:.2f} MB, "
          f"first frame {load_s:.2f} s")


def _clip(tmp: Path, frames: int = 12) -> Path:
    """A synthetic clip output: JSON lines, animated GLB and a small overlay MP4."""
    import imageio.v2 as imageio

    from facefit.fit.camera import rotation_from_euler
    from facefit.io.animated_glb import AnimatedGlb
    from facefit.model import load_default_model

    try:
        model = load_default_model()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"default model unavailable: {exc}")
    glb = AnimatedGlb(model.mean, model.triangles, model.expression_basis, 2.0, (160, 120))
    lines = [{"schema_version": SCHEMA_VERSION,
              "model": {"name": model.name, "licence": model.licence}, "fps": 10.0,
              "width": 160, "height": 120, "shape_coeffs": [0.0] * 40, "identity": "clip"}]
    for i in range(frames):
        yaw = -30 + 60 * i / (frames - 1)
        rot = rotation_from_euler(yaw, 5.0, 0.0)
        w = np.zeros(model.expression_basis.shape[2])
        w[0] = 2 * np.sin(i)
        glb.add(i / 10, rot, 2.0, np.array([80.0, 60.0]), w)
        face = face_record([0, 0, 1, 1], 1.0, pose_record(rot, 2.0, [80.0, 60.0]),
                           np.zeros((68, 2)), w, 1.0, redetected=True,
                           raw_expression_coeffs=w.tolist())
        lines.append({"frame": i, "time_s": i / 10, "faces": [face]})
    lines.append({"frame": frames, "time_s": frames / 10, "faces": []})
    glb.vertices = model.mean
    glb.write(tmp / "clip.glb")
    (tmp / "clip.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with imageio.get_writer(tmp / "clip_overlay.mp4", fps=10, codec="libx264",
                            macro_block_size=8) as wr:
        for i in range(frames + 1):
            wr.append_data(np.full((120, 160, 3), 20 * i % 255, np.uint8))
    return tmp / "clip.jsonl"


@needs_browser
def test_video_page_plots_and_animates(tmp_path: Path, browser: Browser) -> None:
    page = write_video_page(_clip(tmp_path))
    browser.open(page)
    browser.wait_for("window.facefitFirstFrameMs", timeout=90)
    counts = browser.evaluate(
        "[...document.querySelectorAll('#plot-pose polyline')].map(p=>p.points.length)")
    assert counts == [12, 12, 12]  # yaw, pitch, roll: one point per frame with a face
    first = browser.screenshot("#mesh")
    assert _skin_fraction(first) > 0.02 or (np.abs(first.astype(int) - BACKGROUND).max(-1)
                                            > 30).mean() > 0.1
    x0 = browser.evaluate("+document.querySelector('#plot-pose .cursor').getAttribute('x1')")
    browser.evaluate("window.facefitSeek(1.1)")
    time.sleep(0.5)
    x1 = browser.evaluate("+document.querySelector('#plot-pose .cursor').getAttribute('x1')")
    assert x1 > x0 + 100
    last = browser.screenshot("#mesh")
    assert (np.abs(last.astype(int) - first.astype(int)).max(-1) > 30).mean() > 0.02
    assert not browser.errors, browser.errors
    assert not browser.requests, browser.requests


def test_image_page_rejects_a_bad_summary(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{\"not\": 1}")
    with pytest.raises(ValueError, match="x.json: not a facefit image summary"):
        write_image_page(bad)
    assert not (tmp_path / "x.html").exists()


def test_view_command(demo_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facefit.cli import main

    (demo_out / "astronaut.html").unlink()
    assert main(["view", str(demo_out)]) == 0
    assert (demo_out / "astronaut.html").is_file()
    assert str(demo_out / "index.html") in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["view", str(empty)]) == 1
    assert "no facefit outputs" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "missing: not a folder" in capsys.readouterr().err


def test_index_lists_failures(tmp_path: Path) -> None:
    from facefit.io.html import write_index

    (tmp_path / "a.json").write_text(json.dumps({"image": "a.jpg", "width": 4, "height": 4,
                                                 "faces": []}))
    (tmp_path / ".facefit-manifest.jsonl").write_text(
        json.dumps({"input": "b.jpg", "state": "failed", "error": "b.jpg: truncated or "
                    "corrupt image data"}) + "\n{torn")
    index = write_index(tmp_path).read_text(encoding="utf-8")
    assert "a.jpg: no face found" in index
    assert "<li>b.jpg: truncated or corrupt image data</li>" in index
    assert "failed (2)" in index


def test_eval_report_inlines_the_run_figures(tmp_path: Path) -> None:
    from PIL import Image

    from facefit.io.html import write_eval_report

    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "300w_ced.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "synthetic_examples.png")
    (tmp_path / "300w.json").write_text('{"nme": 0.031}')
    page = write_eval_report(tmp_path, "facefit eval 300w", "300w")
    assert page.name == "300w_report.html"
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 1 and "300w_ced.png" in text
    assert "synthetic_examples" not in text and "&quot;nme&quot;: 0.031" in text


def test_glb_mesh_reads_facefit_glbs(tmp_path: Path) -> None:
    from facefit.io.animated_glb import AnimatedGlb
    from facefit.io.export import write_glb
    from facefit.io.html import glb_mesh

    rng = np.random.default_rng(3)
    verts = rng.normal(size=(40, 3)).astype(np.float32)
    tri = rng.integers(0, 40, size=(25, 3))
    uv = rng.random((40, 2)).astype(np.float32)
    p, t = glb_mesh(write_glb(tmp_path / "a.glb", verts, tri, uv).read_bytes())
    np.testing.assert_array_equal(p, verts)
    np.testing.assert_array_equal(t, tri)
    anim = AnimatedGlb(verts, tri, np.zeros((40, 3, 2), np.float32), 1.0, (64, 64))
    p, t = glb_mesh(anim.write(tmp_path / "b.glb").read_bytes())
    np.testing.assert_array_equal(p, verts)
    np.testing.assert_array_equal(t, tri)
    with pytest.raises(ValueError, match="not a binary glTF"):
        glb_mesh(b"GIF89a" + bytes(40))


def test_rim_fade_ignores_uv_seams(tmp_path: Path) -> None:
    """The viewer's open-edge fade of a mesh split at a UV seam (vertices duplicated, as the
    ICT head's GLB is) equals that of the unsplit mesh: a seam is not an open edge."""
    import base64

    from facefit.io.export import write_glb
    from facefit.io.html import _rim_b64
    from facefit.render.rim import rim_weight

    # a 9 x 9 grid of 1 mm squares, open on its border
    g = np.stack(np.meshgrid(np.arange(9.0), np.arange(9.0)), -1).reshape(-1, 2)
    pts = np.c_[g, np.zeros(len(g))]
    q = (np.arange(8)[:, None] * 9 + np.arange(8)[None]).ravel()
    tri = np.concatenate([np.c_[q, q + 1, q + 10], np.c_[q, q + 10, q + 9]])
    # split along x = 4: triangles right of it use copies of the column's vertices
    col = np.flatnonzero(pts[:, 0] == 4)
    copy = np.arange(len(pts))
    copy[col] = len(pts) + np.arange(len(col))
    right = pts[tri].mean(1)[:, 0] > 4
    split_tri = np.where(right[:, None], copy[tri], tri)
    split_pts = np.vstack([pts, pts[col]])
    path = write_glb(tmp_path / "split.glb", split_pts, split_tri)
    got = np.frombuffer(base64.b64decode(_rim_b64(path.read_bytes())), np.uint8)
    want = np.round(rim_weight(pts, tri) * 255)
    np.testing.assert_array_equal(got[: len(pts)], want.astype(np.uint8))
    np.testing.assert_array_equal(got[len(pts):], got[col])
