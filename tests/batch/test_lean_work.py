"""Work skipped when the requested formats do not need it: per-vertex colours only for PLY."""

import importlib

import numpy as np
import pytest

from facefit.batch import work


class _Recorder:
    made: list[dict] = []

    def __init__(self, **kwargs: object) -> None:
        _Recorder.made.append(kwargs)
        self.model = None


@pytest.mark.parametrize(("formats", "texture_size", "colours"), [
    (("json", "glb", "overlay"), 512, False),
    (("json", "ply"), 512, True),
    (("obj", "ply", "glb", "npz", "overlay", "json"), 512, True),
    (("json",), 0, False),
])
def test_batch_reconstructor_samples_vertex_colours_only_for_ply(monkeypatch, formats,
                                                                 texture_size, colours):
    api = importlib.import_module("facefit.reconstruct")  # the module, not the function
    monkeypatch.setattr(api, "Reconstructor", _Recorder)
    monkeypatch.setattr(work, "_STATE", {})
    _Recorder.made.clear()
    cfg = work.BatchConfig(formats=formats)
    work.reconstructor_for(cfg)
    work.reconstructor_for(cfg)  # kept for the next image
    assert len(_Recorder.made) == 1
    assert _Recorder.made[0]["vertex_colors"] is colours
    assert _Recorder.made[0]["texture_size"] == texture_size
    # a run asking for PLY after one without it gets a reconstructor with the colours
    work.reconstructor_for(work.BatchConfig(formats=(*formats, "ply")))
    assert _Recorder.made[-1]["vertex_colors"] is True


def test_texture_without_vertex_colours_is_the_same_texture():
    from facefit.model import load_default_model
    from facefit.texture.extract import extract_texture

    model = load_default_model()
    mean = np.asarray(model.mean, np.float32)
    # the mean face seen from the front, 1.2 px/mm, centred in a 320 x 300 photo
    verts = mean * np.float32([1.2, -1.2, -1.2]) + np.float32([150, 160, 0])
    yy, xx = np.mgrid[0:320, 0:300]
    photo = np.stack([xx % 256, yy % 256, (xx + yy) % 256], 2).astype(np.uint8)
    tex_a, colours = extract_texture(model, verts, photo, size=128)
    tex_b, none = extract_texture(model, verts, photo, size=128, vertex_colors=False)
    assert none is None and colours.shape == (model.num_vertices, 3)
    np.testing.assert_array_equal(tex_a, tex_b)
    assert tex_a.std() > 10  # the photo's gradients were sampled, not a flat fill


def test_fingerprint_counts_only_the_options_that_change_results():
    """Texture options count only with a textured format, refinement options only with a
    refinement; the rest always does."""
    base = work.BatchConfig(formats=("json",))
    for same in (dict(texture_size=256), dict(photometric_iterations=7),
                 dict(image_loss="huber"), dict(formats=("json", "npz"))):
        assert work.BatchConfig(**{"formats": ("json",), **same}).fingerprint() == \
            base.fingerprint(), same
    refined = work.BatchConfig(formats=("json",), refine="photometric")
    assert refined.fingerprint() != base.fingerprint()
    assert work.BatchConfig(formats=("json",), refine="photometric",
                            photometric_iterations=7).fingerprint() != refined.fingerprint()
    textured = work.BatchConfig(formats=("glb",))
    assert work.BatchConfig(formats=("glb",), texture_size=256).fingerprint() != \
        textured.fingerprint()
    assert work.BatchConfig(formats=("json",), landmarks="network").fingerprint() != \
        base.fingerprint()
