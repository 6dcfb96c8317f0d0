"""facefit's face-alignment network at inference: 68 landmarks and the default model's
parameters of faces in a photo, from their boxes (or from rough landmarks).

Two steps, as in 3DDFA (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution", CVPR
2016): a square crop of side 1.5 times the face's 68-landmark box, centred on it and resized
to 120 px (the crop of `facefit.regress.profiling.crop_view` that the network was trained
on), a forward pass, then a second crop from the box of the predicted 68 points and a second
pass. All faces of an image go through the network as one batch.

A crop may be turned in the image plane (``angles_deg``) so that the face stands upright in
it: the network was trained on upright faces (roll within about 12 degrees), and a face whose
head leans by 20-40 degrees in the photo scores 7.0 / 8.0 % NME at |yaw| 30-60 / 60-90 on
AFLW2000-3D dev against 3.9 / 6.2 % for upright ones. Each answer carries the head's lean
(``inplane_deg`` of `RegressionResult`) and its landmarks' box in the upright frame
(its ``upright_box``), from which the next pass crops.

The weights ship inside the package (``weights/regress_mbv1x05.npz``, see the README there);
their sha256 is checked against `WEIGHTS_SHA256` on loading. Inference runs in ONNX Runtime,
numpy as fallback (`facefit.regress.inference`, batch norms folded into the convolutions):
landmarking a face does not import torch.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from facefit.fit.camera import euler_from_rotation
from facefit.model.morphable_model import MorphableModel
from facefit.regress.inference import FoldedMobileNet, from_torch, load_weights
from facefit.regress.profiling import IBUG68_MIRROR

WEIGHTS_PATH = Path(__file__).parent / "weights" / "regress_mbv1x05.npz"
WEIGHTS_SHA256 = "6fdff1e06f11b635c0b05647b87a743ede6da1d1fdc5294d8af4e5dd6bf48038"
MODEL_NAME = "mobilenet_v1_x0.5"
INPUT_SIZE = 120
WIDTH = 0.5
ENLARGE = 1.5  # crop side / 68-landmark box side (the training crop)


class WeightsError(ValueError):
    """The regression weights are missing, corrupt or not the packaged ones."""


@dataclass(frozen=True, eq=False)
class RegressionResult:
    """The network's answer for one face, in pixels of the input image.

    Attributes:
        params: (58,) float32 the default model's parameters: the scaled orthographic map
            ``A`` (2x3, row-major) and ``(tx, ty)`` of image pixels, 40 shape and 10
            expression coefficients (``x = A v + t`` for model-frame ``v`` in mm).
        landmarks_68_px: (68, 2) float32 projections of the 68 landmark vertices, hidden ones
            included (AFLW2000-3D convention).
        landmarks_68_3d: (68, 3) float32 the same points with depth in pixels (larger is
            farther; only differences are meaningful).
        yaw_deg, pitch_deg, roll_deg: head pose (`facefit.fit.camera` conventions).
        box: (4,) float32 [x0, y0, x1, y1] of the 68 landmarks.
        inplane_deg: the head's lean in the image plane: the angle from the image's up to
            the projection of the head's up axis, clockwise positive (`inplane_deg`).
        upright_box: (4,) float32 the 68 landmarks' box in the head's upright frame: centred
            on the landmarks' box centre in that frame (image pixels), its sides along the
            head's axes; with ``inplane_deg`` it is the crop of a next pass (`crop_maps`).
    """

    params: np.ndarray
    landmarks_68_px: np.ndarray
    landmarks_68_3d: np.ndarray
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    box: np.ndarray
    inplane_deg: float
    upright_box: np.ndarray


def average_results(results: list[RegressionResult]) -> RegressionResult:
    """One answer from several crops of one face (test-time augmentation): the mean of their
    landmarks (68 points, with depth) and their box; the pose, coefficients and lean of the
    first, its upright box re-cut about the mean points."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    lm3 = np.mean([r.landmarks_68_3d for r in results], axis=0, dtype=np.float64)
    box = upright_boxes(lm3[None, :, :2], np.array([first.inplane_deg]))[0]
    return replace(first, landmarks_68_px=lm3[:, :2].astype(np.float32),
                   landmarks_68_3d=lm3.astype(np.float32),
                   box=_boxes(lm3[None, :, :2])[0].astype(np.float32),
                   upright_box=box.astype(np.float32))


def crop_maps(boxes: np.ndarray, size: int = INPUT_SIZE, enlarge: float = ENLARGE,
              angles_deg: np.ndarray | None = None) -> np.ndarray:
    """(N, 2, 3) image-to-crop affine maps ``x' = k R x + o`` for (N, 4) 68-landmark boxes:
    side ``enlarge`` times the longer box side, centred (the training crop); ``R`` turns
    the image by ``-angles_deg`` (N,) about the box centre, so that a head leaning by that
    angle (`inplane_deg`) stands upright in the crop (none when None)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum((b[:, 2:] - b[:, :2]).max(1), 1.0) * enlarge
    k = size / side
    maps = np.zeros((len(b), 2, 3))
    maps[:, :, :2] = k[:, None, None] * _upright_turn(np.zeros(len(b)) if angles_deg is None
                                                      else angles_deg)
    maps[:, :, 2] = (size - 1) / 2 - np.einsum("nij,nj->ni", maps[:, :, :2],
                                                (b[:, :2] + b[:, 2:]) / 2)
    return maps


def _upright_turn(angles_deg: np.ndarray) -> np.ndarray:
    """(N, 2, 2) rotations turning the image by ``-angles_deg`` (N,): a head leaning by its
    angle (`inplane_deg`) comes out upright."""
    t = np.radians(np.asarray(angles_deg, np.float64).reshape(-1))
    c, s = np.cos(t), np.sin(t)
    return np.stack([np.stack([c, s], 1), np.stack([-s, c], 1)], 1)


def inplane_deg(params: np.ndarray) -> np.ndarray:
    """(N,) the head's lean in the image plane, degrees, of (N, >=6) parameters: the angle
    from the image's up (-y) to the head's up axis projected, ``A @ (0, 1, 0)``, clockwise
    (towards +x) positive."""
    a = np.asarray(params, np.float64).reshape(len(params), -1)[:, :6].reshape(-1, 2, 3)
    return np.degrees(np.arctan2(a[:, 0, 1], -a[:, 1, 1]))


def upright_boxes(points: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """(N, 4) boxes of (N, P, 2) points in frames turned by (N,) ``angles_deg`` (`crop_maps`'
    convention): the points' box in the turned frame, re-centred on its centre's image
    position (so ``crop_maps(upright_boxes(p, a), angles_deg=a)`` crops the points upright)."""
    p = np.asarray(points, np.float64)
    rot = _upright_turn(angles_deg)
    q = np.einsum("nij,npj->npi", rot, p)
    lo, hi = q.min(1), q.max(1)
    centre = np.einsum("nji,nj->ni", rot, (lo + hi) / 2)  # back to the image: R^T
    half = (hi - lo) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def crop_faces(image_rgb: np.ndarray, maps: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """(N, size, size, 3) uint8 crops of ``image_rgb`` by (N, 2, 3) maps of `crop_maps`
    (as `facefit.regress.train.aflw2000_crops` cuts them; a face more than 4x larger than the
    crop is first halved with ``cv2.pyrDown`` so the resampling does not alias)."""
    out = np.empty((len(maps), size, size, 3), np.uint8)
    for i, m in enumerate(maps):
        src, m_src = image_rgb, m
        while (np.sqrt(abs(np.linalg.det(m_src[:, :2]))) < 0.25
               and min(src.shape[:2]) > 2 * size):
            src = cv2.pyrDown(src)
            m_src = m_src @ np.diag([2.0, 2.0, 1.0])
        out[i] = cv2.warpAffine(src, m_src, (size, size), flags=cv2.INTER_AREA,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def _boxes(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, np.float64)
    return np.concatenate([p.min(1), p.max(1)], axis=1)


def landmark_basis(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """(68, 3) float64 mean landmark vertices and (68, 3, K) float64 their shape, then
    expression basis: the 68 points of parameters ``p`` are ``mean + basis @ p[8:]``."""
    ids = model.landmark_ids["ibug68"]
    basis = np.concatenate([model.shape_basis[ids], model.expression_basis[ids]], axis=2)
    return model.mean[ids].astype(np.float64), basis.astype(np.float64)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RegressionPredictor:
    """The packaged (or a given) regression network, loaded on first use, once.

    Args:
        weights: a weights file of ``scripts/export_regress_weights.py`` or a training
            checkpoint; default the packaged file, whose sha256 must equal `WEIGHTS_SHA256`.
        passes: forward passes per face (1, the default: crop from the given box only; 2:
            re-crop from the first pass's landmarks, 3DDFA's two-step scheme). On AFLW2000-3D
            dev with the shipped weights 1, 2 and 3 passes score the same within 0.02 NME points
            (`auto`: 6.96 / 6.97 / 6.98 %), so one pass is the default.
        flip: also run the mirrored crop and average its landmarks, mirrored back
            (`IBUG68_MIRROR`), with the crop's (test-time augmentation; one more crop in the
            batch). The pose and coefficients are the unmirrored crop's. On AFLW2000-3D dev
            it lowers the network's balanced NME by 0.3 points (ground-truth crops 6.14 ->
            5.82 %, detector crops 8.16 -> 7.92 %, the weights of the previous release).
    """

    def __init__(self, weights: str | Path | None = None, passes: int = 1,
                 flip: bool = True) -> None:
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        self.weights = Path(weights) if weights is not None else WEIGHTS_PATH
        self.check_sha = weights is None
        self.passes = passes
        self.flip = flip
        self._lock = threading.Lock()
        self._net = None
        self._mean = self._basis = None

    # -- loading ----------------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            if self._net is not None:
                return
            from facefit.model.bfm_3ddfa import load_default_model

            path = self.weights
            if not path.is_file():
                raise WeightsError(f"{path}: regression weights missing (reinstall facefit)")
            if self.check_sha and (digest := file_sha256(path)) != WEIGHTS_SHA256:
                raise WeightsError(f"{path}: sha256 {digest[:12]}... is not the packaged "
                                   f"weights' {WEIGHTS_SHA256[:12]}... (corrupt or replaced)")
            try:
                net = load_weights(path) if path.suffix == ".npz" else _from_checkpoint(path)
            except WeightsError:
                raise
            except ValueError as e:
                raise WeightsError(str(e)) from e
            model = load_default_model()
            n_out = 8 + model.num_shape + model.num_expression
            if net.head_w.shape[0] != n_out:
                raise WeightsError(f"{path}: {net.head_w.shape[0]} outputs, the default model "
                                   f"needs {n_out}")
            self._mean, self._basis = landmark_basis(model)
            self.n_shape, self.n_expr = model.num_shape, model.num_expression
            offset = net.meta.get("convention_offset", {}).get("coefficients")
            offset = np.zeros(n_out - 8) if offset is None else np.asarray(offset, np.float64)
            if offset.shape != (n_out - 8,):
                raise WeightsError(f"{path}: convention offset of {offset.size} coefficients, "
                                   f"the default model has {n_out - 8}")
            self._offset = offset
            self._net = net

    # -- network ----------------------------------------------------------------------
    def params_from_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, 58) float32 parameters, pose in crop pixels, of (N, 120, 120, 3) uint8 crops."""
        self._load()
        return self._net(crops)

    def landmarks_3d(self, params: np.ndarray) -> np.ndarray:
        """(N, 68, 3) landmark vertices in the parameters' pixel frame: x, y and depth (larger
        is farther) for (N, 58) parameters."""
        self._load()
        p = np.asarray(params, np.float64).reshape(len(params), -1)
        k = self.n_shape + self.n_expr
        v = self._mean[None] + np.einsum("nck,bk->bnc", self._basis, p[:, 8:8 + k])
        a = p[:, :6].reshape(-1, 2, 3)
        rot, scale = rotation_from_pose(a)
        depth_row = -scale[:, None] * rot[:, 2]  # third row of s * diag(1, -1, -1) @ R
        a3 = np.concatenate([a, depth_row[:, None, :]], axis=1)  # (N, 3, 3)
        out = np.einsum("brc,bnc->bnr", a3, v)
        out[:, :, :2] += p[:, None, 6:8]
        return out.astype(np.float32)

    # -- images -----------------------------------------------------------------------
    def predict_batch(self, image_rgb: np.ndarray, boxes: np.ndarray | None = None,
                      points: np.ndarray | None = None, flip: bool | None = None,
                      angles_deg: np.ndarray | None = None) -> list[RegressionResult]:
        """Every face of one (H, W, 3) uint8 RGB image, given (N, 4) 68-landmark boxes
        [x0, y0, x1, y1] or (N, P, 2) rough landmarks (their box in the head's frame is
        used), in one batch; ``flip`` overrides the predictor's `flip` for this call.
        ``angles_deg`` (N,): each face's lean in the image plane (`inplane_deg`; its crop is
        turned upright, the boxes are then in the upright frame as `upright_boxes` gives
        them); upright when None. A later pass (`passes`) crops from the previous pass's
        `upright_boxes` and lean."""
        flip = self.flip if flip is None else flip
        if (boxes is None) == (points is None):
            raise ValueError("give either boxes or points")
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                             f"{image.dtype}")
        if points is not None:
            pts = np.asarray(points, np.float64)
            pts = pts if pts.ndim == 3 else pts[None]
            n = len(pts)
        else:
            box = np.asarray(boxes, np.float64).reshape(-1, 4)
            n = len(box)
        if n == 0:
            return []
        lean = (np.zeros(n) if angles_deg is None
                else np.asarray(angles_deg, np.float64).reshape(-1))
        if len(lean) != n or not np.isfinite(lean).all():
            raise ValueError("give one finite angle per face")
        if points is not None:  # their box in the head's frame
            box = upright_boxes(pts, lean)
        if not np.isfinite(box).all():
            raise ValueError("face boxes must be finite")
        for _ in range(self.passes):
            maps = crop_maps(box, angles_deg=lean)
            crops = crop_faces(image, maps)
            if flip:  # the mirrored crop too, its points mirrored back, averaged
                both = self.params_from_crops(np.concatenate([crops, crops[:, :, ::-1]]))
                params = both[:n]
                mirrored = self.landmarks_3d(both[n:])[:, IBUG68_MIRROR]
                mirrored[:, :, 0] = INPUT_SIZE - 1 - mirrored[:, :, 0]
                lm3 = (self.landmarks_3d(params) + mirrored) / 2
            else:
                params = self.params_from_crops(crops)
                lm3 = self.landmarks_3d(params)
            # crop pixels back to the image: x = M^-1 (x' - o), M = k R
            inv = np.linalg.inv(maps[:, :, :2])
            lm_img = np.einsum("nij,npj->npi", inv, lm3[:, :, :2] - maps[:, None, :, 2])
            params = params.astype(np.float64)
            params[:, :6] = np.einsum("nij,njk->nik", inv,
                                      params[:, :6].reshape(-1, 2, 3)).reshape(-1, 6)
            params[:, 6:8] = np.einsum("nij,nj->ni", inv, params[:, 6:8] - maps[:, :, 2])
            lean = inplane_deg(params)
            box = upright_boxes(lm_img, lean)
        k = np.sqrt(np.abs(np.linalg.det(maps[:, :, :2])))
        lm3 = lm3.astype(np.float64)
        lm3[:, :, :2] = lm_img
        lm3[:, :, 2] /= k[:, None]
        rot, _ = rotation_from_pose(params[:, :6].reshape(-1, 2, 3))
        image_boxes = _boxes(lm_img)
        out = []
        for i in range(n):
            yaw, pitch, roll = euler_from_rotation(rot[i])
            out.append(RegressionResult(params[i].astype(np.float32),
                                        lm3[i, :, :2].astype(np.float32),
                                        lm3[i].astype(np.float32), yaw, pitch, roll,
                                        image_boxes[i].astype(np.float32),
                                        float(lean[i]), box[i].astype(np.float32)))
        return out

    def predict(self, image_rgb: np.ndarray, box_xyxy: np.ndarray | None = None,
                points: np.ndarray | None = None, angle_deg: float = 0.0) -> RegressionResult:
        """One face: from its 68-landmark box [x0, y0, x1, y1] or from (P, 2) rough points,
        its crop turned upright by its lean ``angle_deg`` (`predict_batch`)."""
        if points is not None:
            points = np.asarray(points, np.float64)[None]
        if box_xyxy is not None:
            box_xyxy = np.asarray(box_xyxy, np.float64).reshape(1, 4)
        return self.predict_batch(image_rgb, box_xyxy, points, angles_deg=[angle_deg])[0]

    @property
    def convention_offset(self) -> np.ndarray:
        """(K,) float64 the weights' AFLW convention offset of the coefficients (zeros for
        weights without one; `in_aflw_convention`)."""
        self._load()
        return self._offset

    def in_aflw_convention(self, result: RegressionResult) -> RegressionResult:
        """``result`` moved into AFLW's annotation convention: the weights' constant offset
        (`facefit.regress.aflw21.convention_offset`, learned on train-aflw21 when they were
        exported) added to its coefficients and its points moved by the change of the 68
        landmark vertices' projections under its pose. The network's own passes crop and
        check in the convention it was trained in (fits to 300-W annotations, faces about
        3 % taller from brow to chin); the answers it hands on get this once, at the end."""
        self._load()
        if not self._offset.any():
            return result
        p = np.asarray(result.params, np.float64)[None]
        q = p.copy()
        q[:, 8:] += self._offset
        move = (self.landmarks_3d(q) - self.landmarks_3d(p))[0].astype(np.float64)
        lm3 = np.asarray(result.landmarks_68_3d, np.float64) + move
        return replace(result, params=q[0].astype(np.float32),
                       landmarks_68_px=lm3[:, :2].astype(np.float32),
                       landmarks_68_3d=lm3.astype(np.float32),
                       box=_boxes(lm3[None, :, :2])[0].astype(np.float32))


def _from_checkpoint(path: Path) -> FoldedMobileNet:
    """The folded network of a training checkpoint (``best.pt`` of `facefit.regress.train`;
    needs torch)."""
    from facefit.model.bfm_3ddfa import load_default_model
    from facefit.regress.network import build_network
    from facefit.regress.train import load_checkpoint

    try:
        ck = load_checkpoint(path)
        net = build_network(load_default_model(), float(ck.get("meta", {}).get("width", WIDTH)))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in ck["net"].items()})
        net.eval()
        return from_torch(net.features, net.head, ck["norm_mean"].float().numpy(),
                          ck["norm_std"].float().numpy(), {"checkpoint": str(path)})
    except (KeyError, RuntimeError, AttributeError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not facefit regression weights ({e})") from e


def rotation_from_pose(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((N, 3, 3) rotations, (N,) scales) of (N, 2, 3) scaled orthographic maps
    ``A = s * diag(1, -1, -1)[:2] @ R``: the nearest rotation (SVD) to the map's rows."""
    a = np.asarray(a, np.float64)
    rows = a * np.array([1.0, -1.0])[None, :, None]  # s * R[:2]
    scale = np.linalg.norm(rows, axis=2).mean(1)
    u, _, vt = np.linalg.svd(rows, full_matrices=False)
    r2 = u @ vt  # (N, 2, 3) orthonormal rows
    r3 = np.cross(r2[:, 0], r2[:, 1])
    return np.concatenate([r2, r3[:, None]], axis=1), scale
