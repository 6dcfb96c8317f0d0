"""Readers for evaluation data: AFLW2000-3D, 300-W style ``.pts`` folders and landmark files.

Coordinate conventions (all readers return float64 arrays):

* 2D landmarks are ``(N, 2)`` ``[x, y]`` in pixels, origin at the top-left, y down, with
  0-based pixel indices (the centre of the top-left pixel is ``(0, 0)``).
* iBUG ``.pts`` files (300-W, Sagonas et al., ICCV-W 2013 / IMAVIS 2016) are 1-based; the
  ``.pts`` reader subtracts 1 unless ``one_based=False`` (menpo does the same).
* AFLW2000-3D ``pt3d_68`` (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution",
  CVPR 2016) is used as stored: x, y in image pixels, z in pixels pointing *towards* the
  viewer (the nose tip has the largest z on frontal faces); only z differences are meaningful.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


# ----------------------------------------------------------------------------- landmark files


def read_pts(path: str | Path, one_based: bool = True) -> np.ndarray:
    """Read an iBUG ``.pts`` file in either layout: with the ``version: 1`` / ``n_points: N`` /
    ``{ ... }`` header, or bare ``x y`` lines.

    Returns (N, 2) float64 ``[x, y]`` pixels; 1 is subtracted when ``one_based`` (the iBUG
    convention) so the result uses 0-based pixel indices.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    n_expected: int | None = None
    if "{" in lines:
        for ln in lines[: lines.index("{")]:
            m = re.match(r"n_points\s*:\s*(\d+)", ln)
            if m:
                n_expected = int(m.group(1))
        end = lines.index("}") if "}" in lines else len(lines)
        body = lines[lines.index("{") + 1 : end]
    else:
        body = [ln for ln in lines if not re.match(r"^(version|n_points)\s*:", ln)]
    rows = [[float(v) for v in ln.replace(",", " ").split()[:2]] for ln in body]
    pts = np.asarray(rows, np.float64).reshape(-1, 2)
    if n_expected is not None and len(pts) != n_expected:
        raise ValueError(f"{path}: header says n_points {n_expected}, found {len(pts)} points")
    return pts - 1.0 if one_based else pts


def write_pts(path: str | Path, points: np.ndarray, one_based: bool = True) -> None:
    """Write (N, 2) 0-based ``[x, y]`` points as an iBUG ``.pts`` file with the header."""
    pts = np.asarray(points, np.float64) + (1.0 if one_based else 0.0)
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in pts[:, :2])
    Path(path).write_text(f"version: 1\nn_points:  {len(pts)}\n{{\n{body}\n}}\n",
                          encoding="utf-8")


def read_ljson(path: str | Path, group: str | None = None, swap_2d: bool = True) -> np.ndarray:
    """Read a menpo ``.ljson`` landmark file (versions 1, 2 and 3).

    menpo stores 2D image points as ``[y, x]``; they are swapped to ``[x, y]`` when
    ``swap_2d``. 3D points are returned as stored. ``null`` coordinates become NaN.
    ``group`` picks a group of a version-3 file (default: the first).

    Returns (N, 2) or (N, 3) float64.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    version = data.get("version", 1)
    if version == 3 or "groups" in data and isinstance(data["groups"], dict):
        groups = data["groups"]
        key = group if group is not None else next(iter(groups))
        points = groups[key]["landmarks"]["points"]
    elif version == 2 or "landmarks" in data and isinstance(data["landmarks"], dict):
        points = data["landmarks"]["points"]
    else:  # version 1: {"groups": [{"landmarks": [{"point": [...]}, ...]}, ...]}
        groups = data["groups"]
        chosen = groups[0] if group is None else next(g for g in groups if g["label"] == group)
        points = [lm["point"] for lm in chosen["landmarks"]]
    arr = np.array([[np.nan if v is None else float(v) for v in p] for p in points], np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{path}: no landmark points found")
    if arr.shape[1] == 2 and swap_2d:
        arr = arr[:, ::-1].copy()
    return arr


def read_pp(path: str | Path) -> np.ndarray:
    """Read a MeshLab picked-points ``.pp`` file (as shipped with NoW scans): (N, 3) float64."""
    root = ET.parse(path).getroot()
    pts = [[float(p.get(k, "nan")) for k in ("x", "y", "z")] for p in root.iter("point")]
    return np.asarray(pts, np.float64).reshape(-1, 3)


def read_landmarks(path: str | Path, one_based_pts: bool = True) -> np.ndarray:
    """Read landmarks from ``.ljson`` (menpo), ``.pts`` (iBUG), ``.pp`` (MeshLab), ``.npy`` or
    ``.txt``/``.csv`` (whitespace- or comma-separated rows).

    ``.npy`` arrays shaped (2, N) or (3, N) with N > 3 are transposed. Returns (N, D) float64
    with D = 2 or 3, in the file's units (``.pts`` shifted to 0-based, see `read_pts`).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".pts":
        return read_pts(p, one_based=one_based_pts)
    if suffix == ".ljson":
        return read_ljson(p)
    if suffix == ".pp":
        return read_pp(p)
    if suffix == ".npy":
        arr = np.asarray(np.load(p, allow_pickle=False), np.float64)
    elif suffix in (".txt", ".csv", ".xyz"):
        text = p.read_text(encoding="utf-8").replace(",", " ")
        rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        arr = np.asarray([[float(v) for v in r] for r in rows], np.float64)
    else:
        raise ValueError(f"unknown landmark file type {p.suffix!r} (use .ljson .pts .pp .npy .txt)")
    arr = np.squeeze(arr)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 3 if arr.size % 3 == 0 and arr.size % 2 else 2)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2D array of points, got shape {arr.shape}")
    if arr.shape[0] in (2, 3) and arr.shape[1] > 3:
        arr = arr.T
    if arr.shape[1] not in (2, 3):
        raise ValueError(f"{path}: points must have 2 or 3 coordinates, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class AFLW2000Sample:
    """One AFLW2000-3D image with its ground truth.

    Attributes:
        stem: file name without extension, e.g. ``"image00002"``.
        image_path: the ``.jpg``.
        landmarks_3d: (68, 3) float64 ``pt3d_68`` transposed: x, y pixels, z towards viewer.
        yaw_deg, pitch_deg, roll_deg: ``Pose_Para[0][1]``, ``[0][0]``, ``[0][2]`` in degrees.
    """

    stem: str
    image_path: Path
    landmarks_3d: np.ndarray
    yaw_deg: float
    pitch_deg: float
    roll_deg: float

    @property
    def landmarks_2d(self) -> np.ndarray:
        """(68, 2) x, y of the ground-truth 68 landmarks (the 3DDFA evaluation's GT)."""
        return self.landmarks_3d[:, :2]


def read_aflw2000_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an AFLW2000-3D ``.mat``: (68, 3) ``pt3d_68`` transposed, (7,) ``Pose_Para``
    (pitch, yaw, roll in radians, tx, ty, tz, scale)."""
    from scipy.io import loadmat

    mat = loadmat(str(path))
    pts = np.asarray(mat["pt3d_68"], np.float64)
    if pts.shape == (3, 68):
        pts = pts.T
    if pts.shape != (68, 3):
        raise ValueError(f"{path}: pt3d_68 has shape {pts.shape}, expected (3, 68)")
    return np.ascontiguousarray(pts), np.asarray(mat["Pose_Para"], np.float64).reshape(-1)


def load_aflw2000(root: str | Path, limit: int | None = None) -> list[AFLW2000Sample]:
    """Every ``.mat`` in ``root`` with its image, sorted by stem (first ``limit`` if given)."""
    root = Path(root)
    mats = sorted(root.glob("*.mat"))
    if not mats:
        raise FileNotFoundError(f"no AFLW2000-3D .mat files in {root}")
    out = []
    for mat in mats[:limit] if limit else mats:
        image = _find_image(mat)
        pts, pose = read_aflw2000_mat(mat)
        pitch, yaw, roll = np.degrees(pose[:3])
        out.append(AFLW2000Sample(mat.stem, image, pts, float(yaw), float(pitch), float(roll)))
    return out


@dataclass(frozen=True)
class LandmarkSample:
    """One image with (N, 2) 0-based ground-truth landmarks (300-W style)."""

    stem: str
    image_path: Path
    landmarks: np.ndarray


def load_300w(root: str | Path, limit: int | None = None,
              one_based: bool = True) -> list[LandmarkSample]:
    """Every ``.pts`` under ``root`` (recursively) with the image of the same stem, sorted.

    Stems must be unique (they key the predictions). Points are 0-based (see `read_pts`).
    """
    root = Path(root)
    pts_files = sorted(root.rglob("*.pts"))
    if not pts_files:
        raise FileNotFoundError(f"no .pts files under {root}")
    out: list[LandmarkSample] = []
    seen: set[str] = set()
    for pts in pts_files[:limit] if limit else pts_files:
        if pts.stem in seen:
            raise ValueError(f"duplicate stem {pts.stem!r} under {root}")
        seen.add(pts.stem)
        out.append(LandmarkSample(pts.stem, _find_image(pts), read_pts(pts, one_based)))
    return out


def _find_image(path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no image next to {path}")
