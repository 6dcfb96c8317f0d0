"""The compiled texel pass (``ff_texel_view``) against the numpy one: the same texture, byte
for byte, with and without pyramid levels, mirror fill and the face-region fade."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facefit.model import load_default_model
from facefit.render import raster
from facefit.texture import extract
from facefit.texture.extract import extract_texture

NATIVE = raster.native_library()
pytestmark = pytest.mark.skipif(NATIVE is None, reason="compiled extension not built")


def _photo(h, w, seed):
    """Noise over smooth gradients: every texel's sample depends on its exact position."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, 128 + 60 * np.sin(x / 7.0)], -1)
    return np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def _posed(model, yaw_deg, pitch_deg, width_px, centre):
    """The mean face turned by yaw and pitch, ``width_px`` wide, centred at ``centre``."""
    rot = Rotation.from_euler("yx", [yaw_deg, pitch_deg], degrees=True).as_matrix()
    v = np.asarray(model.mean, np.float64) @ rot.T
    s = width_px / np.ptp(model.mean[:, 0])
    return np.stack([centre[0] + s * v[:, 0], centre[1] - s * v[:, 1], -s * v[:, 2]],
                    1).astype(np.float32)


def _both(monkeypatch, *args, **kwargs):
    native = extract_texture(*args, **kwargs)
    monkeypatch.setattr(raster, "_NATIVE", None)
    assert extract.native_library() is None
    reference = extract_texture(*args, **kwargs)
    monkeypatch.setattr(raster, "_NATIVE", NATIVE)
    return native, reference


@pytest.mark.parametrize(("yaw", "pitch", "width", "size"), [
    (0, 0, 180, 256),     # frontal, a texel about a pixel: the photo only
    (35, -10, 420, 256),  # turned: mirror fill; texels of 2-3 pixels: pyramid levels
    (-60, 15, 700, 128),  # profile, footprints past the last level
    (20, 5, 90, 512),     # small face, texture finer than the photo
])
def test_compiled_texel_pass_matches_numpy(monkeypatch, yaw, pitch, width, size):
    model = load_default_model()
    photo = _photo(800, 900, seed=yaw + 100)
    verts = _posed(model, yaw, pitch, width, (450.3, 400.7))
    (tex, vcol), (ref, ref_vcol) = _both(monkeypatch, model, verts, photo, size=size)
    assert tex.shape == (size, size, 3)
    np.testing.assert_array_equal(tex, ref)
    np.testing.assert_array_equal(vcol, ref_vcol)


def test_compiled_texel_pass_matches_numpy_off_the_photo(monkeypatch):
    """Part of the face outside the photo: clamped samples and z-buffer lookups."""
    model = load_default_model()
    photo = _photo(300, 260, seed=3)
    verts = _posed(model, 25, 0, 320, (40.0, 150.0))
    (tex, _), (ref, _) = _both(monkeypatch, model, verts, photo, size=256,
                               vertex_colors=False)
    np.testing.assert_array_equal(tex, ref)


def test_compiled_facing_cosine_matches_numpy(monkeypatch):
    """`_towards` (``ff_towards``) gives `_facing`'s cosines bit for bit, zero-area and NaN
    normals included; `face_texture_size` is the same either way."""
    rng = np.random.default_rng(7)
    cross = (rng.standard_normal((5000, 3)) * rng.uniform(1e-3, 1e3, (5000, 1))
             ).astype(np.float32)
    cross[:10] = 0.0
    cross[10, 1] = np.nan
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(extract._towards(cross), extract._facing(cross)[0])
    model = load_default_model()
    verts = _posed(model, 30, 0, 330, (300.0, 300.0))
    sizes = [extract.face_texture_size(model, verts * s, 512) for s in (0.5, 1.0, 1.6)]
    monkeypatch.setattr(raster, "_NATIVE", None)
    assert sizes == [extract.face_texture_size(model, verts * s, 512) for s in (0.5, 1.0, 1.6)]
