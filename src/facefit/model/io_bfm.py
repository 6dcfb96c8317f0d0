"""Basel Face Model readers: BFM 2009 ``.mat`` (with expression add-ons) and BFM 2017/2019 ``.h5``.

BFM 2009 (Paysan et al., "A 3D Face Model for Pose and Illumination Invariant Face
Recognition", AVSS 2009) ships ``01_MorphableModel.mat`` with ``shapeMU`` (3V, 1) and
``shapePC`` (3V, K) in micrometres, ``shapeEV`` (K, 1) standard deviations (the BFM's own
``coef2object`` computes ``mu + pc * (coef .* ev)``), the same for ``tex*`` (RGB in 0..255),
and ``tl`` (F, 3) 1-based triangles. Common expression add-ons, read from the same file or
from a sibling file:

* 3DDFA ``Model_Expression.mat`` (Zhu et al. 2016, built from FaceWarehouse, Cao et al.,
  TVCG 2014): ``mu_exp`` (3V, 1), ``w_exp`` (3V, Ke), ``sigma_exp`` (Ke, 1);
* face3d-style ``expMU`` / ``expPC`` / ``expEV`` fields;
* Deep3DFaceReconstruction's ``Exp_Pca.bin``: int32 ``Ke``, float32 ``expMU`` (3V,), float32
  ``expPC`` stored component-major (Ke, 3V), with standard deviations in ``std_exp.txt``.

When the expression basis covers fewer vertices than the shape model (the 53,215-vertex
3DDFA crop of BFM's 53,490), the crop is read from ``trimIndex`` (1-based) in a sibling
``BFM_exp_idx.mat`` (or the ``trim_index=`` argument) and the whole model is cropped to it.
The expression mean is added to the model mean, as 3DDFA does.

BFM 2017 / 2019 (Gerig et al., "Morphable Face Models - An Open Framework", FG 2018) are
statismo HDF5 files: ``shape/model/{mean, pcaBasis, pcaVariance}`` (mm; orthonormal basis and
variances), likewise ``expression/model`` and ``color/model``, and
``shape/representer/{points (3, V), cells (3, F)}``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from facefit.model.io_common import ModelFileError, PathLike, complete_topology, flat_to_vertices
from facefit.model.morphable_model import MorphableModel

UM_TO_MM = 1e-3
LICENCE_2009 = "Basel Face Model 2009 licence: non-commercial research use only"
LICENCE_2017 = "Basel Face Model 2017/2019 licence: non-commercial research use only"


# a compressed variable (or HDF5 dataset) over 64 MB that inflates more than 100:1 is
# refused as a decompression bomb: float model data compresses about 1.1:1
BOMB_BYTES, BOMB_RATIO = 64 << 20, 100


def _check_mat_inflation(data: bytes, path: Path) -> None:
    """Inflate each compressed variable of a MAT v5 file without keeping the output, and
    refuse one that inflates beyond `BOMB_BYTES` and `BOMB_RATIO` before scipy reads it."""
    import zlib

    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return  # not MAT v5: scipy reports it
    order = "<" if data[126:128] == b"IM" else ">"
    pos = 128
    while pos + 8 <= len(data):
        mdtype, count = struct.unpack(order + "II", data[pos:pos + 8])
        if mdtype >> 16:  # small data element: type and size share the first word
            pos += 8
            continue
        start, pos = pos + 8, pos + 8 + count + (-count % 8 if mdtype != 15 else 0)
        if mdtype != 15:  # miCOMPRESSED
            continue
        budget = max(BOMB_BYTES, BOMB_RATIO * count)
        inflater, out = zlib.decompressobj(), 0
        chunk = data[start:start + count]
        try:
            while chunk and out <= budget:
                out += len(inflater.decompress(chunk, 1 << 24))
                chunk = inflater.unconsumed_tail
        except zlib.error:
            return  # corrupt: scipy reports it
        if out > budget:
            raise ModelFileError(path, f"a compressed variable of {count} bytes inflates to "
                                       f"more than {budget} (a decompression bomb)")


def _mat_fields(path: Path) -> dict[str, np.ndarray]:
    import io

    import scipy.io

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(path, f"cannot read file ({exc.strerror or exc})") from None
    _check_mat_inflation(data, path)
    try:
        # from memory: a corrupt element length can then never make the reader allocate
        # more than the file holds
        raw = scipy.io.loadmat(io.BytesIO(data), squeeze_me=False, struct_as_record=False)
    except NotImplementedError:
        raise ModelFileError(path, "MATLAB v7.3 (HDF5) .mat files are not supported; "
                                   "re-save with -v7") from None
    except Exception as exc:
        raise ModelFileError(path, f"not a readable .mat file ({type(exc).__name__})") from None
    fields = {k: v for k, v in raw.items() if not k.startswith("__")}
    if set(fields) == {"model"}:  # face3d's BFM.mat wraps everything in a struct
        m = np.asarray(fields["model"]).ravel()[0]
        fields = {name: getattr(m, name) for name in m._fieldnames}
    return {k: np.asarray(v) for k, v in fields.items()}


def _need(fields: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in fields:
        raise ModelFileError(path, f"missing field '{key}'")
    return fields[key]


def read_exp_pca_bin(path: PathLike, num_vertices: int | None = None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Deep3D ``Exp_Pca.bin``: ``(mean (V, 3), basis (V, 3, Ke))`` in the file's units (um)."""
    p = Path(path)
    data = p.read_bytes()
    if len(data) < 4:
        raise ModelFileError(p, "truncated: missing field 'exp_dim' (int32)")
    k = int(np.frombuffer(data[:4], "<i4")[0])
    n_floats = (len(data) - 4) // 4
    if k <= 0 or n_floats % (3 * (k + 1)):
        raise ModelFileError(p, f"size does not fit exp_dim={k}: expected 4 + 12*V*(1+{k}) bytes")
    v = n_floats // (3 * (k + 1))
    if num_vertices is not None and v != num_vertices:
        raise ModelFileError(p, f"has {v} vertices, expected {num_vertices}")
    floats = np.frombuffer(data[4:4 + 4 * n_floats], "<f4")
    mean = floats[:3 * v].reshape(v, 3)
    basis = floats[3 * v:].reshape(k, 3 * v).T.reshape(v, 3, k)
    return mean.astype(np.float32), basis.astype(np.float32)


def _read_expression(
    fields: dict[str, np.ndarray], path: Path, expression: PathLike | None
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(mean (Ve,3) um, sigma-scaled basis (Ve,3,Ke) um, note) or None."""
    sources: list[Path] = []
    if expression is not None:
        sources.append(Path(expression))
    else:
        for name in ("Model_Expression.mat", "Exp_Pca.bin"):
            if (path.parent / name).is_file():
                sources.append(path.parent / name)
    candidates = [(fields, path)]
    for src in sources:
        if src.suffix.lower() == ".bin":
            mean, basis = read_exp_pca_bin(src)
            std_file = src.parent / "std_exp.txt"
            if std_file.is_file():
                sigma = np.loadtxt(std_file).ravel()[: basis.shape[2]]
                basis = basis * sigma.astype(np.float32)
                note = f"expression: {src.name} scaled by std_exp.txt"
            else:
                note = f"expression: {src.name} (no std_exp.txt: basis unscaled)"
            return mean, basis, note
        candidates.append((_mat_fields(src), src))
    for flds, src in candidates:
        for mu_k, pc_k, ev_k in (("mu_exp", "w_exp", "sigma_exp"), ("expMU", "expPC", "expEV")):
            if pc_k in flds:
                pc = np.asarray(flds[pc_k], np.float64)
                mu = np.asarray(_need(flds, mu_k, src), np.float64).ravel()
                ev = np.asarray(_need(flds, ev_k, src), np.float64).ravel()
                if ev.shape[0] < pc.shape[1]:
                    raise ModelFileError(src, f"field '{ev_k}' has {ev.shape[0]} values for "
                                              f"{pc.shape[1]} components")
                basis = flat_to_vertices(pc * ev[: pc.shape[1]])
                return flat_to_vertices(mu), basis, f"expression: {src.name} ({pc_k})"
    return None


def _crop(ids: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles of the sub-mesh on vertex ids ``ids`` (all three corners kept), re-indexed."""
    remap = np.full(int(max(triangles.max(), ids.max())) + 1, -1, np.int64)
    remap[ids] = np.arange(ids.size)
    t = remap[triangles]
    return t[(t >= 0).all(axis=1)].astype(np.int32)


def load_bfm2009(
    path: PathLike,
    expression: PathLike | None = None,
    trim_index: np.ndarray | None = None,
    name: str = "bfm2009",
) -> MorphableModel:
    """BFM 2009 ``.mat`` (plus an optional expression add-on) as a `MorphableModel` in mm.

    ``expression`` is a ``Model_Expression.mat`` / ``.mat`` with ``expPC`` / ``Exp_Pca.bin``;
    without it, those names are looked up beside ``path`` and in ``path`` itself.
    ``trim_index`` (0-based vertex ids) crops the model when the expression basis is smaller.
    """
    p = Path(path)
    f = _mat_fields(p)
    mu = np.asarray(_need(f, "shapeMU", p), np.float64).ravel()
    pc = np.asarray(_need(f, "shapePC", p), np.float64)
    ev = np.asarray(_need(f, "shapeEV", p), np.float64).ravel()
    tl_key = "tl" if "tl" in f else ("tri" if "tri" in f else None)
    if tl_key is None:
        raise ModelFileError(p, "missing field 'tl'")
    tl = np.asarray(f[tl_key]).astype(np.int64)
    if tl.shape[0] == 3 and tl.shape[1] != 3:
        tl = tl.T
    if pc.ndim != 2 or pc.shape[0] != mu.size or mu.size % 3:
        raise ModelFileError(p, f"field 'shapePC' has shape {pc.shape}, expected ({mu.size}, K)")
    if ev.size < pc.shape[1]:
        raise ModelFileError(p, f"field 'shapeEV' has {ev.size} values for {pc.shape[1]} "
                                "components")
    tl = tl - 1  # MATLAB's 1-based triangles
    if tl.ndim != 2 or tl.shape[1] != 3 or tl.size == 0:
        raise ModelFileError(p, f"field '{tl_key}' has shape {tl.shape}, expected (F, 3)")
    if tl.min() < 0:
        raise ModelFileError(p, f"field '{tl_key}' is not 1-based")
    if tl.max() >= mu.size // 3:
        raise ModelFileError(p, f"field '{tl_key}' has vertex ids beyond the "
                                f"{mu.size // 3} vertices")
    mean = flat_to_vertices(mu)
    shape = flat_to_vertices(pc * ev[: pc.shape[1]])
    v = mean.shape[0]
    albedo_mean = albedo_basis = None
    if "texPC" in f:
        tmu = np.asarray(_need(f, "texMU", p), np.float64).ravel()
        tpc = np.asarray(f["texPC"], np.float64)
        tev = np.asarray(_need(f, "texEV", p), np.float64).ravel()
        if tmu.size != mu.size or tpc.ndim != 2 or tpc.shape[0] != mu.size or (
                tev.size < tpc.shape[1]):
            raise ModelFileError(p, f"fields 'texMU'/'texPC'/'texEV' have shapes {tmu.shape}/"
                                    f"{tpc.shape}/{tev.shape} for {mu.size} shape values")
        albedo_mean = flat_to_vertices(tmu / 255.0).astype(np.float32)
        albedo_basis = flat_to_vertices(tpc * tev[: tpc.shape[1]] / 255.0).astype(np.float32)
    landmarks: dict[str, np.ndarray] = {}
    for key in ("keypoints", "kpt_ind"):
        if key in f:
            ids = np.asarray(f[key]).astype(np.int64).ravel() - 1
            if ids.size == 68:
                landmarks["ibug68"] = ids
            elif ids.size == 204:  # 3DDFA stores 3 coordinate indices per landmark
                landmarks["ibug68"] = ids[::3] // 3
    notes = [f"shape: {p.name}"]
    exp = _read_expression(f, p, expression)
    if exp is None:
        exp_mean = np.zeros_like(mean)
        exp_basis = np.zeros((v, 3, 0))
    else:
        exp_mean, exp_basis, note = exp
        notes.append(note)
        if exp_mean.shape[0] != v:
            if trim_index is None:
                idx_file = p.parent / "BFM_exp_idx.mat"
                if not idx_file.is_file():
                    raise ModelFileError(p, f"expression basis has {exp_mean.shape[0]} vertices, "
                                            f"shape has {v}: missing field 'trimIndex' "
                                            "(BFM_exp_idx.mat)")
                trim_index = np.asarray(_need(_mat_fields(idx_file), "trimIndex", idx_file)
                                        ).astype(np.int64).ravel() - 1
            trim_index = np.asarray(trim_index, np.int64).ravel()
            if trim_index.size != exp_mean.shape[0]:
                raise ModelFileError(p, f"trimIndex has {trim_index.size} ids for "
                                        f"{exp_mean.shape[0]} expression vertices")
            if trim_index.min() < 0 or trim_index.max() >= v:
                raise ModelFileError(p, f"trimIndex has vertex ids outside 1..{v}")
            remap = np.full(v, -1, np.int64)
            remap[trim_index] = np.arange(trim_index.size)
            mean, shape = mean[trim_index], shape[trim_index]
            if albedo_mean is not None and albedo_basis is not None:
                albedo_mean, albedo_basis = albedo_mean[trim_index], albedo_basis[trim_index]
            tl = _crop(trim_index, tl)
            landmarks = {k: remap[ids] for k, ids in landmarks.items() if (remap[ids] >= 0).all()}
            notes.append(f"cropped to {trim_index.size} vertices")
    mean_mm = ((mean + exp_mean) * UM_TO_MM).astype(np.float32)
    tri, uv, mirror, made = complete_topology(mean_mm, tl, None, None)
    return MorphableModel(
        name=name,
        mean=mean_mm,
        shape_basis=(shape * UM_TO_MM).astype(np.float32),
        expression_basis=(exp_basis * UM_TO_MM).astype(np.float32),
        triangles=tri,
        uv=uv,
        landmark_ids=landmarks,
        mirror_ids=mirror,
        licence=LICENCE_2009,
        source=f"{p} ({'; '.join(notes + made)})",
        albedo_mean=albedo_mean,
        albedo_basis=albedo_basis,
    )


# deflate, shuffle, fletcher32, szip, nbit, scale-offset (HDF5) and lzf (built into h5py)
_H5_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


def _h5_array(h5: object, key: str, path: Path) -> np.ndarray:
    """Dataset ``key`` read only after checking that the file stores the data its shape
    announces (an HDF5 header can declare a huge dataset whose chunks are missing, which
    would read as fill values without bound)."""
    import h5py

    link = h5.get(key, getlink=True)  # type: ignore[attr-defined]
    if not isinstance(link, h5py.HardLink):
        raise ModelFileError(path, f"'{key}' is a link to elsewhere, which a model file never "
                                   "needs")
    ds = h5[key]  # type: ignore[index]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf":
        raise ModelFileError(path, f"'{key}' is not a numeric dataset")
    plist = ds.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if ds.external or ds.is_virtual or not filters <= _H5_BUILTIN_FILTERS:
        # external raw files, virtual sources and filter plugins (shared libraries that
        # HDF5 would load) are refused
        raise ModelFileError(path, f"'{key}' uses external data or a filter plugin "
                                   f"({sorted(filters - _H5_BUILTIN_FILTERS)}), which a model "
                                   "file never needs")
    nbytes = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize if ds.shape else (
        ds.dtype.itemsize)
    stored = int(ds.id.get_storage_size())
    ratio = BOMB_RATIO if filters else 1
    if nbytes > 1 << 20 and nbytes > stored * ratio and not (filters and nbytes <= BOMB_BYTES):
        raise ModelFileError(path, f"'{key}' announces shape {ds.shape} ({nbytes} bytes) but "
                                   f"the file stores {stored} bytes of it")
    return np.asarray(ds[()])


def _h5_pca(h5: object, group: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (3V,), orthonormal basis (3V, K), variance (K,)) of statismo group ``group``."""
    out = []
    for key in ("mean", "pcaBasis", "pcaVariance"):
        full = f"{group}/model/{key}"
        if full not in h5:  # type: ignore[operator]
            raise ModelFileError(path, f"missing key '{full}'")
        out.append(_h5_array(h5, full, path).astype(np.float64))
    mean, basis, var = out
    mean, var = mean.ravel(), var.ravel()
    if basis.ndim != 2 or basis.shape[0] != mean.size or mean.size % 3 or mean.size == 0:
        raise ModelFileError(path, f"'{group}/model/pcaBasis' has shape {basis.shape}, "
                                   f"expected ({mean.size}, K)")
    if var.size < basis.shape[1]:
        raise ModelFileError(path, f"'{group}/model/pcaVariance' has {var.size} values for "
                                   f"{basis.shape[1]} components")
    return mean, basis, var[: basis.shape[1]]


def _h5_landmarks(h5: object, mean: np.ndarray) -> tuple[dict[str, np.ndarray],
                                                          dict[str, np.ndarray]]:
    """BFM 2017's ``metadata/landmarks/json`` (named 3D points) as nearest-vertex ids:
    ({"bfm2017": ids}, {"bfm2017_landmark_names": names}); empty if absent or unreadable."""
    import json

    key = "metadata/landmarks/json"
    if key not in h5:  # type: ignore[operator]
        return {}, {}
    try:
        import h5py

        ds = h5[key]  # type: ignore[index]
        if not isinstance(ds, h5py.Dataset) or ds.size != 1 or ds.dtype.kind not in "SOU":
            return {}, {}
        raw = ds[()]
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        items = json.loads(text)
        names = [str(it["id"]) for it in items]
        pts = np.asarray([it["coordinates"] for it in items], np.float64).reshape(-1, 3)
    except (ValueError, KeyError, TypeError):
        return {}, {}
    if not names:
        return {}, {}
    from scipy.spatial import cKDTree

    _, ids = cKDTree(mean).query(pts)
    return {"bfm2017": np.asarray(ids, np.int64)}, {"bfm2017_landmark_names": np.array(names)}


def load_bfm2017(path: PathLike, name: str | None = None) -> MorphableModel:
    """BFM 2017 / 2019 statismo ``.h5`` as a `MorphableModel` (mm, basis scaled by sqrt var)."""
    import h5py

    p = Path(path)
    try:
        h5 = h5py.File(p, "r")
    except Exception as exc:
        raise ModelFileError(p, f"not a readable HDF5 file ({type(exc).__name__})") from None
    with h5:
        mean, basis, var = _h5_pca(h5, "shape", p)
        shape = flat_to_vertices(basis * np.sqrt(np.maximum(var, 0.0)))
        v = mean.size // 3
        if "expression/model/mean" in h5:
            e_mean, e_basis, e_var = _h5_pca(h5, "expression", p)
            if e_mean.size != mean.size:
                raise ModelFileError(p, f"'expression/model/mean' has {e_mean.size} values, "
                                        f"'shape/model/mean' {mean.size}")
            exp = flat_to_vertices(e_basis * np.sqrt(np.maximum(e_var, 0.0)))
            mean = mean + e_mean
        else:
            exp = np.zeros((v, 3, 0))
        albedo_mean = albedo_basis = None
        if "color/model/mean" in h5:
            c_mean, c_basis, c_var = _h5_pca(h5, "color", p)
            if c_mean.size != mean.size:
                raise ModelFileError(p, f"'color/model/mean' has {c_mean.size} values, "
                                        f"'shape/model/mean' {mean.size}")
            albedo_mean = flat_to_vertices(c_mean).astype(np.float32)
            albedo_basis = flat_to_vertices(c_basis * np.sqrt(np.maximum(c_var, 0.0))
                                            ).astype(np.float32)
        landmarks, lm_names = _h5_landmarks(h5, flat_to_vertices(mean))
        tri = None
        for key in ("shape/representer/cells", "representer/cells"):
            if key in h5:
                cells = _h5_array(h5, key, p).astype(np.int64)
                tri = cells.T if cells.shape[0] == 3 and cells.shape[1] != 3 else cells
                break
        if tri is None:
            raise ModelFileError(p, "missing key 'shape/representer/cells'")
        if tri.ndim != 2 or tri.shape[1] != 3 or (tri.size and (tri.min() < 0
                                                                 or tri.max() >= v)):
            raise ModelFileError(p, f"'representer/cells' is not (3, F) vertex ids in "
                                    f"0..{v - 1}")
    mean_v = flat_to_vertices(mean).astype(np.float32)
    tri, uv, mirror, made = complete_topology(mean_v, tri, None, None)
    year = "2019" if "2019" in p.name else "2017"
    return MorphableModel(
        name=name or f"bfm{year}",
        mean=mean_v,
        shape_basis=shape.astype(np.float32),
        expression_basis=exp.astype(np.float32),
        triangles=tri,
        uv=uv,
        landmark_ids=landmarks,
        mirror_ids=mirror,
        licence=LICENCE_2017,
        source=f"{p}" + (f" ({'; '.join(made)})" if made else ""),
        albedo_mean=albedo_mean,
        albedo_basis=albedo_basis,
        extras=lm_names,
    )
