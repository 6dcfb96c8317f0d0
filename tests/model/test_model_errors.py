"""Wrong or truncated model files give one-line `ModelFileError`s naming the missing key."""

from __future__ import annotations

import numpy as np
import pytest
from _model_formats import make_model, write_bfm2009, write_bfm2017, write_eos_bin

from facefit.model import ModelFileError, load_model, save_model


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert isinstance(exc.value, ValueError)
    return text


def test_npz_missing_key(tmp_path):
    path = save_model(make_model(), tmp_path / "m.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "triangles"}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError) as exc:
        load_model(tmp_path / "bad.npz")
    assert "missing key 'triangles'" in _one_line(exc)


def test_npz_truncated(tmp_path):
    path = save_model(make_model(), tmp_path / "m.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError) as exc:
        load_model(tmp_path / "cut.npz")
    assert "cut.npz" in _one_line(exc)


def test_bfm2009_missing_field(tmp_path):
    import scipy.io

    path = write_bfm2009(tmp_path, make_model(), expression_file=False)
    fields = {k: v for k, v in scipy.io.loadmat(path).items()
              if not k.startswith("__") and k != "shapeEV"}
    scipy.io.savemat(path, fields)
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert "missing field 'shapeEV'" in _one_line(exc)


def test_bfm2017_missing_key(tmp_path):
    import h5py

    path = write_bfm2017(tmp_path / "m.h5", make_model())
    with h5py.File(path, "a") as h5:
        del h5["shape/model/pcaVariance"]
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert "missing key 'shape/model/pcaVariance'" in _one_line(exc)


def test_flame_missing_key(tmp_path):
    import pickle

    path = tmp_path / "flame.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"v_template": np.zeros((3, 3)), "f": np.zeros((1, 3))}, fh, protocol=2)
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert "missing key 'shapedirs'" in _one_line(exc)


def test_flame_truncated(tmp_path):
    import pickle

    path = tmp_path / "flame.pkl"
    data = pickle.dumps({"v_template": np.zeros((300, 3))}, protocol=2)
    path.write_bytes(data[:-40])
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert "pickle" in _one_line(exc)


def test_facescape_missing_faces(tmp_path):
    np.savez(tmp_path / "bm.npz", shape_bm_core=np.zeros((9, 2, 2), np.float32))
    with pytest.raises(ModelFileError) as exc:
        load_model(tmp_path / "bm.npz")
    assert "missing key 'fv_indices'" in _one_line(exc)


@pytest.mark.parametrize("cut", [3, 40, 200, -10])
def test_eos_truncated_names_field(tmp_path, cut):
    path = write_eos_bin(tmp_path / "m.bin", make_model())
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    text = _one_line(exc)
    assert "truncated: missing field '" in text
    if cut == -10:
        assert "texture_triangle_indices" in text
    if cut == 40:
        assert "shape_model.mean" in text


def test_eos_bad_version(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"\x09\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(ModelFileError, match="class version 9"):
        load_model(tmp_path / "m.bin")


def test_unknown_and_missing(tmp_path):
    (tmp_path / "m.xyz").write_bytes(b"hello world")
    with pytest.raises(ModelFileError, match="unknown model format"):
        load_model(tmp_path / "m.xyz")
    with pytest.raises(ModelFileError, match="file not found"):
        load_model(tmp_path / "nope.npz")
    with pytest.raises(ModelFileError, match="use a .npz"):
        save_model(make_model(), tmp_path / "out.mat")
