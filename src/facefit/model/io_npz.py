"""facefit's own model format: one uncompressed ``.npz`` archive (``numpy.savez``).

Keys (V vertices, F triangles, Ks/Ke/Ka components, all arrays C-contiguous):

====================  ============  ==========================================================
key                   dtype/shape   meaning
====================  ============  ==========================================================
``format``            str ()        always ``"facefit-morphable-model"``
``format_version``    int64 ()      ``1``
``kind``              str ()        model kind (`MorphableModel.kind`: ``linear``, ``flame``,
                                    ``bilinear``, ``ict``); files without it are ``linear``
``name``              str ()        short model name
``licence``           str ()        one-line licence note of the data
``source``            str ()        where the data came from
``mean``              f32 (V, 3)    mean face, millimetres, x to the face's left, y up,
                                    z towards a frontal viewer
``shape_basis``       f32 (V, 3, Ks)  identity basis scaled by its prior sigmas (mm per unit,
                                    coefficients a priori N(0, 1))
``expression_basis``  f32 (V, 3, Ke)  expression basis, same convention (Ke may be 0)
``triangles``         i32 (F, 3)    0-based vertex ids, counter-clockwise from outside
``uv``                f32 (V, 2)    texture coordinates in [0, 1], v up
``mirror_ids``        i64 (V,)      left/right mirror vertex of each vertex
``landmarks/NAME``    i64 (L,)      vertex ids of landmark set NAME (``landmarks/ibug68``)
``albedo_mean``       f32 (V, 3)    optional per-vertex albedo in [0, 1]
``albedo_basis``      f32 (V, 3, Ka)  optional albedo basis scaled by its prior sigmas
``extras/NAME``       any           model-specific arrays (`MorphableModel.extras`), e.g.
                                    ``shape_eigenvalues`` (Ks,) mm^2 and
                                    ``shape_total_variance`` () mm^2 written by `build`
====================  ============  ==========================================================

Nothing is pickled: `facefit.io.safe_pickle.read_npz` (pickle-free mode, sizes checked
against the archive before allocation) reads every key; an object member is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefit.io.atomic import atomic_path
from facefit.io.safe_pickle import NpzArchive, PickleDataError, read_npz
from facefit.model.io_common import ModelFileError, PathLike, read_model_file
from facefit.model.morphable_model import MODEL_KINDS, MorphableModel

FORMAT = "facefit-morphable-model"
FORMAT_VERSION = 1
REQUIRED = ("mean", "shape_basis", "expression_basis", "triangles", "uv", "mirror_ids")


def model_to_arrays(model: MorphableModel) -> dict[str, np.ndarray]:
    """The ``.npz`` key -> array mapping for ``model`` (see module docstring)."""
    out: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION, np.int64),
        "kind": np.array(model.kind),
        "name": np.array(model.name),
        "licence": np.array(model.licence),
        "source": np.array(model.source),
        "mean": np.ascontiguousarray(model.mean, np.float32),
        "shape_basis": np.ascontiguousarray(model.shape_basis, np.float32),
        "expression_basis": np.ascontiguousarray(model.expression_basis, np.float32),
        "triangles": np.ascontiguousarray(model.triangles, np.int32),
        "uv": np.ascontiguousarray(model.uv, np.float32),
        "mirror_ids": np.ascontiguousarray(model.mirror_ids, np.int64),
    }
    for name, ids in model.landmark_ids.items():
        out[f"landmarks/{name}"] = np.asarray(ids, np.int64)
    if model.albedo_mean is not None:
        out["albedo_mean"] = np.ascontiguousarray(model.albedo_mean, np.float32)
    if model.albedo_basis is not None:
        out["albedo_basis"] = np.ascontiguousarray(model.albedo_basis, np.float32)
    for name, value in model.extras.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"extras[{name!r}] is an object array; .npz models are pickle-free")
        out[f"extras/{name}"] = arr
    return out


def save_npz(model: MorphableModel, path: PathLike) -> Path:
    """Write ``model`` to ``path`` (atomically) in facefit's ``.npz`` format."""
    arrays = model_to_arrays(model)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return Path(path)


def _str(z: NpzArchive, key: str, default: str = "") -> str:
    return str(z[key][()]) if key in z.files else default


def load_npz(path: PathLike) -> MorphableModel:
    """Read a facefit ``.npz`` model; a missing key raises `ModelFileError` naming it."""
    p = Path(path)
    with read_model_file(read_npz, p) as z:
        try:
            files = set(z.files)
            if "format" in files and _str(z, "format") != FORMAT:
                raise ModelFileError(p, f"key 'format' is {_str(z, 'format')!r}, not {FORMAT!r}")
            for key in REQUIRED:
                if key not in files:
                    raise ModelFileError(p, f"missing key '{key}' (not a facefit model .npz)")
            version = int(z["format_version"]) if "format_version" in files else FORMAT_VERSION
            if version > FORMAT_VERSION:
                raise ModelFileError(p, f"format_version {version} is newer than this facefit "
                                        f"({FORMAT_VERSION})")
            kind = _str(z, "kind", "linear")  # files written before kinds were stored
            if kind not in MODEL_KINDS:
                raise ModelFileError(p, f"key 'kind' is {kind!r}, expected one of "
                                        f"{', '.join(MODEL_KINDS)}")
            landmarks = {k.split("/", 1)[1]: np.asarray(z[k], np.int64)
                         for k in z.files if k.startswith("landmarks/")}
            extras = {k.split("/", 1)[1]: np.asarray(z[k])
                      for k in z.files if k.startswith("extras/")}
            return MorphableModel(
                name=_str(z, "name", p.stem),
                mean=np.asarray(z["mean"], np.float32),
                shape_basis=np.asarray(z["shape_basis"], np.float32),
                expression_basis=np.asarray(z["expression_basis"], np.float32),
                triangles=np.asarray(z["triangles"], np.int32),
                uv=np.asarray(z["uv"], np.float32),
                landmark_ids=landmarks,
                mirror_ids=np.asarray(z["mirror_ids"], np.int64),
                licence=_str(z, "licence"),
                source=_str(z, "source", str(p)),
                albedo_mean=(np.asarray(z["albedo_mean"], np.float32)
                             if "albedo_mean" in files else None),
                albedo_basis=(np.asarray(z["albedo_basis"], np.float32)
                              if "albedo_basis" in files else None),
                extras=extras,
                kind=kind,
            )
        except ModelFileError:
            raise
        except PickleDataError as exc:
            raise ModelFileError(p, str(exc)) from None
        except ValueError as exc:  # shape mismatches from MorphableModel, truncated members
            raise ModelFileError(p, str(exc).splitlines()[0]) from None
        except Exception as exc:
            problem = f"truncated or corrupt archive ({type(exc).__name__})"
            raise ModelFileError(p, problem) from None
