"""Textures on the ICT head's UV layout (per-corner UVs packed from ICT's tiles) and
anti-aliased sampling."""

import numpy as np
import pytest

from facefit.model.ict import load_compact_ict
from facefit.model.morphable_model import MorphableModel
from facefit.texture.atlas import (
    BACK_STRIP,
    FACE_SCALE,
    ICT_HEAD_UV,
    NEUTRAL_COLOURS,
    pack_ict_tiles,
    texture_layout,
)
from facefit.texture.extract import extract_texture, uv_texels

SIZE = 256
SCALE = 1.6  # pixels per mm
H = W = 560


@pytest.fixture(scope="module")
def ict():
    return load_compact_ict()


def _frontal(model: MorphableModel) -> np.ndarray:
    """The mean head seen from the front: x right, y down, depth = -z (pixels)."""
    m = model.mean.astype(np.float64)
    return np.stack([W / 2 + SCALE * m[:, 0], H / 2 + 40 - SCALE * m[:, 1],
                     -SCALE * m[:, 2]], 1).astype(np.float32)


def _pattern(x, y):
    """A smooth colour pattern (linear in x and y, so blurs and bilinear samples keep it)."""
    return np.stack([40 + 0.35 * x, 30 + 0.35 * y, 220 - 0.2 * x - 0.15 * y], -1)


def _image():
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.clip(np.round(_pattern(x, y)), 0, 255).astype(np.uint8)


def _face_corner_uv(model):
    """(V, 2) each face vertex's UV from the stored ICT corners (packed as documented:
    the face tile scaled by FACE_SCALE into the top-left), NaN elsewhere."""
    with np.load(ICT_HEAD_UV) as z:
        mats = z["materials"][z["material"]]
        face = mats == "M_Face"
        out = np.full((model.num_vertices, 2), np.nan)
        uv = z["uv"][z["triangle_uv"][face]].reshape(-1, 2) * FACE_SCALE + [0, 1 - FACE_SCALE]
        out[z["triangles"][face].reshape(-1)] = uv
    return out


def _texture_at(texture, uv):
    size = texture.shape[0]
    j = np.clip(np.floor(uv[:, 0] * size).astype(int), 0, size - 1)
    i = np.clip(np.floor((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
    return texture[i, j].astype(np.float64)


def test_ict_layout_keeps_seams_and_fills_the_square(ict):
    layout = texture_layout(ict)
    tri = np.asarray(ict.triangles)
    # every corner's UV belongs to that corner's vertex (the split mesh is the same mesh)
    np.testing.assert_array_equal(layout.vertex_ids[layout.triangle_uv], tri)
    assert not layout.per_vertex and len(layout.uv) > ict.num_vertices  # seams split
    assert layout.uv.min() >= 0 and layout.uv.max() <= 1
    a, b, c = (layout.uv[layout.triangle_uv[:, k]].astype(np.float64) for k in range(3))
    area = 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    face = layout.sampled
    assert (area[face] > 0).all()  # no fold-overs on the face
    with np.load(ICT_HEAD_UV) as z:  # the face tile's area, scaled as documented
        f = z["materials"][z["material"]] == "M_Face"
        t = z["uv"][z["triangle_uv"][f]].astype(np.float64)
        raw = 0.5 * np.abs((t[:, 1] - t[:, 0])[:, 0] * (t[:, 2] - t[:, 0])[:, 1]
                           - (t[:, 1] - t[:, 0])[:, 1] * (t[:, 2] - t[:, 0])[:, 0]).sum()
    assert area[face].sum() == pytest.approx(raw * FACE_SCALE**2, rel=1e-4)
    assert area[face].sum() > 0.6
    # the back of the head lies in its strip, apart from the face
    assert (layout.uv[layout.triangle_uv[~face]][..., 0] >= BACK_STRIP).all()
    # the split mesh carries per-vertex data along
    verts, tris, uv = layout.mesh(ict.mean, tri)
    np.testing.assert_array_equal(verts[tris], ict.mean[tri])


def test_ict_texture_is_sampled_from_the_photo(ict):
    verts = _frontal(ict)
    image = _image()
    texture, vcol = extract_texture(ict, verts, image, size=SIZE)
    texels = uv_texels(ict, SIZE)
    face = texels.index[texels.sampled]
    flat = texture.reshape(-1, 3).astype(np.float64)
    # not a flat fill: the face texels vary as much as the pattern under the face
    assert flat[face].std(0).min() > 8
    # face landmarks (not the jaw line): the texel at each vertex's UV shows the photo there
    ids = np.asarray(ict.landmark_ids["ibug68"])[17:]
    uv = _face_corner_uv(ict)[ids]
    assert np.isfinite(uv).all()
    expect = _pattern(verts[ids, 0].astype(np.float64), verts[ids, 1].astype(np.float64))
    err = np.abs(_texture_at(texture, uv) - expect)
    assert np.median(err) < 3 and np.percentile(err, 90) < 10, err.max(1)
    err_v = np.abs(vcol[ids].astype(np.float64) - expect)
    assert np.median(err_v) < 3
    # the back of the head is filled, not sampled: smooth, and no texel copies the photo's
    # extreme colours (the pattern's corner values)
    back = texels.index[~texels.sampled]
    assert flat[back].std(0).max() < flat[face].std(0).min()


def test_ict_flat_texture_fails_the_check(ict):
    """The per-vertex UVs (seams folded) gave a flat texture: that layout fails the test's
    measure, so the measure can fail."""
    folded = MorphableModel(
        "folded", ict.mean, ict.shape_basis[..., :0], ict.expression_basis[..., :0],
        ict.triangles, np.clip(ict.uv, 0, 1), dict(ict.landmark_ids), ict.mirror_ids)
    texture, _ = extract_texture(folded, _frontal(folded), _image(), size=SIZE)
    ids = np.asarray(ict.landmark_ids["ibug68"])[17:]
    verts = _frontal(ict)
    expect = _pattern(verts[ids, 0].astype(np.float64), verts[ids, 1].astype(np.float64))
    err = np.abs(_texture_at(texture, _face_corner_uv(ict)[ids]) - expect)
    assert np.median(err) > 3


def test_fixed_colour_materials_get_their_cells():
    """Eyes and teeth of a full ICT head are not sampled: their corners sit in a cell of
    their neutral colour, and extract_texture paints it."""
    pts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 0], [20, 0, 0], [20, 10, 0],
                    [0, 0, 5], [3, 0, 5], [0, 3, 5]], np.float32)
    tri = np.array([[0, 1, 2], [1, 3, 2], [1, 4, 3], [6, 7, 8]])
    uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9], [0.9, 0.9], [1.9, 0.1], [1.9, 0.9],
                   [1.5, 0.5], [0.2, 0.2], [0.8, 0.2], [0.2, 0.8]], np.float32)
    corner = np.array([[0, 1, 2], [1, 3, 2], [6, 4, 5], [7, 8, 9]])  # vertex 1: seam
    mats = np.array(["M_Face", "M_Face", "M_BackHead", "M_IrisLeft"])
    layout = pack_ict_tiles(tri, uv, corner, mats, len(pts))
    np.testing.assert_array_equal(layout.vertex_ids[layout.triangle_uv], tri)
    assert layout.fixed.tolist() == [False, False, False, True]
    assert layout.sampled.tolist() == [True, True, False, False]
    assert len(layout.cells) == 1 and layout.cells[0][1] == NEUTRAL_COLOURS["M_IrisLeft"]
    (u0, v0, u1, v1), _ = layout.cells[0]
    iris = layout.uv[layout.triangle_uv[3]]
    assert ((iris[:, 0] > u0) & (iris[:, 0] < u1) & (iris[:, 1] > v0) & (iris[:, 1] < v1)).all()
    np.testing.assert_allclose(layout.uv[layout.triangle_uv[0, 0]],
                               [0.1 * FACE_SCALE, 1 - FACE_SCALE + 0.1 * FACE_SCALE], atol=1e-6)
    # vertex 1 has two UVs: one in the face tile, one at the start of the back strip
    assert sorted(np.round(layout.uv[layout.vertex_ids == 1][:, 0], 4)) == pytest.approx(
        [0.9 * FACE_SCALE, BACK_STRIP + 0.5 * (1 - BACK_STRIP)], abs=1e-4)


def test_fine_detail_is_prefiltered_to_the_texel_footprint():
    """A one-pixel checkerboard under texels of about five pixels: point samples would be
    0 or 255 (aliasing); pre-filtered samples are its mean."""
    from facefit.model import load_default_model

    model = load_default_model()
    m = model.mean.astype(np.float64)
    s = 4.0
    verts = np.stack([450 + s * m[:, 0], 450 - s * m[:, 1], -s * m[:, 2]], 1).astype(np.float32)
    y, x = np.mgrid[0:900, 0:900]
    image = np.repeat((((x + y) % 2) * 255).astype(np.uint8)[..., None], 3, -1)
    texture, _ = extract_texture(model, verts, image, size=128)
    texels = uv_texels(model, 128)
    values = texture.reshape(-1, 3)[texels.index].astype(np.float64)
    centre = np.percentile(np.abs(values - 127.5), 90)
    assert centre < 25, centre


def test_ict_exports_split_the_mesh_at_uv_seams(ict, tmp_path):
    """OBJ and GLB carry the packed per-corner UVs: vertices split at the seams, the same
    surface, the same texture; the GLB passes the Khronos validator where it is installed."""
    import trimesh

    from facefit.detect.base import FaceLandmarks
    from facefit.fit.camera import Camera, rotation_from_euler
    from facefit.fit.result import FitResult
    from facefit.io.export import export_reconstructions, export_vertices
    from facefit.reconstruct import Reconstruction

    vp = _frontal(ict)
    image = _image()
    texture, colours = extract_texture(ict, vp, image, size=SIZE)
    lm = vp[np.asarray(ict.landmark_ids["ibug68"]), :2]
    fit = FitResult(np.zeros(ict.num_shape, np.float32),
                    np.zeros(ict.num_expression, np.float32),
                    rotation_from_euler(0.0, 0.0, 0.0), np.array([W / 2, H / 2]),
                    SCALE, Camera(), 0.0, 0.0, 0.0, vp, lm, np.c_[lm, np.zeros(68)], lm, 1.0,
                    68, 3)
    face = FaceLandmarks(np.array([0, 0, W, H], np.float32), 0.9, lm, None, "ibug68")
    rec = Reconstruction(face, fit, texture, colours, {"detect": 1.0, "fit": 1.0})
    export_reconstructions(tmp_path, "p.png", image, [rec], ict, formats=("glb", "obj"))
    layout = texture_layout(ict)
    verts = export_vertices(ict, fit)
    scene = trimesh.load(tmp_path / "p_face0.glb", process=False)
    (mesh,) = scene.geometry.values()
    assert len(mesh.vertices) == len(layout.uv) > ict.num_vertices
    np.testing.assert_array_equal(mesh.faces, layout.triangle_uv)
    np.testing.assert_allclose(mesh.vertices[mesh.faces], verts[ict.triangles], atol=1e-4)
    np.testing.assert_allclose(mesh.visual.uv, layout.uv, atol=1e-6)
    obj = trimesh.load(tmp_path / "p_face0.obj", process=False)
    assert len(obj.faces) == len(ict.triangles)
    np.testing.assert_allclose(obj.visual.uv[obj.faces], layout.uv[layout.triangle_uv],
                               atol=1e-5)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from real_clients import gltf_validator, validate_glb

    if gltf_validator() is None:
        pytest.skip("Khronos glTF validator not installed (node gltf-validator; .ci/run)")
    errors, report = validate_glb(tmp_path / "p_face0.glb")
    assert errors == 0, report


def test_samples_past_the_face_outline_do_not_reach_the_texture():
    """The fade is centred on the fitted face outline (hull of the 68 landmarks, brows
    raised): a texel whose photo sample lies more than half the band outside it shows none
    of the background, whatever the mesh covers there."""
    import cv2

    from facefit.model import load_default_model
    from facefit.texture.extract import FADE_BAND

    model = load_default_model()
    m = model.mean.astype(np.float64)
    verts = np.stack([300 + 2 * m[:, 0], 300 - 2 * m[:, 1], -2 * m[:, 2]], 1).astype(np.float32)
    p = verts[np.asarray(model.landmark_ids["ibug68"]), :2].astype(np.float64)
    outline = np.concatenate([p[:17], p[26:16:-1] + (p[27] - p[30]) * 0.7])
    hull = cv2.convexHull(outline.astype(np.float32))
    image = np.zeros((600, 600, 3), np.uint8)
    image[:] = (0, 255, 0)  # green background
    cv2.fillPoly(image, [np.round(hull.reshape(-1, 2)).astype(np.int32)], (200, 150, 120))
    texture, _ = extract_texture(model, verts, image, size=256)
    texels = uv_texels(model, 256)
    pos = np.asarray(texels.interp @ verts)[:, :2]
    inside = np.zeros((600, 600), np.uint8)
    cv2.fillPoly(inside, [np.round(hull.reshape(-1, 2)).astype(np.int32)], 1)
    outside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    xy = np.clip(np.round(pos).astype(int), 0, 599)
    dist = outside[xy[:, 1], xy[:, 0]]
    band = FADE_BAND * np.ptp(p[:17], axis=0).max()
    far = dist > band / 2 + 2
    assert far.sum() > 100
    colours = texture.reshape(-1, 3)[texels.index[far]].astype(np.int64)
    assert (colours[:, 1] - colours[:, 0]).max() < 0  # no green: skin has R > G
