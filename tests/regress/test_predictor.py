"""The packaged regression network at inference: weights file and checksum, output shapes,
batch-norm folding, the pose/landmark geometry against independent computations, the crop
mapping back to image pixels, and a rendered profile face."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from facefit.fit.camera import rotation_from_euler
from facefit.model import load_default_model
from facefit.regress.network import Projector
from facefit.regress.predictor import (
    INPUT_SIZE,
    WEIGHTS_PATH,
    WEIGHTS_SHA256,
    RegressionPredictor,
    WeightsError,
    average_results,
    crop_maps,
    rotation_from_pose,
    upright_boxes,
)
from facefit.regress.train import to_tensor
from facefit.synthetic.photos import render_turned_face


@pytest.fixture(scope="module")
def predictor() -> RegressionPredictor:
    return RegressionPredictor()


def test_packaged_weights_file_and_checksum() -> None:
    data = WEIGHTS_PATH.read_bytes()
    assert len(data) <= 2_000_000
    assert hashlib.sha256(data).hexdigest() == WEIGHTS_SHA256
    with np.load(WEIGHTS_PATH, allow_pickle=False) as z:  # plain arrays, no pickles
        meta = json.loads(z["meta"].item())
        assert meta["input_size"] == INPUT_SIZE and meta["outputs"] == 58
        n = len(z["stride"])
        assert n == 27 and all(z[f"w{i}"].dtype == np.float16 for i in range(n))
        assert z["norm_mean"].shape == z["norm_std"].shape == (58,)


def test_inference_does_not_import_torch() -> None:
    code = ("import sys, numpy as np\n"
            "from facefit.regress.predictor import RegressionPredictor\n"
            "p = RegressionPredictor().params_from_crops(np.zeros((1, 120, 120, 3), np.uint8))\n"
            "assert p.shape == (1, 58) and 'torch' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_changed_weights_are_refused(tmp_path) -> None:
    bad = tmp_path / "w.pt"
    bad.write_bytes(WEIGHTS_PATH.read_bytes() + b"\0")
    p = RegressionPredictor(bad)
    p.check_sha = True  # as for the packaged file
    with pytest.raises(WeightsError, match="sha256"):
        p.params_from_crops(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))
    with pytest.raises(WeightsError, match="missing"):
        RegressionPredictor(tmp_path / "none.pt").params_from_crops(np.zeros((1, 8, 8, 3)))


def test_output_shapes_and_folded_batchnorm(predictor) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (3, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    params = predictor.params_from_crops(crops)
    assert params.shape == (3, 58) and params.dtype == np.float32
    # the folded layers run by torch's convolutions (independent of the numpy kernels)
    net = predictor._net
    x = (to_tensor(crops) - 0.5) / 0.25
    with torch.no_grad():
        for layer in net.layers:
            x = torch.relu(torch.nn.functional.conv2d(
                x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias), layer.stride,
                layer.weight.shape[2] // 2, 1, layer.groups))
        y = x.mean(dim=(2, 3)).numpy() @ net.head_w.T + net.head_b
    ref = y * net.norm_std + net.norm_mean
    # the forward pass runs in ONNX Runtime (the in-memory ONNX graph); the numpy kernels
    # are the fallback: both against torch's convolutions
    assert net.session() is not None
    np.testing.assert_allclose(params, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(net.forward_numpy(crops), ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(net(crops[1:2]), params[1:2], rtol=1e-5, atol=1e-5)  # batch 1
    lm3 = predictor.landmarks_3d(params)
    assert lm3.shape == (3, 68, 3)
    # x, y: the training projector of the same parameters
    model = load_default_model()
    proj = Projector(model, model.landmark_ids["ibug68"])(torch.from_numpy(params)).numpy()
    np.testing.assert_allclose(lm3[:, :, :2], proj, atol=1e-3 * np.abs(proj).max())


def test_network_pickles_without_its_session(predictor) -> None:
    import pickle

    net = predictor._net
    crops = np.random.default_rng(1).integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    want = net(crops)
    again = pickle.loads(pickle.dumps(net))
    assert "_session" not in again.__dict__
    np.testing.assert_array_equal(again(crops), want)


def test_pose_geometry_against_known_rotation() -> None:
    model = load_default_model()
    angles = [(70.0, -10.0, 5.0), (-30.0, 15.0, -8.0)]
    rots = np.stack([rotation_from_euler(*a) for a in angles])
    s = np.array([0.4, 1.3])
    g = np.diag([1.0, -1.0, -1.0])
    a = s[:, None, None] * (g @ rots)[:, :2]
    got_r, got_s = rotation_from_pose(a)
    np.testing.assert_allclose(got_r, rots, atol=1e-9)
    np.testing.assert_allclose(got_s, s)
    # depth of landmarks_3d: the third image-frame row (larger is farther)
    p = RegressionPredictor()
    params = np.zeros((2, 58))
    params[:, :6] = a.reshape(2, 6)
    params[:, 6:8] = [[50, 60], [10, 20]]
    lm3 = p.landmarks_3d(params)
    v = model.mean[model.landmark_ids["ibug68"]].astype(np.float64)
    want = np.einsum("nrc,vc->nvr", s[:, None, None] * (g @ rots), v)
    np.testing.assert_allclose(lm3[..., 2], want[..., 2], atol=1e-3)
    np.testing.assert_allclose(lm3[..., :2], want[..., :2] + params[:, None, 6:8], atol=1e-3)


def test_crop_maps_are_the_training_crop() -> None:
    box = np.array([[100.0, 50.0, 200.0, 130.0]])
    m = crop_maps(box)[0]
    side = 100 * 1.5
    # the box centre lands on the crop centre, the side on 120 px
    np.testing.assert_allclose(m[:, :2] @ [150.0, 90.0] + m[:, 2], [59.5, 59.5])
    np.testing.assert_allclose(m[0, 0] * side, INPUT_SIZE)


@pytest.mark.parametrize("lean", [35.0, -120.0])
def test_turned_crop_maps_put_the_head_upright(lean: float) -> None:
    box = np.array([[100.0, 50.0, 200.0, 130.0]])
    m = crop_maps(box, angles_deg=[lean])[0]
    k = INPUT_SIZE / 150.0
    t = np.radians(lean)
    up = np.array([np.sin(t), -np.cos(t)])  # the head's up axis in the image, leaning by t
    right = np.array([np.cos(t), np.sin(t)])
    centre = np.array([150.0, 90.0])
    np.testing.assert_allclose(m[:, :2] @ centre + m[:, 2], [59.5, 59.5], atol=1e-9)
    np.testing.assert_allclose(m[:, :2] @ (centre + 10 * up) + m[:, 2], [59.5, 59.5 - 10 * k])
    np.testing.assert_allclose(m[:, :2] @ (centre + 10 * right) + m[:, 2], [59.5 + 10 * k, 59.5])
    np.testing.assert_allclose(crop_maps(box, angles_deg=[0.0]), crop_maps(box))


def test_upright_boxes_of_a_turned_rectangle() -> None:
    corners = np.array([[-30.0, -20.0], [30.0, -20.0], [30.0, 20.0], [-30.0, 20.0]])
    t = np.radians(50.0)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # turns (1, 0) to the lean
    pts = corners @ r.T + [200.0, 120.0]
    got = upright_boxes(pts[None], [50.0])[0]
    np.testing.assert_allclose(got, [170.0, 100.0, 230.0, 140.0], atol=1e-9)
    np.testing.assert_allclose(upright_boxes(pts[None], [0.0])[0],
                               np.r_[pts.min(0), pts.max(0)], atol=1e-9)


def test_average_results_means_the_points_and_keeps_the_first_pose(predictor) -> None:
    image, truth = _rendered(45.0)
    box = np.r_[truth.min(0), truth.max(0)]
    rs = predictor.predict_batch(image, boxes=np.stack([box, box * 1.02, box * 0.99]),
                                 angles_deg=[10.0, 10.0, 10.0])
    got = average_results(rs)
    mean = np.mean([r.landmarks_68_3d.astype(np.float64) for r in rs], axis=0)
    np.testing.assert_allclose(got.landmarks_68_3d, mean, atol=1e-4)
    np.testing.assert_allclose(got.landmarks_68_px, mean[:, :2], atol=1e-4)
    np.testing.assert_allclose(got.box, np.r_[mean[:, :2].min(0), mean[:, :2].max(0)], atol=1e-3)
    np.testing.assert_array_equal(got.params, rs[0].params)
    assert (got.yaw_deg, got.inplane_deg) == (rs[0].yaw_deg, rs[0].inplane_deg)
    np.testing.assert_allclose(got.upright_box, upright_boxes(
        mean[None, :, :2], [rs[0].inplane_deg])[0], atol=1e-3)
    assert average_results(rs[:1]) is rs[0]


def _rendered(yaw: float, size: int = 256, seed: int = 1, roll: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """A random-identity face turned ``yaw`` degrees (leaning ``roll``) over a grey
    background and its exact 68 landmark projections (hidden ones included)."""
    model = load_default_model()
    rng = np.random.default_rng(seed)
    x = model.vertices(rng.normal(0, 0.7, model.num_shape), np.zeros(model.num_expression))
    image, v = render_turned_face(model, x, rotation_from_euler(yaw, 5.0, roll), size, 0.55,
                                  rng, background=0.45)
    return image, v[model.landmark_ids["ibug68"], :2]


def test_crop_mapping_follows_a_shift_and_a_batch(predictor) -> None:
    image, truth = _rendered(40.0)
    box = np.r_[truth.min(0), truth.max(0)]
    one = predictor.predict(image, box)
    big = np.pad(image, ((30, 0), (17, 0), (0, 0)), mode="edge")
    moved = predictor.predict_batch(big, boxes=np.stack([box + [17, 30, 17, 30], box + [
        17, 30, 17, 30]]))
    assert len(moved) == 2
    for m in moved:  # the same crops: the same answer, 17 px right and 30 px down
        np.testing.assert_allclose(m.landmarks_68_px, one.landmarks_68_px + [17, 30], atol=0.05)
        assert abs(m.yaw_deg - one.yaw_deg) < 0.05
    pts = predictor.predict(image, points=truth)  # the box of given points
    np.testing.assert_allclose(pts.landmarks_68_px, one.landmarks_68_px, atol=1e-3)
    assert one.params.shape == (58,) and one.landmarks_68_3d.shape == (68, 3)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(image.astype(np.float32), box)


def test_flip_averaging_makes_the_answer_mirror_equivariant(predictor) -> None:
    """With the mirrored crop averaged in (the default), the points of a mirrored photo are
    the mirrored points of the photo (the crop of a mirrored box is the mirrored crop);
    without it they are not."""
    from facefit.regress.profiling import IBUG68_MIRROR

    image, truth = _rendered(35.0)
    w = image.shape[1]
    box = np.r_[truth.min(0), truth.max(0)]
    mbox = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])
    mirror = np.ascontiguousarray(image[:, ::-1])

    def mirrored_back(res) -> np.ndarray:
        pts = res.landmarks_68_px[IBUG68_MIRROR].copy()
        pts[:, 0] = w - 1 - pts[:, 0]
        return pts

    a = predictor.predict(image, box).landmarks_68_px
    np.testing.assert_allclose(mirrored_back(predictor.predict(mirror, mbox)), a, atol=0.1)
    plain = RegressionPredictor(flip=False)
    gap = np.abs(mirrored_back(plain.predict(mirror, mbox)) - plain.predict(image, box)
                 .landmarks_68_px).max()
    assert gap > 0.5, gap  # the network alone is not exactly symmetric


def test_a_leaning_face_is_read_from_an_upright_crop(predictor) -> None:
    """A face leaning 50 degrees in the photo: the network's lean from an upright crop, then
    a second pass on the crop turned by that lean, lands on the true points far closer than
    two upright passes (the network saw upright faces only)."""
    image, truth = _rendered(35.0, roll=50.0)
    eyes = truth[42:48].mean(0) - truth[36:42].mean(0)
    lean = np.degrees(np.arctan2(eyes[1], eyes[0]))  # the eye line's lean in the image
    size = np.sqrt(np.prod(truth.max(0) - truth.min(0)))

    def nme(res) -> float:
        return float(np.linalg.norm(res.landmarks_68_px - truth, axis=1).mean() / size)

    first = predictor.predict(image, np.r_[truth.min(0), truth.max(0)])
    assert abs(first.inplane_deg - lean) < 32 and abs(lean) > 40  # rough: 28 deg short here
    upright = predictor.predict(image, first.box)
    turned = predictor.predict(image, first.upright_box, angle_deg=first.inplane_deg)
    assert abs(turned.inplane_deg - lean) < 8, (turned.inplane_deg, lean)
    assert nme(turned) < 0.06 and nme(turned) < 0.7 * nme(upright), (nme(turned), nme(upright))
    # given points, their box in the head's frame: the same crop as the box above
    again = predictor.predict(image, points=first.landmarks_68_px, angle_deg=first.inplane_deg)
    np.testing.assert_allclose(again.landmarks_68_px, turned.landmarks_68_px, atol=0.05)
    # the upright box is the landmarks' box in the head's frame: smaller than the image box
    assert np.prod(np.ptp(turned.upright_box.reshape(2, 2), 0)) < 0.9 * np.prod(
        np.ptp(turned.box.reshape(2, 2), 0))


@pytest.mark.parametrize("yaw", [-75.0, 70.0])
def test_rendered_profile_face(predictor, yaw) -> None:
    image, truth = _rendered(yaw)
    box = np.r_[truth.min(0), truth.max(0)]
    jitter = np.array([6.0, -5.0, 4.0, 7.0])  # a detector's box is not the exact one
    res = predictor.predict(image, box + jitter)
    size = np.sqrt(np.prod(truth.max(0) - truth.min(0)))
    nme = np.linalg.norm(res.landmarks_68_px - truth, axis=1).mean() / size
    assert nme < 0.10, nme
    assert np.sign(res.yaw_deg) == np.sign(yaw) and abs(res.yaw_deg) > 35


def test_export_script_round_trip(tmp_path) -> None:
    from repo_scripts import load_script

    script = load_script("scripts/export_regress_weights.py")
    model = load_default_model()
    from facefit.regress.network import build_network

    torch.manual_seed(0)
    net = build_network(model).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ck = tmp_path / "best.pt"
    torch.save({"net": net.state_dict(), "norm_mean": torch.linspace(-1, 1, 58),
                "norm_std": torch.linspace(0.5, 2, 58)}, ck)
    first = script.export(ck, tmp_path / "a.npz")
    assert script.export(ck, tmp_path / "b.npz") == first  # same bytes for the same weights
    assert first == hashlib.sha256((tmp_path / "a.npz").read_bytes()).hexdigest()
    crops = np.random.default_rng(1).integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    got = RegressionPredictor(tmp_path / "a.npz").params_from_crops(crops)
    with torch.no_grad():  # the unfolded torch network: batch norms folded correctly
        want = net(to_tensor(crops)).numpy() * np.linspace(0.5, 2, 58) + np.linspace(-1, 1, 58)
    np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max())  # float16 weights
    # a training checkpoint loads too (float32: closer)
    got_ck = RegressionPredictor(ck).params_from_crops(crops)
    np.testing.assert_allclose(got_ck, want, atol=1e-4 * np.abs(want).max())
    assert script.main(["--checkpoint", str(tmp_path / "none.pt"), "--out",
                        str(tmp_path / "c.npz")]) == 2
    assert not (tmp_path / "c.npz").exists()


def test_export_adds_the_aflw_convention_offset(tmp_path) -> None:
    from PIL import Image
    from repo_scripts import load_script

    from facefit.regress.aflw21 import convention_offset
    from facefit.regress.inference import load_weights
    from facefit.regress.predictor import landmark_basis

    script = load_script("scripts/export_regress_weights.py")
    model = load_default_model()
    from facefit.regress.network import build_network

    torch.manual_seed(0)
    net = build_network(model).eval()
    ck = tmp_path / "best.pt"
    torch.save({"net": net.state_dict(), "norm_mean": torch.zeros(58),
                "norm_std": torch.ones(58)}, ck)
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (3, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    (tmp_path / "aflw" / "images").mkdir(parents=True)
    for i, c in enumerate(crops):
        Image.fromarray(c).save(tmp_path / "aflw" / "images" / f"{i}.jpg")
    crops = np.stack([np.asarray(Image.open(tmp_path / "aflw" / "images" / f"{i}.jpg"))
                      for i in range(3)])  # as the script reads them
    points = rng.uniform(30, 90, (3, 21, 2)).astype(np.float32)
    points[0, :5] = np.nan
    np.savez(tmp_path / "aflw" / "labels.npz", names=np.array([f"{i}.jpg" for i in range(3)]),
             points_21=points, yaw_deg=np.zeros(3, np.float32))
    script.export(ck, tmp_path / "plain.npz")
    script.export(ck, tmp_path / "calib.npz", tmp_path / "aflw")
    plain, calib = (RegressionPredictor(tmp_path / f"{k}.npz", passes=2)
                    for k in ("plain", "calib"))
    raw = plain.params_from_crops(crops)
    np.testing.assert_array_equal(calib.params_from_crops(crops), raw)  # the network is the same
    mean68, basis68 = landmark_basis(model)
    want = np.round(convention_offset(mean68, basis68, raw, points, INPUT_SIZE), 4)
    meta = load_weights(tmp_path / "calib.npz").meta["convention_offset"]
    assert meta["crops"] == 3 and meta["data"] == "train-aflw21"
    np.testing.assert_allclose(meta["coefficients"], want, atol=1e-3)
    np.testing.assert_array_equal(calib.convention_offset, meta["coefficients"])
    assert not plain.convention_offset.any()
    image = np.random.default_rng(3).integers(0, 256, (300, 300, 3), np.uint8)
    a, b = (m.predict(image, np.array([100.0, 100, 200, 200])) for m in (plain, calib))
    np.testing.assert_array_equal(b.landmarks_68_px, a.landmarks_68_px)  # the passes: raw
    assert plain.in_aflw_convention(a) is a
    c = calib.in_aflw_convention(b)
    np.testing.assert_allclose(c.params[8:] - b.params[8:], meta["coefficients"], atol=1e-4)
    np.testing.assert_array_equal(c.params[:8], b.params[:8])  # the pose is untouched
    # the points move as the 68 vertices' projections do (written out: x = A v + t)
    proj = [(mean68 + basis68 @ q[8:].astype(float)) @ q[:6].reshape(2, 3).T
            for q in (b.params, c.params)]
    np.testing.assert_allclose(c.landmarks_68_px - b.landmarks_68_px, proj[1] - proj[0], atol=1e-3)
    np.testing.assert_allclose(c.box, np.r_[c.landmarks_68_px.min(0), c.landmarks_68_px.max(0)])
    assert script.main(["--checkpoint", str(ck), "--out", str(tmp_path / "d.npz"), "--aflw",
                        str(tmp_path / "none")]) == 2
    assert not (tmp_path / "d.npz").exists()
