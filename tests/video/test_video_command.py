"""``facefit video`` end to end on a short clip made from the example photo."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facefit.video.stream import VideoWriter

    img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((256, 256)))
    path = tmp_path_factory.mktemp("clip") / "moving.mp4"
    w = VideoWriter(path, 25.0)
    for i in range(10):
        w.write(np.roll(img, (i, 2 * i), axis=(0, 1)))
    w.close()
    return path


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_video_writes_jsonl_overlay_and_glb(clip: Path, tmp_path: Path) -> None:
    from facefit.video.stream import iter_frames, open_video

    out = tmp_path / "out"
    assert main(["video", str(clip), "-o", str(out), "-q", "--identity-frames", "3"]) == 0
    lines = (out / "moving.jsonl").read_text().splitlines()
    head, records = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    assert len(head["shape_coeffs"]) == 40 and len(records) == 10
    assert all(len(r["faces"]) == 1 for r in records)
    faces = [r["faces"][0] for r in records]
    assert sum(f["redetected"] for f in faces) == 1  # detected once, then tracked
    xs = [np.mean(np.array(f["landmarks_68_2d"])[:, 0]) for f in faces]
    assert xs[-1] - xs[0] > 10  # follows the face moving right
    reader, info = open_video(out / "moving_overlay.mp4")
    assert sum(1 for _ in iter_frames(reader)) == 10 and info.size == (256, 256)
    assert (out / "moving.glb").stat().st_size > 1000


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_refine_photometric_refines_the_clip_identity(clip: Path, tmp_path: Path) -> None:
    """``--refine photometric``: the header's identity is the joint landmark fit refined on
    the identity frames (`clip_identity`), and says so."""
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.detect.network import landmark_detector
    from facefit.fit.camera import camera_candidates
    from facefit.fit.landmark_fit import camera_model
    from facefit.model import load_default_model
    from facefit.video.identity import clip_identity
    from facefit.video.stream import iter_frames, open_video

    heads = {}
    for refine in ("none", "photometric"):
        out = tmp_path / refine
        assert main(["video", str(clip), "-o", str(out), "-q", "--identity-frames", "3",
                     "--refine", refine, "--no-overlay", "--no-glb", "--no-html",
                     "--max-frames", "6"]) == 0
        heads[refine] = json.loads((out / "moving.jsonl").read_text().splitlines()[0])
    assert heads["none"]["identity"] == "clip"
    assert heads["photometric"]["identity"] == "clip photometric"
    # the same frames (0, 2, 4 of the first 6) through the API give the same identities
    reader, _ = open_video(clip)
    frames = [f for i, f in enumerate(iter_frames(reader)) if i < 6 and i % 2 == 0]
    auto, _ = landmark_detector(MediaPipeDetector(), "auto")  # the command's default
    # the default camera (auto), no focal length: the refinement tries both cameras
    both = [camera_model(kind, (256, 256), focal)
            for kind, focal in camera_candidates("auto", None, refine=True)]
    want = clip_identity(load_default_model(), auto, frames, 3, refine="photometric",
                         camera=both)
    assert want is not None and want.keyframes == 3
    lines = (tmp_path / "photometric" / "moving.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["faces"][0]["pose"]["camera"]["kind"] == want.camera.kind
    np.testing.assert_allclose(heads["none"]["shape_coeffs"], want.landmark_shape_coeffs,
                               atol=2e-5)
    np.testing.assert_allclose(heads["photometric"]["shape_coeffs"], want.shape_coeffs,
                               atol=2e-5)
    assert not np.allclose(want.shape_coeffs, want.landmark_shape_coeffs, atol=1e-3)


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
@pytest.mark.parametrize("source", ["network", "mediapipe"])
def test_landmarks_option_gives_each_frame_its_source(clip: Path, tmp_path: Path,
                                                      source: str) -> None:
    """``--landmarks network`` fits every frame to the network's 68 points (the track itself
    follows MediaPipe's mesh) and records the source per face, as photos do."""
    out = tmp_path / source
    assert main(["video", str(clip), "-o", str(out), "-q", "--identity-frames", "2",
                 "--landmarks", source, "--no-overlay", "--no-glb", "--no-html",
                 "--max-frames", "4"]) == 0
    records = [json.loads(x) for x in (out / "moving.jsonl").read_text().splitlines()[1:]]
    faces = [r["faces"][0] for r in records]
    assert len(faces) == 4 and {f["landmark_source"] for f in faces} == {source}
    xs = [np.mean(np.array(f["landmarks_68_2d"])[:, 0]) for f in faces]
    assert xs[-1] - xs[0] > 3  # still follows the face moving right (1 px per frame)


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_perspective_camera_option(clip: Path, tmp_path: Path, capsys) -> None:
    """``--focal-px F`` fits every frame (and the identity) with a pinhole camera of that
    focal length about the frame's centre; with the scaled orthographic camera it is a
    usage error."""
    from facefit.io.schemas import validator

    runs = {}
    for name, opts in (("ortho", []), ("persp", ["--focal-px", "400"])):
        out = tmp_path / name
        assert main(["video", str(clip), "-o", str(out), "-q", "--identity-frames", "3",
                     "--no-overlay", "--no-html", "--max-frames", "4", *opts]) == 0
        lines = [json.loads(x) for x in (out / "moving.jsonl").read_text().splitlines()]
        for line in lines[1:]:  # the pinhole records are valid lines of the video schema
            validator("video").validate(line)
        runs[name] = [line["faces"][0] for line in lines[1:]]
    for f in runs["persp"]:
        assert f["pose"]["camera"] == {"kind": "perspective", "focal_px": 400.0,
                                       "principal_point_px": [128.0, 128.0]}
        assert len(f["pose"]["translation"]) == 3 and f["pose"]["translation"][2] < 0
    for a, b in zip(runs["ortho"], runs["persp"], strict=True):
        assert a["pose"]["camera"]["kind"] == "scaled_orthographic"
        # the same face either way: landmarks within a few pixels of each other
        diff = np.abs(np.array(a["landmarks_68_2d"]) - np.array(b["landmarks_68_2d"]))
        assert np.median(diff) < 3.0
    assert main(["video", str(clip), "-o", str(tmp_path / "bad"), "--camera", "orthographic",
                 "--focal-px", "400"]) == 2
    assert not (tmp_path / "bad").exists()
    assert "--focal-px needs --camera perspective" in capsys.readouterr().err


def test_missing_camera_and_file_are_one_line_errors(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["video", "7", "-o", str(tmp_path)]) == 1
    assert main(["video", str(tmp_path / "nope.mp4"), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("facefit: error: camera 7")
    assert "no such file" in err[1]


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_truncated_clip_fails_and_leaves_nothing(clip: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A clip whose decoding fails after a few frames (what `facefit.video.stream` raises for
    a truncated file) is an error: exit 1, one line, no .jsonl/.glb/overlay of it."""
    from facefit.video import pipeline, stream

    real = stream.iter_frames

    def truncated(reader, info=None, every=1):
        for i, frame in enumerate(real(reader, info, every)):
            if i * every == 6:
                raise stream.VideoError(f"{clip}: truncated or corrupt video data at frame 6")
            yield frame

    monkeypatch.setattr(stream, "iter_frames", truncated)
    # one process: the patched decoder is this process's (a real truncated file through
    # the worker processes: tests/video/test_workers.py)
    monkeypatch.setattr(pipeline, "cores_available", lambda: 1)
    out = tmp_path / "out"
    assert main(["video", str(clip), "-o", str(out), "-q", "--identity-frames", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"facefit: error: {clip}: truncated or corrupt video data at frame 6 "
                   "(stopped: no results written for this clip)"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("option", ["--max-frames", "--identity-frames"])
def test_zero_frames_refused(clip: Path, tmp_path: Path, option: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["video", str(clip), "-o", str(tmp_path / "o"), option, "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_model_option_refuses_a_bad_model_before_the_clip(clip: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from facefit.model import save_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
    from _model_formats import make_model

    no_landmarks = save_model(dataclasses.replace(make_model(), landmark_ids={}),
                              tmp_path / "bare.npz")
    for model, why in ((tmp_path / "missing.npz", "file not found"),
                       (no_landmarks, "68 iBUG landmark")):
        assert main(["video", str(clip), "-o", str(tmp_path / "o"), "--model", str(model),
                     "-q"]) == 4
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"facefit: error: {model}") and why in err[0]
        assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
@pytest.mark.parametrize("every", [1, 3, 4])
def test_sampled_reader_yields_every_nth_frame(clip: Path, every: int) -> None:
    """`open_video(every=N)` (the identity pass's reader) gives frames 0, N, 2N, ... exactly
    as the reader of every frame decodes them."""
    from facefit.video.stream import iter_frames, open_video

    reader, info = open_video(clip)
    frames = list(iter_frames(reader, info))
    reader, info = open_video(clip, every=every)
    sampled = list(iter_frames(reader, info, every=every))
    assert len(frames) == 10 and len(sampled) == -(-10 // every)
    for k, frame in enumerate(sampled):
        np.testing.assert_array_equal(frame, frames[k * every])
