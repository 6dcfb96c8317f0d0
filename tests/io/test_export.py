import json
import struct

import numpy as np
import pytest
import trimesh

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera, rotation_from_euler
from facefit.fit.result import FitResult
from facefit.io import export
from facefit.model.morphable_model import MorphableModel
from facefit.reconstruct import Reconstruction


def _mesh(n=9):
    """A dome grid (V = n^2) with UVs; vertex coordinates all distinct."""
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    verts = np.stack([(u - 0.5) * 80, (v - 0.5) * 90, 30 - 20 * ((u - 0.5) ** 2 + (v - 0.5) ** 2)],
                     -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + 1, a + n + 1], 1), np.stack([a, a + n + 1, a + n], 1)])
    uv = np.stack([u.ravel(), v.ravel()], 1).astype(np.float32)
    return verts, tris.astype(np.int32), uv


def _texture(size=32):
    """Red top half (v > 0.5, rows 0..15), blue bottom half."""
    tex = np.zeros((size, size, 3), np.uint8)
    tex[: size // 2, :, 0] = 255
    tex[size // 2:, :, 2] = 255
    return tex


def test_obj_round_trip_keeps_vertex_order(tmp_path):
    verts, tris, uv = _mesh()
    perm = np.random.default_rng(0).permutation(len(verts))  # scramble: order must survive
    verts, uv = verts[perm], uv[perm]
    tris = np.argsort(perm)[tris]
    path = export.write_obj(tmp_path / "m.obj", verts, tris, uv, _texture(), verts * 0 + [0, 0, 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mtl", "m.obj", "m.png"]
    assert "map_Kd m.png" in (tmp_path / "m.mtl").read_text()
    mesh = trimesh.load(path, process=False, maintain_order=True)
    assert len(mesh.vertices) == len(verts) and len(mesh.faces) == len(tris)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, tris)
    np.testing.assert_allclose(mesh.visual.uv, uv, atol=1e-5)
    lines = path.read_text().splitlines()
    v_lines = [ln for ln in lines if ln.startswith("v ")]
    np.testing.assert_allclose(np.array([ln.split()[1:] for ln in v_lines], float), verts,
                               atol=1e-5)
    a, b, c = tris[0] + 1
    first_face = next(ln for ln in lines if ln.startswith("f "))
    assert first_face == f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}"


def _glb_texcoords(path):
    """TEXCOORD_0 of the first primitive, read straight from the GLB chunks."""
    data = path.read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + json_len])
    binary = data[20 + json_len + 8:]
    acc = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]
    view = gltf["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(binary, "<f4", acc["count"] * 2, start).reshape(-1, 2)


def test_glb_round_trip_keeps_vertex_order_and_texture_orientation(tmp_path):
    verts, tris, uv = _mesh()
    tex = _texture()
    path = export.write_glb(tmp_path / "m.glb", verts, tris, uv, tex)
    scene = trimesh.load(path, process=False)
    (mesh,) = scene.geometry.values()
    assert len(mesh.vertices) == len(verts) and len(mesh.faces) == len(tris)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, tris)
    np.testing.assert_allclose(mesh.visual.uv, uv, atol=1e-6)
    # glTF's texture coordinates are v down from the image's first row: 1 - v.
    np.testing.assert_allclose(_glb_texcoords(path), np.c_[uv[:, 0], 1 - uv[:, 1]], atol=1e-6)
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(image, tex)  # row 0 (red) is the top, v = 1


def test_ply_colours_round_trip(tmp_path):
    verts, tris, _ = _mesh()
    colors = np.random.default_rng(1).integers(0, 256, (len(verts), 3), dtype=np.uint8)
    path = export.write_ply(tmp_path / "m.ply", verts, tris, colors)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert b"property uchar red\nproperty uchar green\nproperty uchar blue\n" in path.read_bytes()
    mesh = trimesh.load(path, process=False)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, tris)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], colors)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    verts, tris, uv = _mesh()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_obj_faces", boom)  # fails after the vertices are written
    with pytest.raises(RuntimeError):
        export.write_obj(tmp_path / "m.obj", verts, tris, uv)

    class Unreadable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("read error")

    with pytest.raises(RuntimeError):  # the first array is already in the archive
        export.write_npz(tmp_path / "m.npz", first=np.arange(10), second=Unreadable())
    assert list(tmp_path.iterdir()) == []  # neither the final names nor the temporary ones


def _reconstruction(model, k):
    verts = model.mean
    rot = rotation_from_euler(10.0 * k, 5.0, 0.0)
    vp = np.c_[verts[:, 0] * 2 + 100, -verts[:, 1] * 2 + 100, -verts[:, 2] * 2].astype(np.float32)
    lm = vp[:68, :2] if len(vp) >= 68 else np.zeros((68, 2), np.float32)
    none = np.zeros(0, np.float32)
    fit = FitResult(none, none, rot, np.array([100.0, 100.0]), 2.0, Camera(), 10.0 * k, 5.0, 0.0,
                    vp, lm, np.c_[lm, np.zeros(68)], lm, 1.234567, 68, 3)
    face = FaceLandmarks(np.array([10, 20, 190, 200], np.float32), 0.98, lm, None, "ibug68")
    colors = np.full((len(verts), 3), 128, np.uint8)
    return Reconstruction(face, fit, _texture(), colors, {"detect": 1.0, "fit": 2.0})


def test_export_reconstructions_writes_every_format_and_the_json(tmp_path):
    verts, tris, uv = _mesh(10)  # 100 vertices
    nv = len(verts)
    model = MorphableModel("dome", verts, np.zeros((nv, 3, 0), np.float32),
                           np.zeros((nv, 3, 0), np.float32), tris, uv, {},
                           np.arange(nv), licence="test only")
    image = np.full((220, 210, 3), 90, np.uint8)
    recons = [_reconstruction(model, 0), _reconstruction(model, 1)]
    path = export.export_reconstructions(tmp_path / "out", "photos/img.jpg", image, recons, model,
                                         timings_ms_extra={"load": 3.0})
    assert path == tmp_path / "out" / "img.json"
    summary = json.loads(path.read_text())
    assert summary["image"] == "photos/img.jpg"
    assert (summary["width"], summary["height"]) == (210, 220)
    assert summary["model"] == {"name": "dome", "licence": "test only"}
    assert len(summary["faces"]) == 2
    face = summary["faces"][1]
    assert set(face) == {"box", "score", "pose", "landmarks_68_2d", "landmarks_68_2d_contour",
                         "landmarks_68_3d", "shape_coeffs", "expression_coeffs", "residual_px",
                         "files", "timings_ms", "landmark_source"}
    assert set(face["pose"]) == {"yaw_deg", "pitch_deg", "roll_deg", "rotation", "translation",
                                 "scale", "camera"}
    assert face["pose"]["camera"] == {"kind": "scaled_orthographic", "focal_px": None,
                                      "principal_point_px": None}
    assert face["pose"]["yaw_deg"] == 10.0 and face["residual_px"] == 1.235
    assert np.shape(face["pose"]["rotation"]) == (3, 3)
    assert np.shape(face["landmarks_68_2d"]) == (68, 2)
    assert np.shape(face["landmarks_68_3d"]) == (68, 3)
    assert set(face["timings_ms"]) == {"detect", "fit", "load", "export"}
    assert face["files"] == {"obj": "img_face1.obj", "ply": "img_face1.ply", "glb": "img_face1.glb",
                             "npz": "img_face1.npz", "overlay": "img_overlay.jpg"}
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(["img.json", "img.html", "img_overlay.jpg"] + [
        f"img_face{k}.{e}" for k in (0, 1) for e in ("obj", "mtl", "png", "ply", "glb", "npz")])
    npz = np.load(tmp_path / "out" / "img_face1.npz")
    assert set(npz.files) == {"shape_coeffs", "expression_coeffs", "rotation", "translation",
                              "scale", "vertices_mm", "landmarks_68_2d", "landmarks_68_3d",
                              "landmarks_68_2d_contour", "schema_version", "vertices_frame",
                              "camera_kind", "focal_px", "principal_point_px"}
    np.testing.assert_allclose(npz["vertices_mm"], verts @ recons[1].fit.rotation.T, atol=1e-4)
    from PIL import Image

    ov = np.asarray(Image.open(tmp_path / "out" / "img_overlay.jpg")).astype(int)
    # one overlay for the image: both faces drawn (centred at 100 and 110), background kept
    assert ov.shape == (220, 210, 3) and (abs(ov[5, 5] - 90) <= 2).all()
    assert (abs(ov[100, 100] - 90) > 20).any()


def test_export_npz_fields_and_no_face_json(tmp_path):
    verts, tris, uv = _mesh(10)
    nv = len(verts)
    model = MorphableModel("dome", verts, np.zeros((nv, 3, 0), np.float32),
                           np.zeros((nv, 3, 0), np.float32), tris, uv, {}, np.arange(nv))
    image = np.full((220, 210, 3), 90, np.uint8)
    export.export_reconstructions(tmp_path, "a.png", image, [_reconstruction(model, 0)], model,
                                  ("npz",), name="custom", npz_fields=("verts_px", "triangles"))
    with np.load(tmp_path / "custom_face0.npz") as z:
        assert set(z.files) == {"verts_px", "triangles", *export.NPZ_ALWAYS}
        np.testing.assert_array_equal(z["triangles"], tris)
    with pytest.raises(ValueError, match="unknown npz fields"):
        export.npz_arrays(model, _reconstruction(model, 0).fit, verts, ("bogus",))
    path = export.export_reconstructions(tmp_path, "dir/none.png", image, [], model,
                                         ("json", "glb", "overlay"))
    assert json.loads(path.read_text())["faces"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom_face0.npz", "none.json"]


def test_glb_jpeg_texture_and_model_buffers_cached(tmp_path):
    verts, tris, uv = _mesh()
    tex = _texture()
    a = export.write_glb(tmp_path / "a.glb", verts, tris, uv, tex, image_format="jpeg")
    b = export.write_glb(tmp_path / "b.glb", verts + 1, tris, uv, tex, image_format="jpeg")
    (mesh,) = trimesh.load(b, process=False).geometry.values()
    np.testing.assert_allclose(mesh.vertices, verts + 1, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, tris)
    np.testing.assert_allclose(_glb_texcoords(a), np.c_[uv[:, 0], 1 - uv[:, 1]], atol=1e-6)
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).astype(int)
    # JPEG: lossy (chroma blurred at the red/blue edge), but red on top, blue below
    assert np.abs(image[:12] - tex[:12]).max() < 12 and np.abs(image[20:] - tex[20:]).max() < 12
    with pytest.raises(ValueError):
        export.write_glb(tmp_path / "c.glb", verts, tris, uv, tex, image_format="gif")


def test_obj_rows_match_a_per_vertex_formatter(tmp_path):
    verts, tris, uv = _mesh(5)
    normals = np.tile(np.float32([0, 0, 1]), (len(verts), 1))
    for _ in range(2):  # the second write uses the cached UV and face rows
        text = export.write_obj(tmp_path / "m.obj", verts, tris, uv, None, normals).read_text()
    expect = "".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts.astype(float))
    expect += "".join(f"vt {u:.6f} {v:.6f}\n" for u, v in uv.astype(float))
    expect += "".join(f"vn {a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in normals.astype(float))
    expect += "".join("f " + " ".join(f"{i + 1}/{i + 1}/{i + 1}" for i in t) + "\n" for t in tris)
    assert text == "# facefit\n" + expect


def test_export_rejects_unknown_formats(tmp_path):
    verts, tris, uv = _mesh(3)
    model = MorphableModel("m", verts, np.zeros((9, 3, 0), np.float32),
                           np.zeros((9, 3, 0), np.float32), tris, uv, {}, np.arange(9))
    with pytest.raises(ValueError):
        export.export_reconstructions(tmp_path, "a.png", np.zeros((4, 4, 3), np.uint8), [], model,
                                      formats=("obj", "fbx"))


def test_overlay_of_a_large_photo_is_drawn_shrunk(tmp_path):
    verts, tris, uv = _mesh(10)
    nv = len(verts)
    model = MorphableModel("dome", verts, np.zeros((nv, 3, 0), np.float32),
                           np.zeros((nv, 3, 0), np.float32), tris, uv, {}, np.arange(nv))
    image = np.full((220, 210, 3), 90, np.uint8)
    fit = _reconstruction(model, 0).fit
    full = export.overlay_faces(image, model, [fit], max_side=1000)
    half = export.overlay_faces(image, model, [fit], max_side=110)
    assert full.shape == (220, 210, 3) and half.shape == (110, 105, 3)
    drawn_full = (np.abs(full.astype(int) - 90).sum(2) > 30).mean()
    drawn_half = (np.abs(half.astype(int) - 90).sum(2) > 30).mean()
    assert drawn_full > 0.1 and abs(drawn_half - drawn_full) < 0.03  # same picture, smaller
