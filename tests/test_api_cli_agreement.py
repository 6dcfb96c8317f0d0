"""The Python API and the command line agree: the same inputs, the same options and names,
the same refusals (issue 11, item 7)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facefit
from facefit import cli
from facefit.detect.base import FaceLandmarks
from facefit.io.image import load_image, to_rgb
from facefit.model.morphable_model import MorphableModel
from facefit.reconstruct import Reconstructor

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut.png"


def _tiny_model(landmarks: int = 68) -> MorphableModel:
    n = 70
    verts = np.c_[np.arange(n), np.arange(n) % 7, np.zeros(n)].astype(np.float32)
    tri = np.array([[i, i + 1, i + 2] for i in range(n - 2)], np.int32)
    lm = {"ibug68": np.arange(landmarks)} if landmarks else {}
    return MorphableModel("tiny", verts, np.zeros((n, 3, 1), np.float32),
                          np.zeros((n, 3, 1), np.float32), tri, verts[:, :2] / n, lm,
                          np.arange(n))


class _Recorder:
    """A detector that finds nothing and keeps the image it was given."""

    scheme = "ibug68"

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        self.images.append(image_rgb)
        return []


def _files(tmp_path: Path) -> dict[str, Path]:
    """Awkward images as files: 16-bit greyscale, 16-bit RGB, RGBA, palette."""
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    rgb16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    out = {"grey16": tmp_path / "g16.png", "rgb16": tmp_path / "c16.png",
           "rgba": tmp_path / "rgba.png", "palette": tmp_path / "p.png"}
    Image.fromarray(grey16).save(out["grey16"])
    import cv2

    cv2.imwrite(str(out["rgb16"]), rgb16[..., ::-1])  # OpenCV writes BGR
    Image.fromarray(rgba).save(out["rgba"])
    Image.fromarray(rgba[..., :3]).convert("P").save(out["palette"])
    return out | {"arrays": {"grey16": grey16, "rgb16": rgb16, "rgba": rgba}}  # type: ignore


def test_reconstruct_takes_paths_pil_images_and_arrays_as_the_cli_reads_them(tmp_path: Path
                                                                              ) -> None:
    files = _files(tmp_path)
    arrays = files.pop("arrays")
    rec = _Recorder()
    recon = Reconstructor(model=_tiny_model(), detector=rec, texture_size=0)
    for key, path in files.items():
        cli_view = load_image(path)  # what `facefit reconstruct` reads
        forms = [str(path), path] + ([arrays[key]] if key in arrays else [])
        if key != "rgb16":  # Pillow itself decodes 48-bit PNGs to 8 bits by dropping bits
            forms.append(Image.open(path))
        for form in forms:
            assert recon.reconstruct(form) == []
            np.testing.assert_array_equal(rec.images[-1], cli_view, err_msg=f"{key} {form!r}")
            assert rec.images[-1].shape == (9, 11, 3) and rec.images[-1].dtype == np.uint8
    # 16-bit samples are round(v / 257), RGBA is composited over white, grey is repeated
    g = arrays["grey16"]
    np.testing.assert_array_equal(to_rgb(g)[..., 1], np.floor(g / 257 + 0.5).astype(np.uint8))
    a = arrays["rgba"].astype(float)
    over_white = a[..., :3] * a[..., 3:] / 255 + 255 * (1 - a[..., 3:] / 255)
    assert np.abs(to_rgb(arrays["rgba"]).astype(float) - over_white).max() <= 0.5
    assert to_rgb(np.ones((4, 5), bool)).max() == 255
    np.testing.assert_array_equal(to_rgb(np.full((4, 5, 3), 0.5)), 128)  # float in [0, 1]
    with pytest.raises(ValueError, match="image array of shape .* use uint8"):
        recon.reconstruct(np.zeros((4, 5, 3), np.int64))
    with pytest.raises(ValueError, match=r"expected \(H, W\)"):
        recon.reconstruct(np.zeros((4, 5, 6), np.uint8))
    with pytest.raises(ValueError, match="missing.png: file not found"):
        recon.reconstruct(tmp_path / "missing.png")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_faces_below_one_is_refused_in_python_as_on_the_command_line(
        bad: object, capsys: pytest.CaptureFixture[str]) -> None:
    recon = Reconstructor(model=_tiny_model(), detector=_Recorder(), texture_size=0)
    with pytest.raises(ValueError, match="max_faces must be"):
        recon.reconstruct(np.zeros((4, 4, 3), np.uint8), max_faces=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_faces must be"):  # before loading anything
        facefit.reconstruct(np.zeros((4, 4, 3), np.uint8), max_faces=bad)  # type: ignore
    if isinstance(bad, int) and not isinstance(bad, bool):
        assert cli.main(["reconstruct", "x.png", "-o", "o", "--max-faces", str(bad)]) == 2
        assert "--max-faces" in capsys.readouterr().err


def test_reconstructor_refuses_what_the_cli_refuses() -> None:
    det = _Recorder()
    with pytest.raises(ValueError, match="focal_px needs camera='perspective'"):
        Reconstructor(model=_tiny_model(), detector=det, camera="scaled_orthographic",
                      focal_px=900.0)
    # the default camera (auto) takes a given focal length: perspective, as --focal-px alone
    assert Reconstructor(model=_tiny_model(), detector=det, focal_px=900.0).camera == "auto"
    # the refinement takes the fit's camera, perspective included
    assert Reconstructor(model=_tiny_model(), detector=det, camera="perspective",
                         refine="photometric").refine == "photometric"
    with pytest.raises(ValueError, match="camera must be one of"):
        Reconstructor(model=_tiny_model(), detector=det, camera="fisheye")
    with pytest.raises(ValueError, match="image_loss must be one of"):
        Reconstructor(model=_tiny_model(), detector=det, image_loss="l1")
    for count in (0, 5):  # a model without 68 landmark ids, before any image
        with pytest.raises(ValueError, match="needs 68 iBUG landmark vertex ids"):
            Reconstructor(model=_tiny_model(count), detector=det)
    assert det.images == []
    # one name per camera kind: the old spelling is accepted and means the same
    assert Reconstructor(model=_tiny_model(), detector=det, camera="orthographic"
                         ).camera == "scaled_orthographic"
    args = cli.build_parser().parse_args(["reconstruct", "a.png", "-o", "o", "--camera",
                                          "orthographic"])
    assert args.camera == "scaled_orthographic"


@pytest.mark.parametrize("extra,message", [
    (["--pooling", "confidence"], "--pooling needs --same-person"),
    (["--image-loss", "huber"], "--image-loss needs --refine photometric"),
    (["--photometric-iterations", "5"], "--photometric-iterations needs --refine photometric"),
    (["--refine", "none", "--image-loss", "l2", "--photometric-iterations", "5"],
     "--image-loss and --photometric-iterations need --refine photometric"),
    (["--camera", "scaled_orthographic", "--focal-px", "900"],
     "--focal-px needs --camera perspective"),
    (["--npz-fields", "verts_px"], "--npz-fields needs npz in --formats"),
])
def test_options_that_would_do_nothing_are_usage_errors(
        extra: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(tmp_path / "x.png"), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err
    assert not out.exists()


def test_missing_required_options_are_usage_errors(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reconstruct", "x.png"]) == 2  # -o missing
    assert cli.main(["video", "x.mp4"]) == 2
    assert cli.main(["model", "build", "-o", str(tmp_path / "m.npz")]) == 2  # --meshes missing
    assert cli.main(["model", "build", "--meshes", str(tmp_path), "-o",
                     str(tmp_path / "m.obj")]) == 2
    err = capsys.readouterr().err
    assert "required: -o/--output" in err and "build needs --meshes" in err


class _FakeReconstructor:
    def __init__(self, **kwargs: object) -> None:
        self.model = "fake"

    def reconstruct(self, image: object, max_faces: int = 8,
                    focal_px: float | None = None) -> list[object]:
        raise AssertionError("no image may be processed")


def test_an_output_folder_that_cannot_be_created_is_exit_5(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setattr(importlib.import_module("facefit.reconstruct"), "Reconstructor",
                        _FakeReconstructor)
    photo = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = cli.main(["reconstruct", str(photo), "-o", str(blocker / "out"), "-q", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OUTPUT == 5 != cli.EXIT_FAILED
    assert f"{blocker / 'out'}: cannot create the output folder" in err
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| 5 | OUT cannot be used" in readme  # the documented code
    assert "5    OUT cannot be used" in cli.EXIT_CODES_HELP


def test_model_list_names_work_in_model_info_and_convert(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from facefit.model import load_model
    from facefit.model.bfm_3ddfa import NAME, ModelDataMissing, load_default_model

    try:
        default = load_default_model()
    except ModelDataMissing as exc:
        pytest.skip(f"default model not installed: {exc}")
    assert cli.main(["model", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in lines if not ln.startswith("searched:")]
    names = [r[0] for r in rows]
    assert NAME in names and "ict" in names
    for row in rows:  # the name and the location (last column) both name the model
        for ref in (row[0], row[-1]):
            assert cli.main(["model", "info", ref]) == 0, ref
            assert capsys.readouterr().out.strip()
    assert cli.main(["model", "info", "no-such-model"]) == 4
    assert "no such model file or installed model name" in capsys.readouterr().err
    out = tmp_path / "default.npz"  # the default model can be exported
    assert cli.main(["model", "convert", NAME, str(out)]) == 0
    back = load_model(out)
    np.testing.assert_array_equal(back.mean, default.mean)
    np.testing.assert_array_equal(back.shape_basis, default.shape_basis)
    np.testing.assert_array_equal(back.landmark_ids["ibug68"], default.landmark_ids["ibug68"])


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_python_reconstruct_and_export_write_what_the_cli_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``facefit.reconstruct(..., camera=, focal_px=)`` + ``facefit.export`` and ``facefit
    reconstruct --camera perspective --focal-px`` give the same JSON (timings aside)."""
    try:
        faces = facefit.reconstruct(Image.open(EXAMPLE), camera="perspective", focal_px=1200.0,
                                    texture_size=0)
    except Exception as exc:  # noqa: BLE001
        if "install_data" in str(exc):
            pytest.skip(f"model or detector not installed: {exc}")
        raise
    assert len(faces) == 1 and faces[0].fit.camera.kind == "perspective"
    assert faces[0].fit.camera.focal_px == 1200.0
    api = facefit.export(faces, tmp_path / "api", EXAMPLE, formats=("json", "npz"))
    assert cli.main(["reconstruct", str(EXAMPLE), "-o", str(tmp_path / "cli"), "--camera",
                     "perspective", "--focal-px", "1200", "--formats", "json,npz", "-q",
                     "--jobs", "1"]) == 0
    a = json.loads(api.read_text())
    c = json.loads((tmp_path / "cli" / "astronaut.json").read_text())
    try:
        from facefit.io.schemas import validator

        validator("image").validate(a)  # a real summary (ARKit weights, landmark source)
    except ImportError:  # jsonschema is a dev extra
        pass
    for s in (a, c):
        for f in s["faces"]:
            del f["timings_ms"]
    assert a == c
    with np.load(tmp_path / "api" / "astronaut_face0.npz") as za, \
            np.load(tmp_path / "cli" / "astronaut_face0.npz") as zc:
        assert set(za.files) == set(zc.files)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zc[k], err_msg=k)
    with pytest.raises(ValueError, match="pass the model it was fitted with"):
        facefit.export(faces, tmp_path / "x", EXAMPLE, model=_tiny_model())


def test_readme_exit_code_table_matches_the_cli() -> None:
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme[readme.index("| exit code | meaning |"):]
    table = table[:table.index("\n\n")]
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)]
    in_help = [int(m) for m in re.findall(r"^  (\d+) ", cli.EXIT_CODES_HELP, re.M)]
    constants = sorted({cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_NO_INPUT,
                        cli.EXIT_UNAVAILABLE, cli.EXIT_OUTPUT, cli.EXIT_INTERRUPTED})
    assert documented == in_help == constants == [0, 1, 2, 3, 4, 5, 130]


def test_eval_synthetic_albedo_choices_are_the_renderers(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """The CLI spells the choices out (so that `--help` does not import the renderer); they
    must stay the ones `facefit.synthetic.scenes.base_albedo` takes, read from `--help`."""
    from facefit.synthetic.scenes import ALBEDOS

    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "synthetic", "--help"])
    listed = re.search(r"--albedo \{([^}]*)\}", capsys.readouterr().out)
    assert listed is not None
    assert tuple(listed.group(1).split(",")) == ALBEDOS
    assert parser.parse_args(["eval", "synthetic"]).albedo == ALBEDOS[0]
