"""Shape from a clip (`facefit.eval.shape_clip`): the clip's poses and rendering, and the
identity `facefit video` takes from it, scored against the true face."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.eval import shape_clip as C


@pytest.fixture(scope="module")
def model():
    from facefit.model import load_default_model

    return load_default_model()


def test_clip_poses_sweep_smoothly() -> None:
    yaw, pitch, roll = C.clip_poses(50, 30.0)
    assert yaw.max() == pytest.approx(30.0, abs=0.1) and yaw.min() == pytest.approx(-30.0, abs=0.1)
    assert np.abs(pitch).max() <= 8.0 and np.abs(roll).max() <= 3.0
    # neighbouring frames differ by at most one frame's share of a sine period
    assert np.abs(np.diff(yaw)).max() <= 2 * np.pi * 30.0 / 50 + 1e-9


def test_clip_keeps_light_background_and_framing(model) -> None:
    """One light, background and framing for the clip: with no noise, a background corner is
    identical in every frame; the face moves (the frames differ where the face is)."""
    sub = C.in_model_clip_subject(model, np.random.default_rng(4), frames=6, size=96)
    assert len(sub.images) == 6 and sub.images[0].shape == (96, 96, 3)
    corner = np.stack([im[:6, :6].astype(float) for im in sub.images])
    # pixel noise of 0.01 (2.55 levels): the corner's mean is the same in every frame
    assert np.abs(corner.mean((1, 2, 3)) - corner.mean()).max() < 1.0
    centre = np.stack([im[30:66, 30:66].astype(float) for im in sub.images])
    assert np.abs(centre[1:] - centre[0]).mean() > 3.0
    np.testing.assert_allclose(sub.yaw_deg, C.clip_poses(6, 30.0)[0])
    assert sub.true_vertices is not None and sub.scan is sub.true_vertices


def test_clip_rows_score_the_identity_video_takes(model) -> None:
    """The clip-identity row holds what `clip_identity` (the identity ``facefit video`` fits)
    returns for frames spread over the clip, scored like any other shape; the mean-face row
    scores the mean face."""
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.eval.shape import score
    from facefit.video.identity import clip_identity

    sub = C.in_model_clip_subject(model, np.random.default_rng(10), frames=8, size=160)
    det = MediaPipeDetector()
    rep = C.evaluate_clip_shape(model, lambda i: sub, 1, "in-model", 8, identity_frames=4,
                                keyframes=2, iterations=3, detector=det, progress=False)
    ident = clip_identity(model, det, sub.images[::2], 4)
    shape, used = ident.shape_coeffs, ident.views
    assert used == 4 and rep.rows["clip identity"].failures == 0
    np.testing.assert_allclose(rep.rows["clip identity"].shape_coeffs[0], shape, atol=1e-6)
    med, mean, vtx, _ = score(model, shape, sub)
    assert rep.rows["clip identity"].median_mm[0] == pytest.approx(med)
    assert rep.rows["clip identity"].vertex_mm[0] == pytest.approx(vtx[0])
    assert rep.rows["mean face"].median_mm[0] == pytest.approx(score(model, None, sub)[0])
    assert "clip identity" in rep.table()
    # the photometric row: a joint refinement of 2 of the frames, starting from that identity
    ph = rep.rows["clip photometric"].shape_coeffs[0]
    assert ph is not None and len(ph) == len(shape) and not np.allclose(ph, shape)


def test_eval_shape_clip_command(tmp_path, capsys) -> None:
    from facefit.cli import main

    rc = main(["eval", "shape", "--data", "in-model", "--n", "1", "--clip", "6",
               "--no-photometric", "--size", "160", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "mean face" in out and "clip identity" in out and "6-frame clip" in out
    assert (tmp_path / "shape_in-model_clip6.json").is_file()
    assert main(["eval", "shape", "--clip", "1", "--n", "1"]) == 2
    assert main(["eval", "shape", "--clip", "6", "--photos", "3", "--n", "1"]) == 2


def test_close_up_clips(model, tmp_path, capsys) -> None:
    """``focal_px`` clips: the same draws seen by a pinhole camera (a very long focal length
    gives the scaled orthographic clip back, a short one magnifies what is near the lens);
    ``--clip --focal-px --camera perspective`` fits them with it and says so."""
    from facefit.cli import main

    def clip(focal: float | None) -> list[np.ndarray]:
        return C.in_model_clip_subject(model, np.random.default_rng(4), frames=3, size=96,
                                       focal_px=focal).images

    ortho, far, near = clip(None), clip(1e6), clip(96.0)
    for a, b, c in zip(ortho, far, near, strict=True):
        assert np.mean(np.abs(a.astype(int) - b.astype(int)) > 2) < 0.002
        assert np.mean(np.abs(a.astype(int) - c.astype(int)) > 20) > 0.02
    rc = main(["eval", "shape", "--data", "in-model", "--n", "1", "--clip", "6",
               "--no-photometric", "--size", "160", "--quiet", "--out", str(tmp_path),
               "--focal-px", "160", "--camera", "perspective"])
    out = capsys.readouterr().out
    assert rc == 0 and "pinhole camera, focal 160 px, perspective fits" in out
