"""ARKit weights (`facefit.model.arkit`): name mapping, the registration pieces on synthetic
meshes, the shipped transfer onto the default model, and recovery of known ARKit weights
from synthetic default-model faces made with the transferred blendshapes."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.fit.blendshape import fit_blendshape_points
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.fit.core.rotation import rotation_from_euler
from facefit.model import load_default_model
from facefit.model.arkit import (
    ARKIT_52,
    DEFAULT_TRANSFER,
    ArkitTransfer,
    arkit_blendshapes,
    arkit_dict,
    arkit_name,
    default_transfer,
    nonrigid_icp,
    read_transfer,
    save_transfer,
    transfer_offsets,
)
from facefit.model.face_model import FaceParams
from facefit.model.ict import ICTFaceModel
from facefit.model.kinds import face_model


def test_names():
    assert len(ARKIT_52) == 52 == len(set(ARKIT_52))
    assert arkit_name("eyeBlink_L") == "eyeBlinkLeft"
    assert arkit_name("mouthSmile_R") == "mouthSmileRight"
    assert arkit_name("jawOpen") == "jawOpen"
    assert arkit_name("browInnerUp_L") == "browInnerUp" == arkit_name("browInnerUp_R")
    assert arkit_name("cheekRaiser_L") is None and arkit_name("PupilDilate_R") is None
    d = arkit_dict(["browInnerUp_L", "browInnerUp_R", "jawOpen", "cheekRaiser_L"],
                   np.array([0.2, 0.6, 0.9, 1.0]))
    assert list(d) == list(ARKIT_52)
    assert d["browInnerUp"] == pytest.approx(0.4) and d["jawOpen"] == pytest.approx(0.9)
    assert d["tongueOut"] == 0.0 and sum(d.values()) == pytest.approx(1.3)


def _sheet(n: int = 15) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.linspace(-30, 30, n), np.linspace(-30, 30, n))
    pts = np.column_stack([u.ravel(), v.ravel(), np.zeros(n * n)])
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a = (i * n + j).ravel()
    tri = np.concatenate([np.column_stack([a, a + 1, a + n + 1]),
                          np.column_stack([a, a + n + 1, a + n])]).astype(np.int32)
    return pts, tri


def test_nonrigid_icp_and_transfer():
    src, tri = _sheet()
    # Target: a dense sample of a smoothly bent, shifted sheet.
    g = np.linspace(-32, 32, 80)
    gu, gv = np.meshgrid(g, g)
    target = np.column_stack([gu.ravel(), gv.ravel(), 8 * np.cos(gu.ravel() / 20) + 2])
    lm = np.array([0, 7, 14, 112, 210, 217, 224])
    lm_t = np.column_stack([src[lm, :2], 8 * np.cos(src[lm, 0] / 20) + 2])
    out = nonrigid_icp(src, tri, target, lm, lm_t)
    want_z = 8 * np.cos(out[:, 0] / 20) + 2
    assert np.abs(out[:, 2] - want_z).max() < 0.5  # on the bent surface
    assert np.abs(out[:, :2] - src[:, :2]).max() < 3.0  # without sliding far
    # Transfer: offsets carried to the source's own points are the offsets themselves, and to
    # points between vertices an average of the neighbours'.
    offs = np.random.default_rng(0).normal(size=(len(src), 3, 2))
    np.testing.assert_allclose(transfer_offsets(src, offs, src), offs, atol=1e-5)
    mid = (src[0] + src[1]) / 2
    got = transfer_offsets(src, offs, mid[None], k=2)[0]
    np.testing.assert_allclose(got, (offs[0] + offs[1]) / 2, atol=1e-9)


@pytest.fixture(scope="module")
def bfm():
    return load_default_model()


@pytest.fixture(scope="module")
def transfer():
    tr = default_transfer()
    assert tr is not None, f"{DEFAULT_TRANSFER} missing: run scripts/build_arkit_transfer.py"
    return tr


def test_shipped_file(tmp_path, bfm, transfer):
    assert DEFAULT_TRANSFER.stat().st_size <= 2_000_000
    assert len(transfer.names) == 53 and "jawOpen" in transfer.names
    assert transfer.offsets.shape == (len(transfer.vertex_ids), 3, 53)
    assert transfer.matches(bfm)
    assert np.isin(bfm.landmark_ids["ibug68"], transfer.vertex_ids).all()
    save_transfer(tmp_path / "t.npz", transfer)
    again = read_transfer(tmp_path / "t.npz")
    np.testing.assert_allclose(again.offsets, transfer.offsets, atol=1e-2)
    shifted = ArkitTransfer(transfer.names, transfer.vertex_ids, transfer.offsets,
                            transfer.fingerprint + np.r_[0, 5.0, 0, 0, 0])
    assert not shifted.matches(bfm)
    # The transferred jawOpen drops the chin (landmark 8) by centimetres, eyeBlink_L lowers
    # the left upper lid (landmarks 43, 44) and leaves the right eye (37, 38) still.
    pos = {int(v): i for i, v in enumerate(transfer.vertex_ids)}
    lm = [pos[int(v)] for v in bfm.landmark_ids["ibug68"]]
    jaw = transfer.offsets[lm, :, transfer.names.index("jawOpen")]
    blink = transfer.offsets[lm, :, transfer.names.index("eyeBlink_L")]
    assert jaw[8, 1] < -15 and np.abs(jaw[np.r_[17:27, 36:48]]).max() < 0.5
    assert blink[43, 1] < -3 and blink[44, 1] < -3 and np.abs(blink[36:42]).max() < 0.1


def _landmark_face(px: np.ndarray) -> FaceLandmarks:
    return FaceLandmarks(np.r_[px.min(0), px.max(0)].astype(np.float32), 1.0,
                         px.astype(np.float32), None, "ibug68")


def test_recovery_from_landmarks(bfm, transfer):
    """Default-model faces (random identity, pose) with expressions made from 3 transferred
    blendshapes: their projected 68 landmarks (0.5 px noise) give back the weights through
    the bounded fit of `ArkitTransfer.blendshape_model`."""
    hybrid = face_model(transfer.blendshape_model(bfm))
    assert isinstance(hybrid, ICTFaceModel)
    lm = hybrid.base.landmark_ids["ibug68"]
    motion = np.sqrt((transfer.offsets[lm] ** 2).sum(1).mean(0))
    candidates = np.flatnonzero(motion >= 1.0)  # shapes the landmarks can see
    rng = np.random.default_rng(1)
    maes = []
    for _ in range(4):
        w = np.zeros(53)
        active = rng.choice(candidates, 3, replace=False)
        w[active] = rng.uniform(0.4, 1.0, 3)
        a = 0.7 * rng.standard_normal(bfm.num_shape)
        cam = ScaledOrthographicCamera(rotation_from_euler(*rng.uniform(-15, 15, 3)), 2.0,
                                       np.array([320.0, 240.0]))
        px, _ = cam.project(hybrid.vertices(FaceParams(a, w), lm))
        px = px + rng.normal(0, 0.5, px.shape)
        fit = fit_blendshape_points(hybrid, px, lm, sigma_px=0.5)
        got, want = arkit_dict(transfer.names, fit.weights), arkit_dict(transfer.names, w)
        err = np.abs(np.array(list(got.values())) - np.array(list(want.values())))
        maes.append(err.mean())
        assert err.mean() <= 0.1
        order = sorted(got, key=got.get, reverse=True)
        assert set(order[:3]) == {arkit_name(transfer.names[k]) for k in active}
    print("BFM landmark recovery MAE (52 ARKit weights)", [round(float(m), 3) for m in maes])


def test_arkit_blendshapes_for_a_detection(bfm, transfer):
    """The JSON path: a detection of a default-model face with jawOpen 0.8 and a right smile
    0.7 (1 px landmark noise) gives those ARKit weights; without the detection, the solve
    from expression coefficients; an unrelated model gives None."""
    hybrid = face_model(transfer.blendshape_model(bfm))
    lm = hybrid.base.landmark_ids["ibug68"]
    w = np.zeros(53)
    w[transfer.names.index("jawOpen")], w[transfer.names.index("mouthSmile_R")] = 0.8, 0.7
    cam = ScaledOrthographicCamera(rotation_from_euler(10, 5, 0), 2.0,
                                   np.array([320.0, 240.0]))
    px, _ = cam.project(hybrid.vertices(FaceParams(np.zeros(bfm.num_shape), w), lm))
    px = px + np.random.default_rng(3).normal(0, 1.0, px.shape)
    got = arkit_blendshapes(bfm, np.zeros(bfm.num_expression), _landmark_face(px))
    assert got["jawOpen"] == pytest.approx(0.8, abs=0.1)
    assert got["mouthSmileRight"] == pytest.approx(0.7, abs=0.15)
    assert got["mouthSmileLeft"] < 0.2 and got["eyeBlinkLeft"] < 0.1
    zero = arkit_blendshapes(bfm, np.zeros(bfm.num_expression))
    assert max(zero.values()) < 1e-6  # neutral coefficients: no blendshape on
    assert arkit_blendshapes(hybrid.base, np.zeros(53)) is not None  # blendshape kind
    other = bfm.__class__(**{**bfm.__dict__, "mean": bfm.mean + 10.0})
    assert arkit_blendshapes(other, np.zeros(bfm.num_expression)) is None


def test_weights_from_expression_coefficients(bfm, transfer):
    """Without landmarks: weights explaining the fitted expression coefficients. The 10
    expression components of the default model span only part of each shape, so sparse
    weights come back approximately (MAE over the 53 weights)."""
    c = transfer.projection(bfm)
    rng = np.random.default_rng(2)
    e = bfm.expression_basis[transfer.vertex_ids].reshape(-1, bfm.num_expression)
    d = transfer.offsets.reshape(-1, 53)
    frac = 1 - ((e @ c - d) ** 2).sum(0) / (d**2).sum(0)  # part of each shape expressible
    assert frac[transfer.names.index("jawOpen")] > 0.8
    assert frac[transfer.names.index("eyeBlink_L")] < 0.1
    candidates = np.flatnonzero(frac >= 0.7)
    ws, wants = [], []
    for _ in range(10):
        w = np.zeros(53)
        active = rng.choice(candidates, 3, replace=False)
        w[active] = rng.uniform(0.4, 1.0, 3)
        wants.append(w)
        ws.append(c @ w)
    got = transfer.weights(bfm, np.array(ws))
    assert got.shape == (10, 53) and got.min() >= 0 and got.max() <= 1
    mae = np.abs(got - np.array(wants)).mean(1)
    assert mae.max() <= 0.1, mae
    print("BFM coefficient solve MAE", np.round(mae, 3))


def test_json_has_arkit_blendshapes(tmp_path, bfm, transfer):
    """``export_reconstructions`` writes ``arkit_blendshapes`` (52 ARKit names) per face."""
    import json

    from facefit.fit.camera import Camera
    from facefit.fit.result import FitResult
    from facefit.io.export import export_reconstructions
    from facefit.reconstruct import Reconstruction

    hybrid = face_model(transfer.blendshape_model(bfm))
    lm = hybrid.base.landmark_ids["ibug68"]
    w = np.zeros(53)
    w[transfer.names.index("jawOpen")] = 0.9
    cam = ScaledOrthographicCamera(np.eye(3), 2.0, np.array([320.0, 240.0]))
    px, _ = cam.project(hybrid.vertices(FaceParams(np.zeros(bfm.num_shape), w), lm))
    vp = cam.image_points(bfm.mean).astype(np.float32)
    fit = FitResult(np.zeros(bfm.num_shape, np.float32),
                    np.zeros(bfm.num_expression, np.float32), np.eye(3),
                    np.array([320.0, 240.0]), 2.0, Camera(), 0.0, 0.0, 0.0, vp,
                    px.astype(np.float32), np.c_[px, np.zeros(68)].astype(np.float32),
                    px.astype(np.float32), 1.0, 68, 3)
    rec = Reconstruction(_landmark_face(px), fit, None, None, {})
    path = export_reconstructions(tmp_path, "x.jpg", np.zeros((480, 640, 3), np.uint8), [rec],
                                  bfm, formats=("json",))
    face = json.loads(path.read_text())["faces"][0]
    arkit = face["arkit_blendshapes"]
    assert list(arkit) == list(ARKIT_52)
    assert arkit["jawOpen"] == pytest.approx(0.9, abs=0.1)
    assert sorted(arkit.values())[-2] < 0.2


def test_arkit_for_pose_video_frames(bfm, transfer):
    """Per video frame (pose and identity known): one bounded solve recovers the weights;
    a blendshape model's expression passes through; unrelated layouts give None."""
    from facefit.model.arkit import arkit_for_pose

    hybrid = face_model(transfer.blendshape_model(bfm))
    lm = hybrid.base.landmark_ids["ibug68"]
    rng = np.random.default_rng(4)
    a = 0.7 * rng.standard_normal(bfm.num_shape)
    names = transfer.names
    for k, (shape, value) in enumerate([("jawOpen", 0.6), ("eyeBlink_R", 0.9),
                                        ("mouthPucker", 0.8)]):
        w = np.zeros(53)
        w[names.index(shape)] = value
        cam = ScaledOrthographicCamera(rotation_from_euler(10.0 * k - 10, 5, 0), 2.0,
                                       np.array([320.0, 240.0]))
        px, _ = cam.project(hybrid.vertices(FaceParams(a, w), lm))
        px = px + rng.normal(0, 1.0, px.shape)
        got = arkit_for_pose(bfm, _landmark_face(px), cam, a, np.zeros(bfm.num_expression))
        want = arkit_dict(names, w)
        err = np.abs(np.array(list(got.values())) - np.array(list(want.values())))
        assert err.mean() <= 0.02 and err.max() <= 0.2, (shape, err.max())
        assert max(got, key=got.get) == arkit_name(shape)
    ict = hybrid.base
    out = arkit_for_pose(ict, _landmark_face(px), cam, np.zeros(ict.num_shape),
                         np.r_[1.5, np.zeros(52)])
    assert out[arkit_name(names[0])] == 1.0  # clipped to the box
    odd = FaceLandmarks(np.zeros(4, np.float32), 1.0, px[:5].astype(np.float32), None, "x5")
    assert arkit_for_pose(bfm, odd, cam, a, np.zeros(bfm.num_expression)) is None


def test_video_arkit_weights_follow_a_turning_head(tmp_path, bfm, transfer):
    """`facefit.video.pipeline.process_frames` with smoothing on: a head that nods and
    turns by 20-30 degrees in a few frames while the mouth opens and closes. The ARKit
    solve of each frame explains that frame's landmarks at the frame's own fitted pose:
    with the smoothed pose, which lags behind the motion, the residual it leaves (chin
    against lips) was taken up by the mouth shapes."""
    import dataclasses
    import json

    from facefit.fit.correspondence import IBUG68_FIXED
    from facefit.video import pipeline

    hybrid = face_model(transfer.blendshape_model(bfm))
    lm = hybrid.base.landmark_ids["ibug68"]
    names = transfer.names
    rng = np.random.default_rng(2)
    a = 0.5 * rng.standard_normal(bfm.num_shape)
    # a nod and a turn within a few frames: the smoothed pose lags them by degrees
    yaws = np.r_[np.zeros(4), 25.0, 25.0, -5.0, 20.0, 0.0, 0.0]
    pitches = np.r_[np.zeros(4), -15.0, 10.0, 15.0, -10.0, 0.0, 0.0]
    jaws = np.r_[0.1, 0.5, 0.2, 0.4, 0.6, 0.1, 0.5, 0.3, 0.6, 0.2]
    clip = []
    for yaw, pitch, jaw in zip(yaws, pitches, jaws, strict=True):
        w = np.zeros(len(names))
        w[names.index("jawOpen")] = jaw
        cam = ScaledOrthographicCamera(rotation_from_euler(yaw, pitch, 0), 2.0,
                                       np.array([320.0, 240.0]))
        px, _ = cam.project(hybrid.vertices(FaceParams(a, w), lm))
        clip.append(px + rng.normal(0, 0.5, px.shape))

    class Tracker:
        detections = 0

        def __init__(self) -> None:
            self.i = 0

        def update(self, frame: np.ndarray) -> tuple[FaceLandmarks, bool]:
            # all 68 on fixed vertices, as facefit's network gives them (and as they were
            # made): the frame fit's pose is then not disturbed by a silhouette outline
            self.i += 1
            return dataclasses.replace(_landmark_face(clip[self.i - 1]),
                                       scheme=IBUG68_FIXED), False

    frames = (np.zeros((480, 640, 3), np.uint8) for _ in clip)
    pipeline.process_frames(frames, 25.0, bfm, np.asarray(a, np.float32), Tracker(),
                            jsonl_path=tmp_path / "clip.jsonl", smooth=True)
    lines = [json.loads(s) for s in (tmp_path / "clip.jsonl").read_text().splitlines()][1:]
    got = np.array([f["faces"][0]["arkit_blendshapes"]["jawOpen"] for f in lines])
    print("jawOpen error per frame", np.round(got - jaws, 2))
    # at the smoothed pose the errors were -0.6, +0.9, +0.5, -0.3 on the moving frames
    assert np.abs(got - jaws).max() < 0.2, np.round(got - jaws, 2)
    assert np.corrcoef(got, jaws)[0, 1] > 0.9
