"""The model kind is decided by the loader (`MorphableModel.kind`), kept by the facefit
``.npz`` format and looked up by `face_model`: no guessing from ``extras``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from _model_formats import make_bilinear_core, make_model, write_facescape

from facefit.model import ModelFileError, face_model, load_face_model, load_model, save_model
from facefit.model.io_npz import model_to_arrays
from facefit.model.morphable_model import MODEL_KINDS

sys.path.insert(0, str(Path(__file__).parent))
from test_flame_fit import make_flame  # noqa: E402


def _facescape(tmp_path: Path) -> Path:
    core, tri, uv, lm = make_bilinear_core()
    return write_facescape(tmp_path / "bm.npz", core, tri, uv, lm,
                           np.array([1.0, 0.1, -0.2, 0.05, 0.0]), np.full(5, 0.3))


def test_loaders_set_the_kind_and_npz_keeps_it(tmp_path: Path) -> None:
    models = {"linear": make_model(), "flame": make_flame("full").model,
              "bilinear": load_model(_facescape(tmp_path))}
    for kind, model in models.items():
        assert model.kind == kind
        assert face_model(model).kind == kind
        again = load_model(save_model(model, tmp_path / f"{kind}.npz"))
        assert again.kind == kind and face_model(again).kind == kind
        typed = load_face_model(tmp_path / f"{kind}.npz")
        assert typed.kind == kind and typed.num_params == face_model(model).num_params
        np.testing.assert_array_equal(again.mean, model.mean)


def test_kind_is_not_guessed_from_extras(tmp_path: Path) -> None:
    flame = make_flame("full").model
    # the same arrays declared linear are fitted as linear: extras are data, not a kind flag
    as_linear = dataclasses.replace(flame, kind="linear")
    assert face_model(as_linear).kind == "linear"
    # and a FLAME declaration without FLAME's data is an error, not a silent fallback
    with pytest.raises(ValueError, match="flame_posedirs"):
        face_model(dataclasses.replace(make_model(), kind="flame"))
    with pytest.raises(ValueError, match="bilinear"):
        face_model(dataclasses.replace(make_model(), kind="bilinear"))


def test_old_npz_without_kind_is_linear_and_unknown_kind_is_refused(tmp_path: Path) -> None:
    arrays = model_to_arrays(make_flame("full").model)
    assert str(arrays.pop("kind")) == "flame"
    np.savez(tmp_path / "old.npz", **arrays)
    assert load_model(tmp_path / "old.npz").kind == "linear"
    np.savez(tmp_path / "bad.npz", **arrays, kind=np.array("nurbs"))
    with pytest.raises(ModelFileError) as err:
        load_model(tmp_path / "bad.npz")
    assert "kind" in str(err.value) and "nurbs" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown kind"):
        dataclasses.replace(make_model(), kind="nurbs")
    assert set(MODEL_KINDS) == {"linear", "flame", "bilinear", "ict"}
