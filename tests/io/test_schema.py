"""facefit's versioned output schema (`facefit.io.schemas`): the image JSON, the video JSON
lines and the NPZ carry ``schema_version``; the JSON Schema files accept what the writers
write and refuse what they must not (old names, a missing version, an unknown camera)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema")

from facefit.detect.base import FaceLandmarks  # noqa: E402
from facefit.fit.camera import Camera, rotation_from_euler  # noqa: E402
from facefit.fit.result import FitResult  # noqa: E402
from facefit.io import export  # noqa: E402
from facefit.io.records import face_record, pose_record, read_video_jsonl  # noqa: E402
from facefit.io.schemas import (  # noqa: E402
    SCHEMA_VERSION,
    SCHEMAS,
    load_schema,
    schema_path,
    validator,
)
from facefit.model.morphable_model import MorphableModel  # noqa: E402
from facefit.reconstruct import Reconstruction  # noqa: E402


def _errors(name: str, instance: object) -> list[str]:
    return [e.message for e in validator(name).iter_errors(instance)]


def _model(n: int = 10) -> MorphableModel:
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    verts = np.stack([(u - 0.5) * 80, (v - 0.5) * 90, 30 - 20 * ((u - 0.5) ** 2 + (v - 0.5) ** 2)],
                     -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    uv = np.stack([u.ravel(), v.ravel()], 1).astype(np.float32)
    nv = len(verts)
    return MorphableModel("dome", verts, np.zeros((nv, 3, 2), np.float32),
                          np.zeros((nv, 3, 1), np.float32), tris.astype(np.int32), uv,
                          {"ibug68": np.arange(68)}, np.arange(nv), licence="test only")


def _reconstruction(model: MorphableModel, camera: Camera) -> Reconstruction:
    rot = rotation_from_euler(12.0, -4.0, 3.0)
    verts = model.mean @ rot.T
    vp = np.c_[verts[:, 0] * 2 + 100, -verts[:, 1] * 2 + 100, -verts[:, 2] * 2].astype(np.float32)
    lm = vp[:68, :2]
    contour = lm + 1.5  # differs from lm, so the NPZ check below tells them apart
    t = np.array([100.0, 100.0]) if camera.kind != "perspective" else np.array([1.0, 2.0, -600])
    fit = FitResult(np.array([0.5, -1.0], np.float32), np.array([0.25], np.float32), rot, t,
                    2.0, camera, 12.0, -4.0, 3.0, vp, lm, np.c_[lm, np.zeros(68)], contour,
                    0.75, 68, 3)
    face = FaceLandmarks(np.array([10, 20, 190, 200], np.float32), 0.9, lm, None, "ibug68")
    return Reconstruction(face, fit, None, None, {"detect": 1.0, "fit": 2.0})


CAMERAS = [Camera(), Camera("perspective", 1234.5, (105.0, 110.0))]


def test_schema_files_are_valid_draft_2020_12_and_packaged() -> None:
    for name in SCHEMAS:
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema_path(name).parent.name == "schemas"
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert "io/schemas/*.json" in pyproject  # shipped in the wheel beside the code


@pytest.mark.parametrize("camera", CAMERAS, ids=["scaled_orthographic", "perspective"])
def test_image_json_and_npz_follow_the_schema(tmp_path: Path, camera: Camera) -> None:
    model = _model()
    rec = _reconstruction(model, camera)
    image = np.full((220, 210, 3), 90, np.uint8)
    path = export.export_reconstructions(tmp_path, "a.png", image, [rec, rec], model,
                                         ("json", "npz"))
    summary = json.loads(path.read_text())
    assert _errors("image", summary) == []
    assert summary["schema_version"] == SCHEMA_VERSION
    cam = summary["faces"][0]["pose"]["camera"]
    assert cam["kind"] == camera.kind
    with np.load(tmp_path / "a_face1.npz") as z:
        assert str(z["schema_version"]) == SCHEMA_VERSION
        assert str(z["vertices_frame"]) == export.VERTICES_FRAME == "view_mm"
        assert str(z["camera_kind"]) == camera.kind
        np.testing.assert_array_equal(z["landmarks_68_2d_contour"],
                                      rec.fit.landmarks_68_2d_contour)
        # vertices in the view frame, model origin at 0: the model's vertices rotated by R
        np.testing.assert_allclose(z["vertices_mm"], model.mean @ rec.fit.rotation.T, atol=1e-4)
        if camera.kind == "perspective":
            assert float(z["focal_px"]) == cam["focal_px"] == 1234.5
            np.testing.assert_array_equal(z["principal_point_px"], [105.0, 110.0])
        else:
            assert np.isnan(z["focal_px"]) and np.isnan(z["principal_point_px"]).all()
            assert cam["focal_px"] is None and cam["principal_point_px"] is None


def test_image_schema_refuses_old_or_broken_summaries(tmp_path: Path) -> None:
    model = _model()
    path = export.export_reconstructions(tmp_path, "a.png", np.zeros((50, 60, 3), np.uint8),
                                         [_reconstruction(model, Camera())], model, ("json",))
    good = json.loads(path.read_text())
    assert _errors("image", good) == []
    old = copy.deepcopy(good)
    del old["schema_version"]
    face = old["faces"][0]
    face["fit_residual_px"] = face.pop("residual_px")  # the name before schema 1.0
    errors = " ".join(_errors("image", old))
    assert "'schema_version' is a required property" in errors
    assert "'residual_px' is a required property" in errors and "fit_residual_px" in errors
    bad = copy.deepcopy(good)
    bad["faces"][0]["pose"]["camera"]["kind"] = "orthographic"  # the CLI's old spelling
    assert any("orthographic" in e for e in _errors("image", bad))
    bad = copy.deepcopy(good)
    bad["faces"][0]["landmarks_68_2d"] = bad["faces"][0]["landmarks_68_2d"][:67]
    assert _errors("image", bad)
    bad = copy.deepcopy(good)
    bad["schema_version"] = "2.0"  # a major version this reader does not know
    assert _errors("image", bad)


def test_one_face_shape_in_image_json_and_video_lines(tmp_path: Path) -> None:
    """The video's face record is the image's with the same pose keys, score and camera."""
    model = _model()
    path = export.export_reconstructions(tmp_path, "a.png", np.zeros((50, 60, 3), np.uint8),
                                         [_reconstruction(model, Camera())], model, ("json",))
    image_face = json.loads(path.read_text())["faces"][0]
    rot = rotation_from_euler(12.0, -4.0, 3.0)
    video_face = face_record([1, 2, 3, 4], 0.5, pose_record(rot, 2.0, [100.0, 100.0]),
                             np.zeros((68, 2)), [0.25], 0.75, redetected=False,
                             raw_expression_coeffs=[0.3])
    assert image_face["pose"] == video_face["pose"]  # same keys, same numbers
    shared = set(image_face) & set(video_face)
    assert shared == {"box", "score", "pose", "landmarks_68_2d", "expression_coeffs",
                      "residual_px"}
    line = {"frame": 3, "time_s": 0.12, "faces": [video_face, video_face]}  # two faces
    assert _errors("video", line) == []
    assert _errors("video", {"frame": 3, "time_s": 0.12, "faces": []}) == []
    old = {"frame": 3, "time_s": 0.12, "face": True, "presence": 0.5}  # the pre-1.0 line
    assert _errors("video", old)


class _Tracker:
    """Replays fixed detections (None: no face in that frame)."""

    def __init__(self, faces: list[FaceLandmarks | None]) -> None:
        self.faces, self.detections = iter(faces), 0

    def update(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        face = next(self.faces)
        self.detections += face is not None
        return face, face is not None


def test_video_lines_written_by_the_pipeline_follow_the_schema(tmp_path: Path) -> None:
    from facefit.model import load_default_model
    from facefit.video.pipeline import process_frames

    try:
        model = load_default_model()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"default model unavailable: {exc}")
    lm = model.vertices(np.zeros(model.num_shape, np.float32),
                        ids=np.asarray(model.landmark_ids["ibug68"]))
    pts = (lm[:, :2] * [0.8, -0.8] + [80.0, 70.0]).astype(np.float32)
    box = np.r_[pts.min(0), pts.max(0)].astype(np.float32)
    face = FaceLandmarks(box, 0.875, pts, None, "ibug68")
    frames = (np.zeros((140, 160, 3), np.uint8) for _ in range(3))
    out = tmp_path / "clip.jsonl"
    stats = process_frames(frames, 25.0, model, np.zeros(model.num_shape, np.float32),
                           _Tracker([face, None, face]), jsonl_path=out)
    assert stats.frames == 3 and stats.faces == 2
    head, records = read_video_jsonl(out)
    assert _errors("video_header", head) == []
    assert head["schema_version"] == SCHEMA_VERSION and (head["width"], head["height"]) == (160,
                                                                                           140)
    assert head["model"] == {"name": model.name, "licence": model.licence}
    for r in records:
        assert _errors("video", r) == []
    assert [len(r["faces"]) for r in records] == [1, 0, 1]
    f = records[0]["faces"][0]
    assert f["score"] == 0.875 and f["pose"]["camera"]["kind"] == "scaled_orthographic"
    # the fitted inner landmarks land on the synthetic ones (the jaw follows the contour)
    assert np.abs(np.array(f["landmarks_68_2d"])[17:] - pts[17:]).mean() < 1.5
    assert f["pose"]["scale"] == pytest.approx(0.8, rel=0.1)
