"""Decompression-bomb images and truncated or oversized videos: one-line errors, fast.

The 300-megapixel bomb (a valid 0.9 MB PNG of one colour) is loaded in a fresh process with
a 2 GB address-space limit, so that its time and peak memory are its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_image import png_of_one_colour  # noqa: E402

from facefit.cli import main  # noqa: E402
from facefit.video.stream import VideoError, VideoWriter, iter_frames, open_video  # noqa: E402

BOMB_SECONDS = 2.0
BOMB_MB = 500.0


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    size = png_of_one_colour(path, 20000, 15000, (200, 150, 120))
    assert size < 1_000_000
    return path


def test_300_megapixel_bomb_refused_fast_and_small(bomb, monkeypatch):
    monkeypatch.delenv("FACEFIT_MAX_PIXELS", raising=False)
    # VmHWM (peak RSS of this process image; ru_maxrss would carry the forking parent's)
    code = (
        "import json, sys, time\n"
        "from facefit.io.image import ImageError, load_image\n"
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) / 1024\n"
        "before = hwm()\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        "    load_image(sys.argv[1]); msg = 'loaded'\n"
        "except ImageError as exc:\n"
        "    msg = str(exc)\n"
        "dt = time.perf_counter() - t0\n"
        "peak = hwm()\n"
        "print(json.dumps({'seconds': dt, 'peak_mb': peak, 'grew_mb': peak - before,\n"
        "                  'message': msg}))\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True,
                          text=True, timeout=60, preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    print(f"\n300 MP bomb ({bomb.stat().st_size} bytes): {r['seconds'] * 1e3:.1f} ms, "
          f"process peak RSS {r['peak_mb']:.0f} MB (+{r['grew_mb']:.1f} MB while loading): "
          f"{r['message']}")
    assert r["message"] == (f"{bomb}: image too large (20000×15000 = 300 MP; the limit is "
                            "100 MP: raise it with --max-pixels)")
    assert r["seconds"] < BOMB_SECONDS and r["peak_mb"] < BOMB_MB


def test_cli_bomb_is_a_failed_input(bomb, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FACEFIT_MAX_PIXELS", raising=False)
    assert main(["reconstruct", str(bomb), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"facefit: error: {bomb}: image too large (20000×15000 = 300 MP; the limit "
                   "is 100 MP: raise it with --max-pixels)"]
    assert main(["reconstruct", str(bomb), "-o", str(tmp_path / "o"), "--max-pixels", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_cli_max_pixels_applies_and_is_restored(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.delenv("FACEFIT_MAX_PIXELS", raising=False)
    photo = tmp_path / "photo.png"
    png_of_one_colour(photo, 300, 200, (120, 100, 90))
    assert main(["reconstruct", str(photo), "-o", str(tmp_path / "out"), "-q",
                 "--max-pixels", "5e4"]) == 1
    assert "image too large (300×200 = 60000 pixels; the limit is 50000 pixels" in (
        capsys.readouterr().err)
    assert "FACEFIT_MAX_PIXELS" not in os.environ  # only for the command's duration


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 40-frame clip as MP4 with the index first (what a truncated download keeps
    readable) and as Matroska, whole and cut to 80 % and 50 %."""
    import imageio_ffmpeg

    folder = tmp_path_factory.mktemp("clips")
    raw = folder / "raw.mp4"
    w = VideoWriter(raw, 25.0)
    rng = np.random.default_rng(0)
    for _ in range(40):
        w.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    w.close()
    out = {}
    for ext, extra in ((".mp4", ["-movflags", "+faststart"]), (".mkv", [])):
        whole = folder / f"whole{ext}"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i",
                        str(raw), "-c:v", "libx264", *extra, str(whole)], check=True)
        out[f"whole{ext}"] = whole
        data = whole.read_bytes()
        for frac in (0.8, 0.5):
            cut = folder / f"cut{int(frac * 100)}{ext}"
            cut.write_bytes(data[: int(len(data) * frac)])
            out[cut.name] = cut
    return out


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_truncated_video_raises_at_the_end(clips, ext):
    reader, info = open_video(clips[f"whole{ext}"])
    assert info.frames == 40 and sum(1 for _ in iter_frames(reader, info)) == 40
    for name in (f"cut80{ext}", f"cut50{ext}"):
        reader, info = open_video(clips[name])
        frames = []
        with pytest.raises(VideoError) as exc:
            for f in iter_frames(reader):
                frames.append(f)
        text = str(exc.value)
        assert "\n" not in text
        assert text == (f"{clips[name]}: truncated or corrupt video: read {len(frames)} of 40 "
                        "frames")
        assert 0 < len(frames) < 38


def test_stopping_early_is_not_an_error(clips):
    reader, _ = open_video(clips["cut50.mp4"])
    frames = iter_frames(reader)
    assert next(frames).shape == (48, 64, 3)
    frames.close()  # the consumer stops: no VideoError


def test_video_frame_size_limit(clips, monkeypatch):
    with pytest.raises(VideoError) as exc:
        open_video(clips["whole.mp4"], max_pixels=3000)
    assert str(exc.value) == (f"{clips['whole.mp4']}: frames too large (64×48 = 3072 pixels; "
                              "the limit is 3000 pixels: raise it with --max-pixels)")
    monkeypatch.setenv("FACEFIT_MAX_PIXELS", "3000")
    with pytest.raises(VideoError, match="frames too large"):
        open_video(clips["whole.mp4"])


def test_cli_truncated_video_fails(clips, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["video", str(clips["cut50.mp4"]), "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert err[0].startswith(f"facefit: error: {clips['cut50.mp4']}: truncated or corrupt "
                             "video: read ")
    assert not any(out.glob("*.jsonl")) if out.exists() else True


def test_npz_decompression_bomb_refused(tmp_path):
    """A 0.2 MB .npz whose member inflates to 256 MB of zeros: refused from the zip
    directory, before anything is inflated or allocated."""
    import time
    import zipfile

    from facefit.model import ModelFileError, load_model

    path = tmp_path / "bomb.npz"
    n = 64 << 20  # float32 values: 256 MB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("shape_bm_core.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (3 * (n // 3), 1, 1)})
            zeros = bytes(1 << 22)
            for _ in range(n * 4 // len(zeros)):
                fh.write(zeros)
        zf.writestr("fv_indices.npy", b"")
    assert path.stat().st_size < 400_000
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert time.perf_counter() - t0 < 1.0
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{path}: member 'shape_bm_core' expands ")
    assert "(a decompression bomb" in text


def test_mat_and_hdf5_decompression_bombs_refused(tmp_path):
    """A compressed MATLAB variable and a gzip HDF5 dataset of 72 MB of zeros (a few
    hundred kB on disk): refused before they are inflated into arrays."""
    import h5py
    import scipy.io

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
    from _model_formats import make_model, write_bfm2017

    from facefit.model import ModelFileError, load_model

    zeros = np.zeros((9_000_000, 1))
    mat = tmp_path / "01_MorphableModel.mat"
    scipy.io.savemat(mat, {"shapeMU": zeros, "shapePC": zeros, "shapeEV": np.ones((1, 1)),
                           "tl": np.ones((1, 3))}, do_compression=True)
    assert mat.stat().st_size < 1_000_000
    with pytest.raises(ModelFileError, match=r"inflates to more than \d+ \(a decompression"):
        load_model(mat)
    h5 = write_bfm2017(tmp_path / "model2017.h5", make_model())
    with h5py.File(h5, "a") as f:
        del f["shape/model/pcaBasis"]
        f.create_dataset("shape/model/pcaBasis", data=zeros.reshape(-1, 6).astype(np.float64),
                         compression="gzip", chunks=(150_000, 6))
    assert h5.stat().st_size < 1_000_000
    with pytest.raises(ModelFileError, match="announces shape .* but the file stores"):
        load_model(h5)
