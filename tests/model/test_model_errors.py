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


# ---- sizes and ranges checked before use (see also tests/security) -------------------------

def test_bfm2017_links_external_storage_and_unwritten_data_refused(tmp_path):
    import h5py

    (tmp_path / "raw.bin").write_bytes(np.zeros(432, np.float32).tobytes())
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["x"] = np.zeros(432, np.float32)
    cases = {
        "link": (lambda h5: h5.__setitem__("shape/model/mean",
                                           h5py.ExternalLink(str(tmp_path / "other.h5"), "x")),
                 "'shape/model/mean' is a link to elsewhere"),
        "raw": (lambda h5: h5.create_dataset("shape/model/mean", shape=(432,), dtype="f4",
                                             external=[(str(tmp_path / "raw.bin"), 0, 1728)]),
                "'shape/model/mean' uses external data"),
        "unwritten": (lambda h5: h5.create_dataset("shape/model/mean", shape=(10**10,),
                                                   dtype="f4", chunks=(1000,)),
                      "announces shape (10000000000,) (40000000000 bytes) but the file "
                      "stores 0 bytes"),
    }
    for name, (make, words) in cases.items():
        path = write_bfm2017(tmp_path / f"{name}.h5", make_model())
        with h5py.File(path, "a") as h5:
            del h5["shape/model/mean"]
            make(h5)
        with pytest.raises(ModelFileError) as exc:
            load_model(path)
        assert words in _one_line(exc)


def test_npy_header_larger_than_the_file(tmp_path):
    """Refused from the header, before numpy would allocate 8 TB."""
    path = tmp_path / "ids.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False,
                                                  "shape": (10**12,)})
        fh.write(np.arange(68).tobytes())
    model = save_model(make_model(), tmp_path / "m.npz")
    with pytest.raises(ModelFileError) as exc:
        load_model(model, landmarks=path)
    assert ("announces shape (1000000000000,) of int64 (8000000000000 bytes) but only 544 "
            "bytes follow") in _one_line(exc)
    path.write_bytes(path.read_bytes().replace(b"(1000000000000,)", b"(10**12,)       "))
    with pytest.raises(ModelFileError, match="corrupt .npy header"):
        load_model(model, landmarks=path)


def test_out_of_range_ids_and_non_finite_values(tmp_path):
    m = make_model()
    path = save_model(m, tmp_path / "m.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    bad = dict(arrays, triangles=arrays["triangles"] + 1000)
    np.savez(tmp_path / "tri.npz", **bad)
    with pytest.raises(ModelFileError, match="triangles has vertex ids outside 0..143"):
        load_model(tmp_path / "tri.npz")
    mean = arrays["mean"].copy()
    mean[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **dict(arrays, mean=mean))
    with pytest.raises(ModelFileError, match="mean has non-finite values"):
        load_model(tmp_path / "nan.npz")
    path = write_bfm2009(tmp_path, m, expression_file=False)
    import scipy.io

    fields = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    fields["tl"] = fields["tl"] + 10_000
    scipy.io.savemat(path, fields)
    with pytest.raises(ModelFileError, match="field 'tl' has vertex ids beyond the 144"):
        load_model(path)


def test_flame_and_facescape_shapes_checked(tmp_path):
    import pickle

    from _model_formats import flame_arrays

    arrays = flame_arrays(make_model(albedo=False), n_shape=6, n_exp=4)
    arrays["J_regressor"] = arrays["J_regressor"][:, :50]
    path = tmp_path / "flame.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert "key 'J_regressor' has shape (5, 50), expected (5, 144)" in _one_line(exc)
    np.savez(tmp_path / "bm.npz", shape_bm_core=np.zeros((9, 2, 600), np.float32),
             fv_indices=np.array([[1, 2, 3]]))
    with pytest.raises(ModelFileError, match="more than 512 identity or expression"):
        load_model(tmp_path / "bm.npz")
