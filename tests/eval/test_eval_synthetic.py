"""``facefit eval synthetic``: renders with known pose, scores recomputed independently.

Pose conventions are checked against scipy's rotations, NME against a hand computation of
the AFLW2000-3D protocol, and the vertex error against scipy's orthogonal Procrustes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from facefit.cli import eval as commands
from facefit.detect.base import FaceLandmarks
from facefit.eval.synthetic import evaluate_synthetic, fit_exact_landmarks
from facefit.fit.landmark_fit import estimate_scaled_orthographic, fit_landmarks
from facefit.model import load_default_model
from facefit.synthetic.scenes import SKIN_TONE, SyntheticFace, base_albedo, sample_face


@pytest.fixture(scope="module")
def model():
    return load_default_model()


def _face(model, yaw: float, pitch: float, roll: float, seed: int = 0) -> SyntheticFace:
    albedo = np.tile(np.asarray(SKIN_TONE, np.float32), (model.num_vertices, 1))
    return sample_face(model, np.random.default_rng(seed), size=192, albedo=albedo,
                       backgrounds=[], pose_deg=(yaw, pitch, roll))


def test_projection_agrees_with_known_pose(model) -> None:
    face = _face(model, 30.0, 10.0, -5.0)
    # R = Rz(roll) Ry(yaw) Rx(pitch): scipy's extrinsic x-y-z sequence.
    r = Rotation.from_euler("xyz", [10.0, 30.0, -5.0], degrees=True).as_matrix()
    np.testing.assert_allclose(face.rotation, r, atol=1e-12)
    ids = np.asarray(model.landmark_ids["ibug68"])
    x = model.vertices(face.shape_coeffs, face.expression_coeffs)[ids].astype(np.float64)
    v = x @ r.T
    want = np.column_stack([face.scale * v[:, 0] + face.translation[0],
                            -face.scale * v[:, 1] + face.translation[1]])
    np.testing.assert_allclose(face.landmarks_68, want, atol=1e-3)
    # A camera estimated from the projected landmarks recovers the pose and the scale.
    pose = estimate_scaled_orthographic(x, face.landmarks_68)
    angle = Rotation.from_matrix(pose.rotation.T @ r).magnitude()
    assert np.degrees(angle) < 1e-3
    assert pose.scale == pytest.approx(face.scale, rel=1e-5)
    # The render covers the nose tip and leaves the corners to the background.
    cx, cy = np.rint(face.landmarks_68[30]).astype(int)
    assert face.mask[cy, cx] and not face.mask[0, 0] and not face.mask[-1, -1]
    assert face.image.shape == (192, 192, 3) and face.image.dtype == np.uint8


class _FakeReconstructor:
    """Detector stand-in: GT landmarks plus known noise, fitted by facefit's landmark fit;
    returns no face where ``missing`` says so."""

    def __init__(self, model, faces: list[SyntheticFace], missing: set[int]) -> None:
        self.model, self.faces, self.missing, self.fits = model, faces, missing, []

    def reconstruct(self, image: np.ndarray) -> list:
        i = next(k for k, f in enumerate(self.faces) if f.image is image)
        if i in self.missing:
            self.fits.append(None)
            return []
        pts = self.faces[i].landmarks_68 + np.random.default_rng(i).normal(0, 1.5, (68, 2))
        box = np.array([*pts.min(0), *pts.max(0)], np.float32)
        face = FaceLandmarks(box, 1.0, pts.astype(np.float32), None, "ibug68")
        fit = fit_landmarks(self.model, face, image.shape[1::-1])
        self.fits.append(fit)
        return [SimpleNamespace(face=face, fit=fit)]


def test_scores_match_independent_recomputation(model) -> None:
    faces = [_face(model, 10.0, 5.0, 0.0, 1), _face(model, -45.0, -10.0, 8.0, 2),
             _face(model, 75.0, 0.0, -3.0, 3)]
    fake = _FakeReconstructor(model, faces, missing={1})
    rep, _ = evaluate_synthetic(0, model=model, reconstructor=fake, faces=faces,
                                photometric=False)
    pipe, exact, mean_face = rep.methods
    assert pipe.found.tolist() == [True, False, True]  # the miss is counted, not dropped
    nme, geo, vert = [], [], []
    for face, fit in zip(faces, fake.fits, strict=True):
        if fit is None:
            continue
        gt = face.landmarks_68
        w, h = gt.max(0) - gt.min(0)
        nme.append(np.linalg.norm(fit.landmarks_68_2d - gt, axis=1).mean() / np.sqrt(w * h))
        geo.append(np.degrees(Rotation.from_matrix(fit.rotation.T @ face.rotation).magnitude()))
        p = model.vertices(fit.shape_coeffs, fit.expression_coeffs).astype(np.float64)
        g = face.verts_model.astype(np.float64)
        a, b = p - p.mean(0), g - g.mean(0)
        rot, _ = orthogonal_procrustes(a, b)
        vert.append(np.linalg.norm(a @ rot - b, axis=1).mean())
    row = rep.to_dict()["methods"]["facefit pipeline (landmarks)"]
    assert row["found"] == 2 and row["detection_rate"] == pytest.approx(2 / 3)
    # yaw 10 -> bucket 0, yaw 75 -> bucket 2, the 30-60 face has no prediction
    assert row["bucket_nme"][0] == pytest.approx(nme[0], rel=1e-6)
    assert row["bucket_nme"][1] is None
    assert row["bucket_nme"][2] == pytest.approx(nme[1], rel=1e-6)
    assert row["mean_nme"] == pytest.approx(np.mean(nme), rel=1e-6)
    assert row["geodesic_err_deg"] == pytest.approx(np.mean(geo), abs=1e-4)
    assert row["vertex_err_mm_rigid"] == pytest.approx(np.mean(vert), rel=1e-5)
    table = rep.table()
    assert "2/3" in table and "no face found per bucket: [0, 1, 0]" in table
    assert "legend:" in table and "mm rigid = mean vertex error" in table
    from facefit.eval.synthetic import contact_sheet, example_labels

    labels = example_labels(rep)
    assert labels[1] == "no face" and labels[0] == (
        f"NME {100 * nme[0]:.1f}% {vert[0]:.1f}mm")
    plain = contact_sheet(faces, cols=3, side=96)
    labelled = contact_sheet(faces, cols=3, side=96, labels=labels)
    assert plain.shape == labelled.shape == (96, 288, 3)
    assert (plain != labelled).any(axis=2)[80:, 96:192].sum() > 20  # "no face" drawn
    # The upper bound sees every face; the mean face is scored on every face.
    assert exact.found.all() and np.isfinite(mean_face.vert_rigid).all()
    assert np.nanmax(exact.nme) < 0.02 and np.nanmax(exact.geodesic) < 5.0


def test_exact_landmark_fit_beats_mean_face(model) -> None:
    face = _face(model, 20.0, -5.0, 4.0, 7)
    fit = fit_exact_landmarks(model, face)
    pred = model.vertices(fit.shape_coeffs, fit.expression_coeffs)
    err = np.linalg.norm(pred - face.verts_model, axis=1).mean()
    err_mean = np.linalg.norm(model.vertices() - face.verts_model, axis=1).mean()
    assert err < err_mean


def test_cli_with_mediapipe(model, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="facefit")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "synthetic", "--n", "2", "--size", "256", "--out",
                              str(tmp_path), "--quiet", "--no-photometric"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "synthetic.json").read_text())
    assert data["num_faces"] == 2 and "photometric: not available (disabled)" in out
    assert set(data["methods"]) == {"facefit pipeline (landmarks)",
                                    "landmark fit on exact 68 pts", "mean face (no fit)"}
    assert (tmp_path / "synthetic_examples.png").is_file()


def test_mediapipe_finds_a_frontal_render(model) -> None:
    from facefit.reconstruct import Reconstructor

    face = sample_face(model, np.random.default_rng(5), size=256, pose_deg=(0.0, 0.0, 0.0))
    recs = Reconstructor(model, texture_size=0).reconstruct(face.image)
    assert recs, "MediaPipe found no face in a frontal render"
    gt = face.landmarks_68
    w, h = gt.max(0) - gt.min(0)
    nme = np.linalg.norm(recs[0].fit.landmarks_68_2d - gt, axis=1).mean() / np.sqrt(w * h)
    assert nme < 0.06


def test_photometric_subset_rows(model, monkeypatch) -> None:
    from facefit.eval import synthetic

    faces = [_face(model, y, 0.0, 0.0, i) for i, y in enumerate((5.0, 40.0, -70.0))]
    fake = _FakeReconstructor(model, faces, missing=set())
    calls = []

    def refine(m, fit, image):
        calls.append(image)
        return SimpleNamespace(fit=fit)  # identity "refinement"

    monkeypatch.setattr(synthetic, "_photometric", lambda: refine)
    rep, _ = evaluate_synthetic(0, model=model, reconstructor=fake, faces=faces,
                                photometric_n=2)
    rows = rep.to_dict()["methods"]
    assert len(calls) == 2
    same, photo = rows["landmark fit (same 2)"], rows["photometric (first 2)"]
    assert same == photo and photo["num_faces"] == 2
    assert photo["bucket_nme"][2] is None  # the third (yaw -70) face is not in the subset
    assert "2/2" in rep.table()


def test_painted_albedo_follows_the_mesh(model) -> None:
    # The default base albedo is the skin tone with features painted where the mesh has
    # them: the brows darker and the lips redder than the cheek, and no photo pattern.
    alb = base_albedo(model)
    assert alb.shape == (model.num_vertices, 3) and alb.dtype == np.float32
    ids = np.asarray(model.landmark_ids["ibug68"])
    cheek = alb[ids[2]] + 0.0  # on the jaw outline, far from every painted feature
    np.testing.assert_allclose(cheek, SKIN_TONE, atol=1e-6)
    assert alb[ids[19]].sum() < 0.7 * cheek.sum()  # mid-brow
    lip = alb[ids[51]]  # upper lip, centre
    assert lip[0] / lip[1] > cheek[0] / cheek[1]
    with pytest.raises(ValueError, match="not one of"):
        base_albedo(model, "astronaut")


def test_refinement_starts_as_the_reconstructor_starts_it(model) -> None:
    """`refinement_start`: a frontal render, whose landmarks `auto` takes from MediaPipe, is
    refined from the fit of the network's reading of it, as `facefit reconstruct --refine
    photometric` does; without a face, None; a reconstructor without a detector, its fit."""
    from facefit.detect.network import landmark_source, refinement_face
    from facefit.eval.synthetic import pick_reconstruction, refinement_start
    from facefit.fit.face_fit import fit_face
    from facefit.reconstruct import Reconstructor

    face = sample_face(model, np.random.default_rng(5), size=256, pose_deg=(0.0, 0.0, 0.0))
    rec_ = Reconstructor(model, texture_size=0)
    rec = pick_reconstruction(rec_.reconstruct(face.image), face.landmarks_68)
    assert landmark_source(rec.face) == "mediapipe"
    start = refinement_start(model, rec_, face.image, rec)
    want = fit_face(model, refinement_face(rec_.detector, face.image, rec.face),
                    face.image.shape[1::-1])
    np.testing.assert_array_equal(start.shape_coeffs, want.shape_coeffs)
    assert np.abs(start.shape_coeffs - rec.fit.shape_coeffs).max() > 0.01
    assert refinement_start(model, rec_, face.image, None) is None
    assert refinement_start(model, SimpleNamespace(), face.image, rec) is rec.fit
