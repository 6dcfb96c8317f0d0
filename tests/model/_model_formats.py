"""Synthetic morphable model and writers of each publisher's on-disk layout (for tests)."""

from __future__ import annotations

import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np

from facefit.model.morphable_model import MorphableModel

SHAPE_SIGMAS = np.array([6.0, 4.5, 3.0, 2.0, 1.5, 1.0])
EXP_SIGMAS = np.array([3.0, 2.0, 1.0, 0.5])


def grid_face(n: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(points (V, 3) mm, triangles (F, 3), uv (V, 2), mirror (V,)) of a curved n x n grid."""
    gx, gy = np.meshgrid(np.linspace(-60, 60, n), np.linspace(-75, 75, n))
    z = 40.0 - 0.004 * gx**2 - 0.003 * gy**2
    pts = np.column_stack([gx.ravel(), gy.ravel(), z.ravel()])
    tri = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            tri += [[a, b, e], [a, e, d]]
    uv = np.column_stack([(gx.ravel() + 60) / 120, (gy.ravel() + 75) / 150])
    idx = np.arange(n * n).reshape(n, n)
    mirror = idx[:, ::-1].ravel()
    return pts, np.asarray(tri, np.int32), uv.astype(np.float32), mirror.astype(np.int64)


def make_model(seed: int = 0, n: int = 12, albedo: bool = True) -> MorphableModel:
    """A small synthetic model: orthogonal sigma-scaled shape (6) and expression (4) bases."""
    rng = np.random.default_rng(seed)
    pts, tri, uv, mirror = grid_face(n)
    v = pts.shape[0]
    q, _ = np.linalg.qr(rng.standard_normal((3 * v, 10)))
    shape = (q[:, :6] * SHAPE_SIGMAS).reshape(v, 3, 6)
    exp = (q[:, 6:] * EXP_SIGMAS).reshape(v, 3, 4)
    lm = np.sort(rng.choice(v, 68, replace=False)).astype(np.int64)
    alb_mean = alb_basis = None
    if albedo:
        alb_mean = (0.5 + 0.1 * rng.random((v, 3))).astype(np.float32)
        qa, _ = np.linalg.qr(rng.standard_normal((3 * v, 3)))
        alb_basis = (qa * np.array([0.5, 0.3, 0.1])).reshape(v, 3, 3).astype(np.float32)
    return MorphableModel(
        name="synthetic", mean=pts.astype(np.float32), shape_basis=shape.astype(np.float32),
        expression_basis=exp.astype(np.float32), triangles=tri, uv=uv,
        landmark_ids={"ibug68": lm}, mirror_ids=mirror, licence="test data", source="synthetic",
        albedo_mean=alb_mean, albedo_basis=alb_basis)


def _flat(a: np.ndarray) -> np.ndarray:
    """(V, 3, K) -> (3V, K) or (V, 3) -> (3V,)."""
    return a.reshape(a.shape[0] * 3, -1) if a.ndim == 3 else a.reshape(-1)


def _sig(basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit columns (3V, K), column norms (K,)) of a sigma-scaled basis."""
    flat = _flat(basis).astype(np.float64)
    s = np.linalg.norm(flat, axis=0)
    return flat / s, s


# ---- BFM 2009 ------------------------------------------------------------------------------

def write_bfm2009(folder: Path, model: MorphableModel, expression_file: bool = True) -> Path:
    """01_MorphableModel.mat (um, 1-based tl) + Model_Expression.mat (3DDFA layout)."""
    import scipy.io

    pc, ev = _sig(model.shape_basis)
    tpc, tev = _sig(model.albedo_basis)
    fields = {
        "shapeMU": (_flat(model.mean) * 1000.0).reshape(-1, 1),
        "shapePC": pc * 1000.0,
        "shapeEV": ev.reshape(-1, 1),
        "texMU": (_flat(model.albedo_mean) * 255.0).reshape(-1, 1),
        "texPC": tpc * 255.0,
        "texEV": tev.reshape(-1, 1),
        "tl": (model.triangles + 1).astype(np.float64),
        "segbin": np.zeros((model.num_vertices, 4)),
        "keypoints": (model.landmark_ids["ibug68"] + 1).astype(np.float64).reshape(1, -1),
    }
    path = folder / "01_MorphableModel.mat"
    scipy.io.savemat(path, fields)
    if expression_file:
        epc, eev = _sig(model.expression_basis)
        scipy.io.savemat(folder / "Model_Expression.mat", {
            "mu_exp": np.zeros((3 * model.num_vertices, 1)),
            "w_exp": epc * 1000.0,
            "sigma_exp": eev.reshape(-1, 1),
        })
    return path


def write_exp_pca_bin(path: Path, mean_um: np.ndarray, basis_um: np.ndarray) -> None:
    """Deep3D Exp_Pca.bin: int32 K, float32 mean (3V), float32 PC component-major (K, 3V)."""
    k = basis_um.shape[2]
    with open(path, "wb") as fh:
        fh.write(struct.pack("<i", k))
        fh.write(_flat(mean_um).astype("<f4").tobytes())
        fh.write(_flat(basis_um).T.astype("<f4").tobytes())


# ---- BFM 2017 ------------------------------------------------------------------------------

def write_bfm2017(path: Path, model: MorphableModel) -> Path:
    """statismo .h5: {shape,expression,color}/model/{mean,pcaBasis,pcaVariance}, representer."""
    import h5py

    with h5py.File(path, "w") as h5:
        for group, mean, basis in (("shape", model.mean, model.shape_basis),
                                   ("expression", np.zeros_like(model.mean),
                                    model.expression_basis),
                                   ("color", model.albedo_mean, model.albedo_basis)):
            u, s = _sig(basis)
            g = h5.create_group(f"{group}/model")
            g["mean"] = _flat(mean).astype(np.float32)
            g["pcaBasis"] = u.astype(np.float32)
            g["pcaVariance"] = (s**2).astype(np.float32)
            g["noiseVariance"] = np.float32(0.0)
            r = h5.create_group(f"{group}/representer")
            r["points"] = model.mean.T.astype(np.float32)
            r["cells"] = model.triangles.T.astype(np.uint32)
    return path


# ---- FLAME ---------------------------------------------------------------------------------

def chumpy_module() -> tuple[type, dict[str, types.ModuleType]]:
    """A stand-in ``chumpy.ch.Ch`` class and the fake modules that make pickle name it so."""
    ch_pkg = types.ModuleType("chumpy")
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        """Pickles like chumpy's Ch: state dict with the array under 'x'."""

        def __init__(self, x: np.ndarray) -> None:
            self.x = np.asarray(x, np.float64)

        def __getstate__(self) -> dict[str, object]:
            return {"x": self.x, "_dirty_vars": set(), "_itr": None,
                    "_depends_on_deps": {}, "_make_dense": False, "_make_sparse": False}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch  # type: ignore[attr-defined]
    ch_pkg.ch = ch_mod  # type: ignore[attr-defined]
    return Ch, {"chumpy": ch_pkg, "chumpy.ch": ch_mod}


def flame_arrays(model: MorphableModel, n_shape: int = 300, n_exp: int = 100,
                 seed: int = 1) -> dict[str, np.ndarray]:
    """FLAME-layout arrays (metres) for ``model``: shapedirs padded to n_shape + n_exp."""
    rng = np.random.default_rng(seed)
    v = model.num_vertices
    sd = np.zeros((v, 3, n_shape + n_exp))
    sd[:, :, : model.num_shape] = model.shape_basis / 1000.0
    sd[:, :, n_shape: n_shape + model.num_expression] = model.expression_basis / 1000.0
    weights = np.zeros((v, 5))
    weights[:, 0] = 1.0
    jaw = model.mean[:, 1] < -30  # lower part follows the jaw
    weights[jaw, 0], weights[jaw, 2] = 0.2, 0.8
    jreg = np.zeros((5, v))
    for j, ids in enumerate(np.array_split(rng.permutation(v), 5)):
        jreg[j, ids[:4]] = 0.25
    return {
        "v_template": model.mean / 1000.0,
        "shapedirs": sd,
        "posedirs": rng.standard_normal((v, 3, 36)) * 1e-4,
        "J_regressor": jreg,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
        "f": model.triangles.astype(np.uint32),
    }


def write_flame(path: Path, arrays: dict[str, np.ndarray], monkeypatch: object) -> Path:
    """Pickle (protocol 2) FLAME arrays with chumpy Ch objects and a scipy.sparse regressor."""
    import scipy.sparse

    ch_cls, modules = chumpy_module()
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)  # type: ignore[attr-defined]
    data = {
        "v_template": ch_cls(arrays["v_template"]),
        "shapedirs": ch_cls(arrays["shapedirs"]),
        "posedirs": arrays["posedirs"],
        "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
        "weights": ch_cls(arrays["weights"]),
        "kintree_table": arrays["kintree_table"],
        "f": arrays["f"],
        "J": ch_cls(arrays["J_regressor"] @ arrays["v_template"]),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    for name in modules:
        monkeypatch.delitem(sys.modules, name)  # type: ignore[attr-defined]
    return path


# ---- FaceScape -----------------------------------------------------------------------------

def make_bilinear_core(seed: int = 2, n: int = 10, n_id: int = 5, n_exp: int = 4
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(core (3V, I, E), triangles, uv, landmarks) with core[..., 0] the neutral faces."""
    rng = np.random.default_rng(seed)
    pts, tri, uv, _ = grid_face(n)
    v = pts.shape[0]
    core = rng.standard_normal((3 * v, n_id, n_exp)) * 2.0
    core[:, 0, 0] += pts.ravel()  # identity weight 0 ~ mean face
    core[:, 0, 1:] += pts.ravel()[:, None]  # expressions are whole faces, as in FaceScape
    lm = np.sort(rng.choice(v, 68, replace=False))
    return core, tri, uv, lm


def write_facescape(path: Path, core: np.ndarray, tri: np.ndarray, uv: np.ndarray,
                    lm: np.ndarray, id_mean: np.ndarray, id_var: np.ndarray) -> Path:
    """FaceScape bm .npz: shape_bm_core, id_mean, id_var, 1-based fv/ft, texcoords, lm_list."""
    np.savez(path, shape_bm_core=core.astype(np.float32), id_mean=id_mean, id_var=id_var,
             fv_indices=tri + 1, ft_indices=tri + 1, texcoords=uv,
             lm_list_v16=lm, vert_num=np.array(core.shape[0] // 3),
             face_num=np.array(tri.shape[0]))
    return path


# ---- eos / SFM cereal ----------------------------------------------------------------------

class CerealWriter:
    """Little-endian cereal binary stream writer (what eos's BinaryOutputArchive emits)."""

    def __init__(self, portable: bool = False) -> None:
        self.buf = bytearray(b"\x01" if portable else b"")

    def u32(self, x: int) -> None:
        self.buf += struct.pack("<I", x)

    def i32(self, x: int) -> None:
        self.buf += struct.pack("<i", x)

    def size(self, n: int) -> None:
        self.buf += struct.pack("<Q", n)

    def boolean(self, b: bool) -> None:
        self.buf += struct.pack("<?", b)

    def string(self, s: str) -> None:
        data = s.encode()
        self.size(len(data))
        self.buf += data

    def matrix(self, m: np.ndarray) -> None:
        m = np.atleast_2d(np.asarray(m, np.float32))
        if m.shape[0] == 1 and m.ndim == 2 and m.size and m.shape[1] != 1:
            m = m.T  # column vector
        self.i32(m.shape[0])
        self.i32(m.shape[1])
        self.buf += np.asarray(m, "<f4").T.tobytes()  # column-major

    def triangles(self, t: np.ndarray) -> None:
        self.size(t.shape[0])
        self.buf += np.asarray(t, "<i4").tobytes()

    def pca(self, mean: np.ndarray, basis: np.ndarray, eigenvalues: np.ndarray,
            tri: np.ndarray) -> None:
        self.matrix(np.asarray(mean).reshape(-1, 1))
        self.matrix(basis)
        self.matrix(np.asarray(eigenvalues).reshape(-1, 1))
        self.triangles(tri)

    def empty_pca(self) -> None:
        for _ in range(3):
            self.i32(0)
            self.i32(0)
        self.size(0)


def write_eos_bin(path: Path, model: MorphableModel, version: int = 4, portable: bool = False,
                  blendshapes: bool = False, landmark_definitions: dict[str, int] | None = None,
                  color: bool = True) -> Path:
    """An eos MorphableModel cereal archive of ``model`` (see io_sfm's layout)."""
    w = CerealWriter(portable)
    w.u32(version)
    u, s = _sig(model.shape_basis)
    w.pca(_flat(model.mean), u, s**2, model.triangles)
    if color:
        cu, cs = _sig(model.albedo_basis)
        w.pca(_flat(model.albedo_mean), cu, cs**2, model.triangles)
    else:
        w.empty_pca()
    if version >= 2:
        w.boolean(False)  # expression_model present
        if blendshapes:
            w.i32(1)
            flat = _flat(model.expression_basis)
            w.size(flat.shape[1])
            for k in range(flat.shape[1]):
                w.string(f"bs{k}")
                w.matrix(flat[:, k].reshape(-1, 1))
        else:
            w.i32(0)
            eu, es = _sig(model.expression_basis)
            w.pca(np.zeros(3 * model.num_vertices), eu, es**2, model.triangles)
    if version >= 3:
        if landmark_definitions is None:
            w.boolean(True)
        else:
            w.boolean(False)
            w.size(len(landmark_definitions))
            for k, val in landmark_definitions.items():
                w.string(k)
                w.i32(val)
    uv = model.uv.astype(np.float64).copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # eos: v down
    w.size(uv.shape[0])
    w.buf += uv.astype("<f8").tobytes()
    if version >= 4:
        w.triangles(model.triangles)
    path.write_bytes(bytes(w.buf))
    return path


def write_ibug_mapping(path: Path, ids: np.ndarray, skip: tuple[int, ...] = ()) -> Path:
    """ibug_to_sfm.txt (TOML) mapping 1-based iBUG numbers to vertex ids."""
    lines = ["# Mapping from the 68-point ibug annotations to model vertex indices.",
             "[landmark_mappings]"]
    for i, vid in enumerate(ids, 1):
        if i in skip:
            lines.append(f"            # {i} not defined")
        else:
            lines.append(f"{i:2d} = {int(vid):5d}  # point {i}")
    lines += ["", "[contour_landmarks]", "right = [ 1,", "  2, 3, 4, 5, 6, 7, 8", "]",
              "left  = [ 10, 11, 12, 13, 14, 15, 16, 17 ]"]
    path.write_text("\n".join(lines) + "\n")
    return path
