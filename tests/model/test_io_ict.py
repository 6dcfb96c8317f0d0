"""ICT-FaceKit ``FaceXModel/`` reader: a small synthetic folder in the same layout, malformed
files, and the real model from ``../shared`` (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facefit.model import ModelFileError, load_model
from facefit.model.io_ict import load_ict, read_obj
from facefit.model.morphable_model import MorphableModel

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ict-facekit"

GRID = 10  # vertices per side of the synthetic face sheet (100 vertices, 81 quads)


def _grid() -> tuple[np.ndarray, list[str]]:
    """(100, 3) cm vertices of a bumpy sheet and its quad faces as OBJ 'f' lines (1-based)."""
    u, v = np.meshgrid(np.linspace(-5, 5, GRID), np.linspace(-5, 5, GRID))
    pts = np.column_stack([u.ravel(), v.ravel(), np.cos(u.ravel() / 3) + 0.1 * v.ravel()])
    faces = []
    for i in range(GRID - 1):
        for j in range(GRID - 1):
            a = i * GRID + j + 1
            faces.append(f"f {a}/{a} {a + 1}/{a + 1} {a + GRID + 1}/{a + GRID + 1} "
                         f"{a + GRID}/{a + GRID}")
    return pts, faces


def _obj_text(pts: np.ndarray, faces: list[str]) -> str:
    lines = ["# synthetic ICT-like mesh", "mtllib x.mtl"]
    lines += [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in pts]
    lines += [f"vt {(x + 5) / 10:.6g} {(y + 5) / 10:.6g}" for x, y, _ in pts]
    # First 60 quads are face skin, then one triangle of teeth, the rest back of the head.
    lines += ["usemtl M_Face"] + faces[:60]
    lines += ["usemtl M_Teeth", "f 1/1 2/2 12/12"]
    lines += ["usemtl M_BackHead"] + faces[60:]
    return "\n".join(lines) + "\n"


def make_folder(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A FaceXModel folder: neutral, identity000/001, expressions jawOpen, eyeBlink_L
    (listed) and cheekRaiser_L (not listed). Returns the folder and the vertices written."""
    folder = root / "FaceXModel"
    folder.mkdir(parents=True)
    pts, faces = _grid()
    rng = np.random.default_rng(0)
    written = {"generic_neutral_mesh": pts}
    for stem in ("identity000", "identity001", "jawOpen", "eyeBlink_L", "cheekRaiser_L"):
        written[stem] = pts + rng.normal(0, 0.3, pts.shape)
    for stem, v in written.items():
        (folder / f"{stem}.obj").write_text(_obj_text(v, faces))
    index = {"expressions": ["jawOpen", "eyeBlink_L"], "incompatibilities": [],
             "idx_to_landmark_verts": list(range(10, 78)),
             "idx_to_fitting_verts": [0, 1, 2]}
    (folder / "vertex_indices.json").write_text(json.dumps(index))
    # what the reader sees after the files' 6-digit rounding
    return folder, {k: np.asarray([[float(f"{c:.6g}") for c in row] for row in v])
                    for k, v in written.items()}


def test_synthetic_folder(tmp_path):
    folder, written = make_folder(tmp_path)
    m = load_ict(tmp_path)  # the parent folder is found too
    neutral = written["generic_neutral_mesh"]
    np.testing.assert_allclose(m.neutral, 10 * neutral, rtol=1e-6, atol=1e-4)  # cm -> mm
    assert m.num_identity == 2
    np.testing.assert_allclose(m.identity_basis[:, :, 1],
                               10 * (written["identity001"] - neutral), atol=1e-4)
    assert m.expression_names == ["jawOpen", "eyeBlink_L", "cheekRaiser_L"]
    np.testing.assert_allclose(m.expression_deltas[:, :, 2],
                               10 * (written["cheekRaiser_L"] - neutral), atol=1e-4)
    # 81 quads -> 162 triangles, + 1 triangle; areas preserved by the split.
    assert m.triangles.shape == (163, 3)
    tri = m.neutral[m.triangles].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    quad_area = 0.0
    for i in range(GRID - 1):  # independent: each quad as two triangles along the other diagonal
        for j in range(GRID - 1):
            k = i * GRID + j
            a, b, c, d = m.neutral[[k, k + 1, k + GRID + 1, k + GRID]].astype(np.float64)
            quad_area += 0.5 * np.linalg.norm(np.cross(b - a, d - a))
            quad_area += 0.5 * np.linalg.norm(np.cross(c - b, d - b))
    one = 0.5 * np.linalg.norm(np.cross(m.neutral[1] - m.neutral[0], m.neutral[11] - m.neutral[0]))
    assert abs(area.sum() - quad_area - one) < 0.02 * quad_area
    assert m.materials == ["M_Face", "M_Teeth", "M_BackHead"]
    assert len(m.region_triangles("face")) == 120 and len(m.region_triangles("teeth")) == 1
    np.testing.assert_array_equal(m.regions["teeth"], [0, 1, 11])
    assert set(m.regions["face"]) < set(m.regions["head"])
    np.testing.assert_array_equal(m.landmark_ids["ibug68"], np.arange(10, 78))
    np.testing.assert_array_equal(m.index_sets["idx_to_fitting_verts"], [0, 1, 2])
    np.testing.assert_allclose(m.vertex_uv[15], [(neutral[15, 0] + 5) / 10,
                                                 (neutral[15, 1] + 5) / 10], atol=1e-5)
    # vertices(): identity linear, blendshape weights clipped to [0, 1]
    v = m.vertices(np.array([0.5, 0.0]), np.array([2.0, 0.0, 0.0]))
    np.testing.assert_allclose(v, m.neutral + 0.5 * m.identity_basis[:, :, 0]
                               + m.expression_deltas[:, :, 0], atol=1e-4)


def test_load_model_folder(tmp_path):
    make_folder(tmp_path)
    mm = load_model(tmp_path / "FaceXModel")
    assert isinstance(mm, MorphableModel)
    assert mm.num_shape == 2 and mm.num_expression == 3
    assert mm.kind == "ict"
    np.testing.assert_array_equal(mm.extras["region_teeth"], [0, 1, 11])
    assert len(load_ict(tmp_path, num_identity=1).identity_basis[0, 0]) == 1


def test_malformed_vertex_line_names_line(tmp_path):
    folder, _ = make_folder(tmp_path)
    p = folder / "jawOpen.obj"
    lines = p.read_text().splitlines()
    lines[5] = "v 1.0 oops 2.0"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelFileError) as exc:
        load_ict(folder)
    assert "jawOpen.obj" in str(exc.value) and "line 6" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_malformed_face_line_and_short_vertex(tmp_path):
    folder, _ = make_folder(tmp_path)
    p = folder / "generic_neutral_mesh.obj"
    text = p.read_text().replace("usemtl M_Teeth\nf 1/1 2/2 12/12", "usemtl M_Teeth\nf 1/1 2/2")
    p.write_text(text)
    number = text.splitlines().index("f 1/1 2/2") + 1
    with pytest.raises(ModelFileError, match=f"line {number}: malformed 'f'"):
        read_obj(p)
    p.write_text(text.replace("f 1/1 2/2\n", "f 1/1 2/2 12/12\n"))
    q = folder / "identity001.obj"
    lines = q.read_text().splitlines()
    lines[2] = "v 1.0 2.0"
    q.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelFileError, match="identity001.obj: line 3"):
        load_ict(folder)


def test_incomplete_folders(tmp_path):
    folder, _ = make_folder(tmp_path)
    (folder / "eyeBlink_L.obj").unlink()
    with pytest.raises(ModelFileError, match="eyeBlink_L.obj: file not found"):
        load_ict(folder)
    (folder / "vertex_indices.json").unlink()
    with pytest.raises(ModelFileError, match="vertex_indices.json: file not found"):
        load_model(folder)
    with pytest.raises(ModelFileError, match="generic_neutral_mesh.obj: file not found"):
        load_model((tmp_path / "empty").mkdir() or tmp_path / "empty")
    # fewer vertices in a mode than in the neutral mesh
    folder2, _ = make_folder(tmp_path / "b")
    q = folder2 / "identity000.obj"
    lines = q.read_text().splitlines()
    q.write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # drop the first 'v' line
    with pytest.raises(ModelFileError, match="99 vertices, the neutral mesh has 100"):
        load_ict(folder2)


@pytest.mark.skipif(not (SHARED / "modes.npz").is_file(), reason="../shared ICT data absent")
def test_real_ict_model(tmp_path):
    """The real neutral mesh and index file with two identity modes and the expression files
    (only jawOpen moved; the others are copies of the neutral mesh to keep the test fast)."""
    src = SHARED / "FaceXModel"
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    neutral_text = (src / "generic_neutral_mesh.obj").read_text()
    (folder / "generic_neutral_mesh.obj").write_text(neutral_text)
    (folder / "vertex_indices.json").write_text((src / "vertex_indices.json").read_text())
    names = json.loads((src / "vertex_indices.json").read_text())["expressions"]
    with np.load(SHARED / "modes.npz") as z:
        modes = {k: z[k] for k in ("identity000", "identity001", "jawOpen")}
    lines = neutral_text.splitlines()
    vidx = [i for i, line in enumerate(lines) if line.startswith("v ")]
    base = np.array([lines[i].split()[1:4] for i in vidx], np.float64)
    for stem in ["identity000", "identity001", *names]:
        if stem in modes:
            out = list(lines)
            for i, (x, y, z) in zip(vidx, base + modes[stem], strict=True):
                out[i] = f"v {x:.6g} {y:.6g} {z:.6g}"
            (folder / f"{stem}.obj").write_text("\n".join(out) + "\n")
        else:
            (folder / f"{stem}.obj").symlink_to(src / "generic_neutral_mesh.obj")
    m = load_ict(folder)
    assert m.num_vertices == 26719 and m.num_identity == 2 and m.num_expressions == 53
    lo, hi = m.neutral.min(0), m.neutral.max(0)
    # a whole head in mm: about 25 cm wide, 34 cm tall (cm would be 10x smaller)
    assert 200 < hi[0] - lo[0] < 300 and 280 < hi[1] - lo[1] < 400
    lm = m.landmark_ids["ibug68"]
    assert len(lm) == 68 and np.isin(lm, m.regions["face"]).all()
    eye_dist = np.linalg.norm(m.neutral[lm[36]] - m.neutral[lm[45]])
    assert 80 < eye_dist < 110  # outer eye corners, mm
    assert m.neutral[lm[30], 2] > m.neutral[lm[36], 2]  # nose tip in front of the eyes (z out)
    assert m.neutral[lm[36], 0] < 0 < m.neutral[lm[45], 0]  # subject's right eye at -x
    jaw = m.expression_names.index("jawOpen")
    np.testing.assert_allclose(m.expression_deltas[:, :, jaw], 10 * modes["jawOpen"], atol=1e-3)
    assert set(m.regions) == {"face", "head", "eyes", "eye_shells", "teeth"}
