"""Face profiling: large-pose training views synthesised from one photo and its 68 points.

The idea of 300W-LP (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution", CVPR
2016): fit a 3DMM to a near-frontal face, rotate the head out of plane in 3D and re-render the
photo, so that every new view carries exact pose, shape and expression labels.

Here the scene is two meshes, both textured by the photo itself (each vertex carries the
source-image position it was seen at, and the rendered per-pixel source position samples the
photo):

* the fitted face mesh (the default model's dense vertices), rotated rigidly and drawn in front
  of everything around it;
* a coarse grid over and beyond the crop whose depth is the face's depth under the face and,
  outside it, a harmonic (Laplace) fill of the face's depth plus a slope times the distance to
  the face (the surroundings recede like the side of a head). Each grid node moves by
  ``w * rotation`` with a harmonic weight ``w`` (1 on the face, 0 at the crop border): hair,
  ears and near background turn with the head, the far background stays, so the new view is a
  plausible photo rather than a face pasted on black.

Labels follow the scaled orthographic camera of `facefit.fit.camera`: image point
``A v + (tx, ty)`` with ``A = s * diag(1, -1, -1) @ R``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import rotation_from_euler
from facefit.fit.face_fit import fit_face
from facefit.fit.result import FitResult
from facefit.model.morphable_model import MorphableModel
from facefit.render.raster import interpolate, rasterize

if TYPE_CHECKING:
    from scipy import sparse

__all__ = [
    "IBUG68_MIRROR", "ProfiledView", "crop_view", "fit_crop", "mirror_coefficient_maps",
    "mirror_view", "photometric_augment", "read_300w_face", "synthesise_view", "view_from_fit",
]

# iBUG-68 index of each point's left/right counterpart (0-based).
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65],
    np.int64)

_G = np.diag([1.0, -1.0, -1.0])  # view frame (y up, z to viewer) <-> image (y down, depth)


@dataclass(frozen=True, eq=False)
class ProfiledView:
    """One synthesised view and its exact labels.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        rotation: (3, 3) model frame to view frame (`facefit.fit.camera` conventions).
        scale: pixels per mm.
        translation: (2,) image position of the model origin, pixels.
        shape: (Ks,) float32 identity coefficients (N(0, 1) prior).
        expression: (Ke,) float32 expression coefficients.
        landmarks_68: (68, 2) float32 projections of the 68 landmark vertices (hidden ones too).
    """

    image: np.ndarray
    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    shape: np.ndarray
    expression: np.ndarray
    landmarks_68: np.ndarray

    @property
    def linear_map(self) -> np.ndarray:
        """(2, 3) ``A`` with image xy = ``A v + translation`` for model-frame ``v`` (mm)."""
        return (self.scale * _G @ self.rotation)[:2]

    @property
    def pose8(self) -> np.ndarray:
        """(8,) float32 network pose target: ``A`` row-major, then ``translation``."""
        return np.r_[self.linear_map.ravel(), self.translation].astype(np.float32)


def read_300w_face(jpg: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, (68, 2) float32 0-based points) of a 300-W crop and its ``.pts``."""
    jpg = Path(jpg)
    pts_path = jpg.with_suffix(".pts")
    try:
        lines = pts_path.read_text().split("{", 1)[1].split("}", 1)[0].split()
        pts = np.asarray(lines, np.float32).reshape(-1, 2) - 1.0
    except (OSError, IndexError, ValueError) as e:
        raise ValueError(f"{pts_path}: not a readable 300-W .pts file ({e})") from e
    if pts.shape != (68, 2):
        raise ValueError(f"{pts_path}: expected 68 points, found {len(pts)}")
    with Image.open(jpg) as im:
        image = np.asarray(im.convert("RGB"))
    return image, pts


def fit_crop(model: MorphableModel, image: np.ndarray, points68: np.ndarray) -> FitResult:
    """Fit ``model`` to a crop's 68 iBUG points with facefit's fitter (scaled orthographic)."""
    pts = np.asarray(points68, np.float32)
    box = np.r_[pts.min(0), pts.max(0)].astype(np.float32)
    face = FaceLandmarks(box=box, score=1.0, points_px=pts, depth_px=None, scheme="ibug68")
    return fit_face(model, face, (image.shape[1], image.shape[0]))


def view_from_fit(model: MorphableModel, image: np.ndarray, fit: FitResult) -> ProfiledView:
    """The input photo with the fit's labels (the 0° view)."""
    lm = model.landmark_ids["ibug68"]
    view = ProfiledView(image=image, rotation=np.asarray(fit.rotation, np.float64),
                        scale=float(fit.scale), translation=np.asarray(fit.translation[:2]),
                        shape=np.asarray(fit.shape_coeffs, np.float32),
                        expression=np.asarray(fit.expression_coeffs, np.float32),
                        landmarks_68=np.zeros((68, 2), np.float32))
    return replace(view, landmarks_68=project_landmarks(model, view, lm))


def project_landmarks(model: MorphableModel, view: ProfiledView,
                      ids: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) float32 image points of the view's model vertices ``ids`` (default iBUG 68)."""
    ids = model.landmark_ids["ibug68"] if ids is None else ids
    v = model.vertices(view.shape, view.expression, ids=ids).astype(np.float64)
    return (v @ view.linear_map.T + view.translation).astype(np.float32)


@lru_cache(maxsize=4)
def _grid_laplacian(n: int) -> sparse.csr_matrix:
    """(n*n, n*n) 4-neighbour graph Laplacian of an n x n grid."""
    from scipy import sparse

    idx = np.arange(n * n).reshape(n, n)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    w = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n * n, n * n))
    w = (w + w.T).tocsr()
    return (sparse.diags(np.asarray(w.sum(1)).ravel()) - w).tocsr()


def _harmonic_fill(n: int, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Solve Laplace's equation on an n x n grid; ``values`` (n*n, k) are kept where ``fixed``."""
    from scipy.sparse.linalg import splu

    lap = _grid_laplacian(n)
    free = np.flatnonzero(~fixed)
    fix = np.flatnonzero(fixed)
    out = values.astype(np.float64).copy()
    if len(free):
        lu = splu(lap[free][:, free].tocsc())
        out[free] = lu.solve(-(lap[free][:, fix] @ out[fix]))
    return out


def _grid_triangles(n: int) -> np.ndarray:
    idx = np.arange(n * n).reshape(n, n)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    return np.r_[np.c_[a, c, b], np.c_[b, c, d]].astype(np.int32)


def synthesise_view(model: MorphableModel, image: np.ndarray, fit: FitResult,
                    yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0,
                    grid_step: int = 4, margin: int = 64, slope: float = 1.5
                    ) -> ProfiledView:
    """Render the photo's head rotated by (yaw, pitch, roll) degrees about the face centre.

    Args:
        model: the model ``fit`` was made with (linear kind).
        image: (H, W, 3) uint8 photo the fit was made on.
        fit: its scaled orthographic fit.
        yaw_deg, pitch_deg, roll_deg: extra rotation in the view frame (conventions of
            `facefit.fit.camera`); (0, 0, 0) returns the input image.
        grid_step: spacing of the background grid, pixels.
        margin: how far the grid reaches beyond the crop, pixels.
        slope: how fast the region around the face recedes, depth pixels per image pixel of
            distance to the face.
    """
    if fit.camera.kind != "scaled_orthographic":
        raise ValueError("synthesise_view needs a scaled orthographic fit")
    h, w = image.shape[:2]
    base = view_from_fit(model, image, fit)
    verts = model.vertices(base.shape, base.expression).astype(np.float64)
    a3 = fit.scale * _G @ base.rotation
    face_px = verts @ a3.T
    face_px[:, :2] += base.translation
    tri = np.asarray(model.triangles, np.int32)

    # Background grid: face depth under the face; outside it the harmonic fill of the face's
    # depth plus ``slope`` times the distance to the face, so the region around the face (ears,
    # hair, neck) curves back like a head and stays behind the face when turned to profile.
    n = int(np.ceil((max(h, w) + 2 * margin) / grid_step)) + 1
    g = np.arange(n, dtype=np.float64) * grid_step - margin
    gx, gy = np.meshgrid(g, g)
    src = rasterize(face_px.astype(np.float32), tri, h, w)
    ix = np.clip(np.rint(gx).astype(int), 0, w - 1)
    iy = np.clip(np.rint(gy).astype(int), 0, h - 1)
    inside = (gx >= 0) & (gx <= w - 1) & (gy >= 0) & (gy <= h - 1)
    on_face_2d = inside & src.mask[iy, ix]
    on_face = on_face_2d.ravel()
    zmax = float(face_px[:, 2].max())
    edge = np.zeros((n, n), bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    fixed = on_face | edge.ravel()
    vals = np.zeros((n * n, 2))
    vals[on_face, 0] = src.depth[iy, ix].ravel()[on_face] + 0.5  # just behind the face
    vals[on_face, 1] = 1.0
    vals[edge.ravel(), 0] = zmax
    filled = _harmonic_fill(n, fixed, vals)
    dist = cv2.distanceTransform((~on_face_2d).astype(np.uint8), cv2.DIST_L2, 5)
    band = 0.1 * max(h, w)  # the recession stops this far from the face
    depth = filled[:, 0] + slope * np.minimum(grid_step * dist.ravel().astype(np.float64), band)
    grid_px = np.c_[gx.ravel(), gy.ravel(), depth]
    weight = np.clip(filled[:, 1], 0.0, 1.0)

    # Rotate about the face centre (x, y centroid, median depth).
    rd = rotation_from_euler(yaw_deg, pitch_deg, roll_deg)
    m = _G @ rd @ _G
    c = np.r_[face_px[:, :2].mean(0), np.median(face_px[:, 2])]
    face_new = (face_px - c) @ m.T + c
    grid_rot = (grid_px - c) @ m.T + c
    grid_new = weight[:, None] * grid_rot + (1.0 - weight[:, None]) * grid_px

    # Render both meshes, the face in front of everything around it (the coarse grid cannot
    # follow the head's curvature, and turned to profile its nodes beside the face would
    # otherwise poke through the cheek). Every vertex carries its source position in the photo.
    face_r = rasterize(face_new.astype(np.float32), tri, h, w)
    grid_r = rasterize(grid_new.astype(np.float32), _grid_triangles(n), h, w)
    uv = np.where(face_r.mask[..., None], interpolate(face_r, face_px[:, :2].astype(np.float32)),
                  interpolate(grid_r, grid_px[:, :2].astype(np.float32)))
    mask = face_r.mask | grid_r.mask
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = np.where(mask, uv[..., 0], xx).astype(np.float32)
    map_y = np.where(mask, uv[..., 1], yy).astype(np.float32)
    out = cv2.remap(np.ascontiguousarray(image), map_x, map_y, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)

    origin = np.r_[base.translation, 0.0]
    t_new = ((origin - c) @ m.T + c)[:2]
    view = replace(base, image=out, rotation=rd @ base.rotation, translation=t_new)
    return replace(view, landmarks_68=project_landmarks(model, view))


def crop_view(view: ProfiledView, size: int = 120, enlarge: float = 1.5,
              shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> ProfiledView:
    """Square crop of ``size`` px around the 68 label points (side ``enlarge`` times their box),
    labels mapped exactly (a scale and shift keeps the camera scaled orthographic).

    ``shift`` (fractions of the side) and ``zoom`` jitter the box for augmentation."""
    lm = view.landmarks_68
    side = float((lm.max(0) - lm.min(0)).max()) * enlarge / zoom
    centre = (lm.min(0) + lm.max(0)) / 2 + np.asarray(shift, np.float64) * side
    k = size / side
    off = (size - 1) / 2 - k * centre  # integer pixel centres: x' = k (x - centre) + (n-1)/2
    mat = np.array([[k, 0, off[0]], [0, k, off[1]]], np.float64)
    img = cv2.warpAffine(np.ascontiguousarray(view.image), mat, (size, size),
                         flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return replace(view, image=img, scale=view.scale * k,
                   translation=k * np.asarray(view.translation) + off,
                   landmarks_68=(k * lm + off).astype(np.float32))


@lru_cache(maxsize=2)
def _mirror_maps(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(0, model.num_vertices, 4)  # a quarter of the vertices pins it down
    full = np.concatenate([model.shape_basis, model.expression_basis], axis=2)
    flip = np.array([-1.0, 1.0, 1.0], np.float32)
    mirror = model.mirror_ids[ids]
    mb = full[mirror] * flip[None, :, None]
    mm = model.mean[mirror] * flip
    b = full[ids].reshape(-1, full.shape[2]).astype(np.float64)
    rhs = np.c_[mb.reshape(len(b), -1), (mm - model.mean[ids]).reshape(-1)].astype(np.float64)
    sol = np.linalg.solve(b.T @ b, b.T @ rhs)  # normal equations: the basis is well conditioned
    return sol[:, :-1], sol[:, -1]


def mirror_coefficient_maps(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """(P (K, K), b (K,)) with mirrored coefficients ``P c + b`` for ``c`` = shape then
    expression: the least-squares coefficients of the face reflected through the model's
    mirror map (``model.mirror_ids``, x -> -x)."""
    return _mirror_maps(model)


def mirror_view(model: MorphableModel, view: ProfiledView) -> ProfiledView:
    """The view flipped left-right: image flipped, pose reflected (``F R F``), coefficients
    mapped through `mirror_coefficient_maps`, landmarks re-projected from those labels."""
    p, b = _mirror_maps(model)
    ks = model.num_shape
    c = p @ np.r_[view.shape, view.expression] + b
    f = np.diag([-1.0, 1.0, 1.0])
    w = view.image.shape[1]
    t = np.asarray(view.translation, np.float64)
    out = replace(view, image=np.ascontiguousarray(view.image[:, ::-1]),
                  rotation=f @ view.rotation @ f, translation=np.r_[w - 1 - t[0], t[1]],
                  shape=c[:ks].astype(np.float32), expression=c[ks:].astype(np.float32))
    return replace(out, landmarks_68=project_landmarks(model, out))


def jitter_crops(images: np.ndarray, rng: np.random.Generator, shift_sd: float = 0.08,
                 zoom_sd: float = 0.1, enlarge: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Crops as a face detector's box would cut them: each (S, S, 3) uint8 crop of
    ``images`` (N, S, S, 3) re-cut by a random shift (normal, ``shift_sd`` of the 68-landmark
    box side per axis, clipped at 3 sd) and zoom (log-normal, ``zoom_sd``, clipped at 2 sd)
    about its centre, border pixels replicated as `facefit.regress.predictor.crop_faces` does.

    Returns the new crops and the (N, 2, 3) maps ``x' = z x + o`` from old to new crop pixels
    (`map_params` and `map_points` carry the labels). Detector boxes on AFLW2000-3D dev miss
    the ground-truth box by up to 0.23 of its side past 60 degrees of yaw (95th percentile),
    where a network trained on +-0.05 shifts loses half its accuracy."""
    imgs = np.asarray(images)
    n, size = len(imgs), imgs.shape[1]
    box_side = size / enlarge
    shift = rng.normal(0.0, shift_sd, (n, 2)).clip(-3 * shift_sd, 3 * shift_sd) * box_side
    zoom = np.exp(rng.normal(0.0, zoom_sd, n).clip(-2 * zoom_sd, 2 * zoom_sd))
    c = (size - 1) / 2
    maps = np.zeros((n, 2, 3))
    maps[:, 0, 0] = maps[:, 1, 1] = zoom
    maps[:, :, 2] = c * (1 - zoom)[:, None] - zoom[:, None] * shift
    out = np.empty_like(imgs)
    for i in range(n):
        out[i] = cv2.warpAffine(np.ascontiguousarray(imgs[i]), maps[i], (size, size),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, maps.astype(np.float32)


def map_points(points: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(N, P, 2) points through (N, 2, 3) maps ``x' = z x + o`` of `jitter_crops` (NaN stays
    NaN)."""
    return (points * maps[:, None, [0, 1], [0, 1]] + maps[:, None, :, 2]).astype(points.dtype)


def map_params(params: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(N, 58) parameters (``A`` 2x3 row-major, ``t``, coefficients; ``x = A v + t``) of the
    crops re-cut by (N, 2, 3) maps of `jitter_crops`: ``A' = z A``, ``t' = z t + o``."""
    out = np.array(params, copy=True)
    z = maps[:, 0, 0][:, None]
    out[:, :6] *= z
    out[:, 6:8] = z * out[:, 6:8] + maps[:, :, 2]
    return out


def photometric_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random colour/gamma/contrast, blur, noise, JPEG and one occluder on a uint8 RGB image."""
    img = image.astype(np.float32) / 255.0
    img = img * rng.uniform(0.7, 1.3, 3).astype(np.float32)  # per-channel gain
    img = (img - img.mean()) * rng.uniform(0.7, 1.3) + img.mean() + rng.uniform(-0.1, 0.1)
    img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        img = img + rng.normal(0, rng.uniform(0.01, 0.05), img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.3:
        h, w = out.shape[:2]
        ow, oh = (rng.uniform(0.15, 0.4, 2) * (w, h)).astype(int)
        x0, y0 = rng.integers(0, w - ow), rng.integers(0, h - oh)
        out[y0:y0 + oh, x0:x0 + ow] = rng.integers(0, 256, 3, dtype=np.uint8)
    if rng.random() < 0.3:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=int(rng.integers(20, 80)))
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out
