"""Seeded corruptions of every model format, loaded one by one (run in a subprocess).

``python _fuzz_worker.py OUT.jsonl [FORMAT ...]`` writes, for each format, small files in
the publisher's layout (`tests/model/_model_formats.py`), then for each case: writes the
corrupted bytes, calls `facefit.model.load_model`, and records one JSON line: format, case,
outcome (``error``: a one-line `ModelFileError` naming a file of the case; ``load``: a
model came back; anything else: ``FAIL ...``), seconds and the peak of memory traced by
`tracemalloc` (numpy arrays included). A ``start`` line is flushed before each case so that
a crash or a hang names its case.

Cases per format: truncation at 50 points (0, 1, the last byte and 47 seeded positions),
40 byte-flip cases (1-16 random bytes xored; half of them inside the first kilobyte, where
the headers are) and format-specific headers announcing huge dimensions.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from _model_formats import (  # noqa: E402
    flame_arrays,
    make_bilinear_core,
    make_model,
    write_bfm2009,
    write_bfm2017,
    write_eos_bin,
    write_facescape,
    write_flame,
)

from facefit.model import ModelFileError, load_model, save_model  # noqa: E402

N_TRUNCATIONS = 50
N_FLIPS = 40


class _Modules:
    """The two methods of pytest's monkeypatch that `write_flame` uses."""

    def setitem(self, d: dict, key: str, value: object) -> None:
        d[key] = value

    def delitem(self, d: dict, key: str) -> None:
        del d[key]


def _huge_npy_header(data: bytes, shape: tuple[int, ...]) -> bytes:
    """``.npy`` bytes with the header's shape replaced (same header length)."""
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + hlen].decode("latin1")
    start = header.index("'shape': (") + len("'shape': ")
    end = header.index(")", start) + 1
    new = header[:start] + repr(shape) + header[end:]
    new = new.rstrip("\n ")
    if len(new) + 1 > hlen:
        raise ValueError("header too short for the new shape")
    new = new + " " * (hlen - len(new) - 1) + "\n"
    return data[:10] + new.encode("latin1") + data[10 + hlen:]


def _npz_with_member(data: bytes, key: str, shape: tuple[int, ...]) -> bytes:
    """A consistent zip (CRCs right) whose member ``key`` announces ``shape``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            member = src.read(info)
            if info.filename == f"{key}.npy":
                member = _huge_npy_header(member, shape)
            dst.writestr(info.filename, member)
    return out.getvalue()


def _mat_dims(data: bytes, name: bytes, dims: tuple[int, int]) -> bytes:
    """MAT v5 bytes with the dimensions of variable ``name`` replaced (the dims element,
    two int32 values, sits just before the name element's 8-byte tag)."""
    pos = data.index(name + b"\0") if name + b"\0" in data else data.index(name)
    off = pos - 8 - 8
    return data[:off] + struct.pack("<ii", *dims) + data[off + 8:]


def _pickle_huge_array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...],
                       dtype: str) -> bytes:
    """A FLAME-like pickle whose ``key`` is an array claiming ``shape`` with 8 data bytes."""
    from numpy._core.multiarray import _reconstruct

    raw: object = [0.0] if dtype == "O" else b"\0" * 8

    class Huge:
        def __reduce__(self):
            return (_reconstruct, (np.ndarray, (0,), b"b"),
                    (1, shape, np.dtype(dtype), False, raw))

    return pickle.dumps({**arrays, key: Huge()}, protocol=2)


def _pickle_huge_sparse(arrays: dict[str, np.ndarray], v: int) -> bytes:
    import scipy.sparse

    m = scipy.sparse.csc_matrix(arrays["J_regressor"])
    m._shape = (5, 10**9)
    return pickle.dumps({**arrays, "J_regressor": m}, protocol=2)


class Format:
    """One format: the file that is corrupted, how the model is loaded, header attacks."""

    def __init__(self, name: str, target: Path, load: Callable[[], object],
                 huge: dict[str, bytes]) -> None:
        self.name, self.target, self.load, self.huge = name, target, load, huge
        self.original = target.read_bytes()


def build_formats(root: Path) -> dict[str, Format]:
    """Every format's seed files under ``root``."""
    m = make_model(n=9)
    fm = make_model(n=9, albedo=False)
    formats: dict[str, Format] = {}

    d = root / "npz"
    d.mkdir()
    p = save_model(m, d / "m.npz")
    data = p.read_bytes()
    formats["facefit-npz"] = Format("facefit-npz", p, lambda p=p: load_model(p), {
        "mean (10^12, 3)": _npz_with_member(data, "mean", (10**12, 3)),
        "shape_basis (64, 3, 10^9)": _npz_with_member(data, "shape_basis", (64, 3, 10**9)),
        "triangles (2^40, 3)": _npz_with_member(data, "triangles", (2**40, 3)),
    })

    d = root / "facescape"
    d.mkdir()
    core, tri, uv, lm = make_bilinear_core(n=9)
    p = write_facescape(d / "facescape_bm.npz", core, tri, uv, lm, np.ones(5), np.ones(5))
    data = p.read_bytes()
    formats["facescape-npz"] = Format("facescape-npz", p, lambda p=p: load_model(p), {
        "core (3, 1, 10^8)": _npz_with_member(data, "shape_bm_core", (3, 1, 10**8)),
        "core (10^9, 5, 4)": _npz_with_member(data, "shape_bm_core", (10**9, 5, 4)),
        "fv_indices (10^10, 3)": _npz_with_member(data, "fv_indices", (10**10, 3)),
    })

    d = root / "bfm2009"
    d.mkdir()
    p = write_bfm2009(d, m)
    data = p.read_bytes()
    formats["bfm2009-mat"] = Format("bfm2009-mat", p, lambda p=p: load_model(p), {
        "shapePC (2^31-1, 2^31-1)": _mat_dims(data, b"shapePC", (2**31 - 1, 2**31 - 1)),
        "shapeMU (10^9, 1)": _mat_dims(data, b"shapeMU", (10**9, 1)),
        "tl (10^8, 3)": _mat_dims(data, b"tl", (10**8, 3)),
    })

    d = root / "bfm2017"
    d.mkdir()
    p = write_bfm2017(d / "model2017.h5", m)
    huge = {}
    for label, key, shape, compress in (
            ("pcaBasis (10^9, 6), unwritten chunks", "shape/model/pcaBasis", (10**9, 6), None),
            ("mean (10^10,), gzip, unwritten", "shape/model/mean", (10**10,), "gzip"),
            ("cells (3, 10^9), unwritten", "shape/representer/cells", (3, 10**9), None)):
        import h5py

        q = d / "huge.h5"
        q.write_bytes(p.read_bytes())
        with h5py.File(q, "a") as h5:
            del h5[key]
            h5.create_dataset(key, shape=shape, dtype="f4", chunks=True, compression=compress)
        huge[label] = q.read_bytes()
        q.unlink()
    formats["bfm2017-h5"] = Format("bfm2017-h5", p, lambda p=p: load_model(p), huge)

    d = root / "flame"
    d.mkdir()
    arrays = flame_arrays(fm, n_shape=10, n_exp=5)
    p = write_flame(d / "generic_model.pkl", arrays, _Modules())
    formats["flame-pkl"] = Format("flame-pkl", p, lambda p=p: load_model(p), {
        "v_template (10^10, 3) f8": _pickle_huge_array(arrays, "v_template", (10**10, 3), "f8"),
        "shapedirs object (10^11,)": _pickle_huge_array(arrays, "shapedirs", (10**11,), "O"),
        "posedirs (2^31, 2^31) f4": _pickle_huge_array(arrays, "posedirs", (2**31, 2**31),
                                                       "f4"),
        "J_regressor sparse (5, 10^9)": _pickle_huge_sparse(arrays, fm.num_vertices),
    })

    # Landmark embeddings, each beside an intact FLAME model.
    rng = np.random.default_rng(7)
    n_tri = fm.triangles.shape[0]
    d = root / "deca"
    d.mkdir()
    flame = write_flame(d / "generic_model.pkl", arrays, _Modules())
    p = d / "landmark_embedding.npy"
    np.save(p, np.array({"full_lmk_faces_idx": rng.integers(0, n_tri, (1, 68)),
                         "full_lmk_bary_coords": rng.dirichlet(np.ones(3), (1, 68))}),
            allow_pickle=True)
    plain = d / "plain.npy"
    np.save(plain, rng.integers(0, n_tri, 68))
    formats["flame-embedding-npy"] = Format(
        "flame-embedding-npy", p, lambda f=flame, e=p: load_model(f, embedding=e), {
            "object array shape (10^12,)": _huge_npy_header(p.read_bytes(), (10**12,)),
            "int64 header (10^12,)": _huge_npy_header(plain.read_bytes(), (10**12,)),
            "int64 header (2^62,)": _huge_npy_header(plain.read_bytes(), (2**62,)),
        })

    d = root / "static"
    d.mkdir()
    flame = write_flame(d / "generic_model.pkl", arrays, _Modules())
    p = d / "flame_static_embedding.pkl"
    faces = rng.integers(0, n_tri, 51).astype(np.uint32)
    bary = rng.dirichlet(np.ones(3), 51)
    p.write_bytes(pickle.dumps({"lmk_face_idx": faces, "lmk_b_coords": bary}, protocol=2))
    formats["flame-static-pkl"] = Format(
        "flame-static-pkl", p, lambda f=flame: load_model(f), {
            "lmk_b_coords (10^10, 3)": _pickle_huge_array(
                {"lmk_face_idx": faces}, "lmk_b_coords", (10**10, 3), "f8"),
        })

    d = root / "dynamic"
    d.mkdir()
    flame = write_flame(d / "generic_model.pkl", arrays, _Modules())
    (d / "flame_static_embedding.pkl").write_bytes(
        pickle.dumps({"lmk_face_idx": faces, "lmk_b_coords": bary}, protocol=2))
    p = d / "flame_dynamic_embedding.npy"
    np.save(p, np.array({"lmk_face_idx": rng.integers(0, n_tri, (79, 17)),
                         "lmk_b_coords": rng.dirichlet(np.ones(3), (79, 17))}),
            allow_pickle=True)
    formats["flame-dynamic-npy"] = Format(
        "flame-dynamic-npy", p, lambda f=flame: load_model(f), {
            "object array shape (10^12,)": _huge_npy_header(p.read_bytes(), (10**12,)),
        })

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
    from test_io_ict import make_folder

    d = root / "ict"
    d.mkdir()
    folder, _ = make_folder(d)
    p = folder / "generic_neutral_mesh.obj"
    text = p.read_text()
    formats["ict-obj"] = Format("ict-obj", p, lambda f=folder: load_model(f), {
        "face index 10^12": text.replace("\nf 1/1 2/2 12/12", "\nf 1/1 2/2 1000000000000/1"
                                         ).encode(),
        "vertex 1e400": text.replace("\nv ", "\nv 1e400 ", 1).encode(),
        "200-corner polygon": text.replace("\nf 1/1 2/2 12/12", "\nf " + " ".join(
            f"{k}/{k}" for k in range(1, 201))).encode(),
    })

    d = root / "sfm"
    d.mkdir()
    p = write_eos_bin(d / "sfm_shape.bin", m)
    data = p.read_bytes()
    nv = 3 * m.num_vertices
    formats["sfm-bin"] = Format("sfm-bin", p, lambda p=p: load_model(p), {
        "mean rows 2^31-1": data[:4] + struct.pack("<i", 2**31 - 1) + data[8:],
        "mean (2^20, 2^11)": data[:4] + struct.pack("<ii", 2**20, 2**11) + data[12:],
        "triangle count 2^63": _sfm_triangle_count(data, nv),
    })
    return formats


def _sfm_triangle_count(data: bytes, nv: int) -> bytes:
    """The shape model's triangle count (u64 after mean, basis, eigenvalues) set to 2^63."""
    off = 4
    for _ in range(3):  # three matrices: rows, cols, rows*cols floats
        rows, cols = struct.unpack("<ii", data[off:off + 8])
        off += 8 + 4 * rows * cols
    return data[:off] + struct.pack("<Q", 2**63) + data[off + 8:]


def cases(fmt: Format, seed: int) -> Iterator[tuple[str, bytes]]:
    """(case label, file bytes) for ``fmt``: truncations, byte flips, huge headers."""
    rng = np.random.default_rng(seed)
    data = fmt.original
    n = len(data)
    cuts = {0, 1, n - 1}
    while len(cuts) < N_TRUNCATIONS:
        cuts.add(int(rng.integers(2, n - 1)))
    for cut in sorted(cuts):
        yield f"truncate@{cut}", data[:cut]
    for i in range(N_FLIPS):
        buf = bytearray(data)
        k = int(rng.choice([1, 2, 4, 8, 16]))
        hi = min(n, 1024) if i % 2 == 0 else n
        pos = rng.integers(0, hi, k)
        for q in pos:
            buf[q] ^= int(rng.integers(1, 256))
        yield f"flip{k}@{','.join(map(str, sorted(pos.tolist())))}", bytes(buf)
    for label, blob in fmt.huge.items():
        yield f"huge:{label}", blob


def run(out: Path, names: list[str]) -> None:
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        formats = build_formats(Path(tmp))
        tracemalloc.start()
        with open(out, "w") as fh:
            for seed, (name, fmt) in enumerate(formats.items()):
                if names and name not in names:
                    continue
                folder = fmt.target.parent
                fmt.load()  # the intact file loads (and lazy imports are not timed below)
                for label, blob in cases(fmt, seed):
                    fh.write(json.dumps({"format": name, "case": label, "start": True}) + "\n")
                    fh.flush()
                    fmt.target.write_bytes(blob)
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                    t0 = time.perf_counter()
                    try:
                        fmt.load()
                        outcome = "load"
                    except ModelFileError as exc:
                        text = str(exc)
                        named = any(text.startswith(f"{f}: ")
                                    for f in [folder, *folder.iterdir()])
                        outcome = "error" if "\n" not in text and named else f"FAIL {text!r}"
                        detail = text[text.index(": ") + 2:]
                    except BaseException as exc:  # noqa: BLE001 - recorded as a failure
                        outcome = f"FAIL {type(exc).__name__}: {exc}"[:300]
                    else:
                        detail = ""
                    dt = time.perf_counter() - t0
                    peak = tracemalloc.get_traced_memory()[1] - base
                    fh.write(json.dumps({
                        "format": name, "case": label, "outcome": outcome, "seconds": dt,
                        "peak_mb": peak / 2**20, "detail": detail if outcome == "error" else "",
                        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    }) + "\n")
                    fh.flush()
                fmt.target.write_bytes(fmt.original)
            status = Path("/proc/self/status")
            vm = {k: v.split()[0] for k, v in (line.split(":", 1) for line in
                  status.read_text().splitlines()) if k in ("VmPeak", "VmHWM")} if (
                status.exists()) else {}
            fh.write(json.dumps({"summary": True, "vm_peak_mb": int(vm.get("VmPeak", 0)) / 1024,
                                 "rss_peak_mb": int(vm.get("VmHWM", 0)) / 1024}) + "\n")


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2:])
