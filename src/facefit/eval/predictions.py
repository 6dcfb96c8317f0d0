"""Landmark predictions on disk, so any tool's output can be scored (``--pred FILE``).

A set of predictions maps an image *stem* (file name without directory or extension, e.g.
``"image00002"``) to a (68, 2) or (68, 3) float array, or to ``None`` when the tool found
no face. Coordinates: x right, y down, pixels of the original image, 0-based pixel indices
(the centre of the top-left pixel is (0, 0)). An optional third column is depth in pixels
pointing *towards* the viewer (the AFLW2000-3D ``pt3d_68`` convention; offset arbitrary).
Landmark order: the 68-point iBUG / Multi-PIE layout.

Two file formats, chosen by suffix:

``.npz``
    One array per stem, named by the stem: float (68, 2) or (68, 3). A missing prediction
    is an array of shape (0, 2) (or all NaN). Write with ``numpy.savez(path, **{stem: a})``.
``.json``
    ``{"format": "facefit-landmarks-v1", "landmarks": {stem: [[x, y], ...] | null}}``;
    ``null`` (or an empty list) is a missing prediction; ``NaN`` may appear as ``null`` inside
    a point.

Stems absent from the file are missing too; the evaluators count all of them.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from facefit.detect.base import box_iou
from facefit.io.atomic import atomic_path, write_text_atomic

Predictions = dict[str, np.ndarray | None]
FORMAT = "facefit-landmarks-v1"


def save_predictions(path: str | Path, predictions: Mapping[str, np.ndarray | None]) -> Path:
    """Write predictions as ``.npz`` or ``.json`` (by suffix), atomically; returns the path."""
    path = Path(path)
    if path.suffix == ".json":
        lm: dict[str, Any] = {}
        for stem, p in predictions.items():
            if p is None or np.asarray(p).size == 0:
                lm[stem] = None
            else:
                lm[stem] = [[None if not np.isfinite(v) else float(v) for v in row]
                            for row in np.asarray(p, np.float64)]
        write_text_atomic(path, json.dumps({"format": FORMAT, "landmarks": lm}))
    elif path.suffix == ".npz":
        # Written by hand (not np.savez(**kw)) so any stem is a valid key.
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for stem, p in predictions.items():
                arr = np.zeros((0, 2)) if p is None else np.asarray(p, np.float64)
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                zf.writestr(f"{stem}.npy", buf.getvalue())
    else:
        raise ValueError(f"prediction files are .npz or .json, got {path.name}")
    return path


def load_predictions(path: str | Path) -> Predictions:
    """Read a ``.npz`` or ``.json`` prediction file; missing predictions become ``None``."""
    path = Path(path)
    out: Predictions = {}
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data["landmarks"] if isinstance(data, dict) and "landmarks" in data else data
        for stem, pts in items.items():
            if not pts:
                out[stem] = None
                continue
            out[stem] = np.array([[np.nan if v is None else float(v) for v in row] for row in pts],
                                 np.float64)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            for stem in npz.files:
                arr = np.asarray(npz[stem], np.float64)
                out[stem] = arr if arr.size else None
    else:
        raise ValueError(f"prediction files are .npz or .json, got {path.name}")
    for stem, arr in out.items():
        if arr is not None and (arr.ndim != 2 or arr.shape[1] not in (2, 3)):
            raise ValueError(f"{path}: prediction {stem!r} has shape {arr.shape}, need (68, 2|3)")
        if arr is not None and not np.isfinite(arr).any():
            out[stem] = None
    return out


def landmark_box(points: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] bounding box of (N, >=2) points (NaN ignored)."""
    p = np.asarray(points, np.float64)
    return np.array([np.nanmin(p[:, 0]), np.nanmin(p[:, 1]),
                     np.nanmax(p[:, 0]), np.nanmax(p[:, 1])])


# IoU of a scored face's 68-point box with the annotated face's under which it is another face
# (a person beside or behind the annotated one) rather than the annotated face read badly. On
# AFLW2000-3D dev the `auto` faces fall into two groups: 3 at 0.00-0.01 (another person, or a
# face reflected in the subject's sunglasses) and the rest at 0.17 or more (the annotated face,
# its profile misread); any bar in between counts the same images.
ANOTHER_FACE_IOU = 0.1


def another_face(pred: np.ndarray, gt: np.ndarray, max_iou: float = ANOTHER_FACE_IOU
                 ) -> np.ndarray:
    """(N,) bool: the face scored for image i is not the annotated one, its 68-point box
    (``pred`` (N, 68, >=2), NaN where no face was found) overlapping the annotated face's box
    (``gt`` (N, 68, >=2)) by an IoU under ``max_iou``. A detector's own-detection benchmark
    then counts such an image as a miss (no face found for the annotated subject) beside the
    strict count that scores the other face's points."""
    pred = np.asarray(pred, np.float64)[:, :, :2]
    gt = np.asarray(gt, np.float64)[:, :, :2]
    found = np.isfinite(pred).any(axis=(1, 2))
    filled = np.where(found[:, None, None], pred, 0.0)  # rows without a face are all NaN
    a = np.concatenate([np.nanmin(filled, 1), np.nanmax(filled, 1)], 1)
    b = np.concatenate([gt.min(1), gt.max(1)], 1)
    return found & (box_iou(a, b) < max_iou)


def select_face(boxes: list[np.ndarray], gt_points: np.ndarray | None) -> int:
    """Index of the face to score when a detector finds several.

    With ground truth: the box with the highest IoU with the GT landmarks' bounding box; if
    no box overlaps it, the box whose centre is nearest to the GT box centre. Without ground
    truth: the first (the detectors return the best first). This uses the GT only to decide
    *which* face the annotation belongs to, as is usual on these benchmarks.
    """
    if not boxes:
        raise ValueError("no faces to select from")
    if gt_points is None or len(boxes) == 1:
        return 0
    gt_box = landmark_box(gt_points)
    ious = [float(box_iou(b, gt_box)) for b in boxes]
    if max(ious) > 0:
        return int(np.argmax(ious))
    centre = (gt_box[:2] + gt_box[2:]) / 2
    dists = [np.linalg.norm((np.asarray(b[:2]) + np.asarray(b[2:4])) / 2 - centre) for b in boxes]
    return int(np.argmin(dists))


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; EXIF orientation is *not* applied (benchmarks annotate raw pixels)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def predict_with_facefit(
    image_paths: Iterable[str | Path],
    reconstructor: Any,
    gt_landmarks: Mapping[str, np.ndarray] | None = None,
    convention: str = "aflw2000",
    progress: bool = False,
) -> Predictions:
    """Run facefit on each image and keep one face's 68 landmarks per image.

    Args:
        image_paths: images; the prediction key is each file's stem.
        reconstructor: a `facefit.Reconstructor` (anything with ``reconstruct(image_rgb)``
            returning objects with ``.face.box`` and ``.fit``).
        gt_landmarks: stem -> (68, >=2) ground truth, used only to pick the face when
            several are found (see `select_face`).
        convention: ``"aflw2000"`` keeps all 68 model landmarks, hidden ones included, as
            (68, 3) with z towards the viewer; ``"300w"`` uses the jaw points that follow
            the visible silhouette (``landmarks_68_2d_contour``), as (68, 2).
        progress: print one line per image to stderr.

    Returns:
        stem -> landmarks, or None where no face was found.
    """
    import sys

    if convention not in ("aflw2000", "300w"):
        raise ValueError(f"convention must be 'aflw2000' or '300w', got {convention!r}")
    paths = [Path(p) for p in image_paths]
    out: Predictions = {}
    for i, path in enumerate(paths):
        recs = reconstructor.reconstruct(load_rgb(path))
        if not recs:
            out[path.stem] = None
        else:
            gt = None if gt_landmarks is None else gt_landmarks.get(path.stem)
            rec = recs[select_face([np.asarray(r.face.box) for r in recs], gt)]
            fit = rec.fit
            if convention == "300w":
                out[path.stem] = np.asarray(fit.landmarks_68_2d_contour, np.float64)[:, :2].copy()
            else:
                pts = np.asarray(fit.landmarks_68_3d, np.float64).copy()
                pts[:, :2] = np.asarray(fit.landmarks_68_2d, np.float64)
                pts[:, 2] = -pts[:, 2]  # facefit depth grows away from the viewer
                out[path.stem] = pts
        if progress:
            status = "no face" if out[path.stem] is None else f"{len(recs)} face(s)"
            print(f"[{i + 1}/{len(paths)}] {path.name}: {status}", file=sys.stderr)
    return out
