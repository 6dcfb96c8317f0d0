"""The fusion of the mesh's and the detector's 300-W points (`facefit.fit.points300w`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.fit.points300w import (
    PointFusion,
    face_frame,
    fuse_points,
    load_fusion,
    with_detector_points,
)


def _points(rng: np.random.Generator) -> np.ndarray:
    """(68, 2) points with the outer eye corners (36, 45) left and right of the centre."""
    p = rng.uniform(-50, 50, (68, 2))
    p[36], p[45] = (-40.0, 0.0), (40.0, 0.0)
    return p


def test_zero_and_identity_gains() -> None:
    rng = np.random.default_rng(0)
    mesh, det = _points(rng), _points(rng)
    zero = PointFusion(np.zeros((68, 2, 2)), np.zeros((68, 2)), "m")
    ident = PointFusion(np.broadcast_to(np.eye(2), (68, 2, 2)).copy(), np.zeros((68, 2)), "m")
    np.testing.assert_allclose(fuse_points(mesh, det, zero), mesh)
    np.testing.assert_allclose(fuse_points(mesh, det, ident), det, atol=1e-9)


def test_offset_is_in_the_face_frame() -> None:
    """A face-frame offset (0.1 face sizes to the face's right) follows the face's roll and
    size: rotating the face by 90° and doubling it turns the image offset and doubles it."""
    rng = np.random.default_rng(1)
    mesh = _points(rng)
    f = PointFusion(np.zeros((68, 2, 2)), np.tile([0.1, 0.0], (68, 1)), "m")
    roll, size = face_frame(mesh)
    assert abs(roll) < 1e-12
    np.testing.assert_allclose(fuse_points(mesh, mesh, f) - mesh, np.tile([0.1 * size, 0], (68, 1)))
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # +90° in image coordinates (y down)
    big = 2.0 * mesh @ turn.T + np.array([300.0, 200.0])
    out = fuse_points(big, big, f) - big
    np.testing.assert_allclose(out, 2.0 * (np.tile([0.1 * size, 0], (68, 1)) @ turn.T), atol=1e-9)


def test_batched_equals_single() -> None:
    rng = np.random.default_rng(2)
    f = PointFusion(rng.normal(size=(68, 2, 2)), rng.normal(size=(68, 2)) * 0.01, "m")
    mesh = np.stack([_points(rng) for _ in range(3)])
    det = mesh + rng.normal(size=mesh.shape)
    batch = fuse_points(mesh, det, f)
    for i in range(3):
        np.testing.assert_allclose(batch[i], fuse_points(mesh[i], det[i], f))


@pytest.mark.parametrize("name", ["default", "ict"])
def test_packaged_gains_match_their_model(name: str) -> None:
    from facefit.cli.common import load_model_arg
    from facefit.model import load_default_model

    model = load_default_model() if name == "default" else load_model_arg(name)
    f = load_fusion(model.name)
    assert f is not None and f.gain.shape == (68, 2, 2) and f.offset.shape == (68, 2)
    assert f.model == model.name
    # mostly a blend between two estimates: the diagonal gains lie around [0, 1] (measured
    # -0.61 to 2.02 over both models, the extremes along the brows and at the inner lip
    # corners), offsets a few hundredths of the face size
    diag = np.diagonal(f.gain, axis1=1, axis2=2)
    assert np.median(diag) > 0.5 and np.median(diag) < 1.2
    assert diag.min() > -1.0 and diag.max() < 2.5 and np.abs(f.offset).max() < 0.05


def test_other_layouts_and_models_are_left_alone() -> None:
    class Fit:  # only the field the fusion reads
        landmarks_68_2d_contour = np.zeros((68, 2), np.float32)

    fit = Fit()
    face = FaceLandmarks(np.zeros(4, np.float32), 1.0, np.zeros((68, 2), np.float32), None,
                         "ibug68")
    assert with_detector_points("bfm2009-3ddfa", fit, face) is fit  # type: ignore[arg-type]
    mp = FaceLandmarks(np.zeros(4, np.float32), 1.0, np.zeros((468, 2), np.float32), None,
                       "mediapipe468")
    for name in ("another-model", "../../etc/x", ""):  # no gains, or not a file name
        assert with_detector_points(name, fit, mp) is fit  # type: ignore[arg-type]


def test_fused_points_beat_mesh_and_detector_on_held_out_helen() -> None:
    """On HELEN test photos (the gains come from the 300-W training faces), the fused
    ``landmarks_68_2d_contour`` is closer to the annotations than the mesh's own 300-W points
    and than MediaPipe's points mapped to 68."""
    from facefit.eval.datasets import read_pts
    from facefit.eval.landmarks import nme_interocular
    from facefit.eval.predictions import load_rgb, select_face
    from facefit.fit.correspondence import mediapipe_to_ibug68
    from facefit.fit.landmark_fit import silhouette_contour
    from facefit.reconstruct import Reconstructor

    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "helen-test"
    files = sorted(folder.glob("*.pts"))[::10]
    if not files:
        pytest.skip(f"{folder}: HELEN test set absent")
    rec = Reconstructor(texture_size=0, landmarks="mediapipe")
    ids = rec.model.landmark_ids["ibug68"]
    fused, mesh, det, gts = [], [], [], []
    for f in files:
        gt = read_pts(f)[:, :2]
        found = rec.reconstruct(load_rgb(f.with_suffix(".jpg")))
        r = found[select_face([np.asarray(x.face.box) for x in found], gt)]
        fused.append(r.fit.landmarks_68_2d_contour)
        mesh.append(silhouette_contour(rec.model, r.fit.verts_px, r.fit.verts_px[ids]))
        det.append(mediapipe_to_ibug68(np.asarray(r.face.points_px, np.float64)))
        gts.append(gt)
    e = {k: float(np.mean(nme_interocular(np.array(v), np.array(gts))))
         for k, v in (("fused", fused), ("mesh", mesh), ("detector", det))}
    assert e["fused"] < 0.92 * e["mesh"] and e["fused"] < e["detector"], e
