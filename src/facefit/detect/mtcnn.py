"""MTCNN face detection (Zhang et al., "Joint Face Detection and Alignment Using Multitask
Cascaded Convolutional Networks", IEEE SPL 2016), run on the CPU by ONNX Runtime (numpy as
fallback; no torch).

MTCNN was trained on WIDER FACE, which holds many turned heads, so it finds profile faces that
BlazeFace misses; facefit uses it as the fallback detector of `facefit.detect.mediapipe`.

The weights are the three state dicts (``pnet.pt``, ``rnet.pt``, ``onet.pt``) that ship inside
the ``facenet-pytorch==2.6.0`` wheel (MIT), extracted into facefit's data folder by
``python -m facefit.install_data`` (`facefit.assets`). facenet-pytorch itself is never
imported (its code needs torchvision); the three small networks and the cascade are written
here from the paper: P-Net proposes 12 px windows over an image pyramid, R-Net (24 px) and
O-Net (48 px) re-score and regress them, with non-maximum suppression between stages. The
weights came from the original Caffe models, whose fully connected layers read feature maps in
(W, H) order; the numpy flatten follows that order, and the ONNX graph written in memory for
ONNX Runtime (`_Net.onnx`) gets those weights' columns in its (C, H, W) order. The state
dicts are read without torch by `facefit.io.torch_state.read_state_dict` (a restricted
unpickler: no code runs from the files).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facefit import assets
from facefit.io.torch_state import StateDictError, read_state_dict

WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
_MEAN, _SCALE = 127.5, 0.0078125


class MTCNNUnavailable(RuntimeError):
    """The MTCNN weight files are missing or unreadable."""


@dataclass(frozen=True)
class Face:
    """One MTCNN detection, in pixels of the input image.

    Attributes:
        box: (4,) float32 [x0, y0, x1, y1].
        score: O-Net face probability in [0, 1].
        keypoints: (5, 2) float32: image-left eye, image-right eye, nose, image-left and
            image-right mouth corner (for a frontal face: the subject's right eye first).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'Valid' convolution, stride 1, of (N, H, W, Cin) by torch-layout (Cout, Cin, k, k)
    weights. Few input channels or small maps: the k*k taps side by side and one matrix
    product; many channels on a large map (P-Net's pyramid): every tap's product at full
    resolution in one matrix product, then the k*k shifted sums (no k*k-times copy)."""
    k = w.shape[2]
    n, h, wd, c = x.shape
    ho, wo = h - k + 1, wd - k + 1
    if k > 1 and c >= 8 and h * wd >= 1024:
        full = np.dot(x.reshape(-1, c), w.transpose(1, 2, 3, 0).reshape(c, -1))
        full = full.reshape(n, h, wd, k * k, -1)
        y = full[:, :ho, :wo, 0].copy()
        for t in range(1, k * k):
            dy, dx = divmod(t, k)
            y += full[:, dy:dy + ho, dx:dx + wo, t]
        y += b
        return y
    cols = x if k == 1 else np.concatenate(
        [x[:, dy:dy + ho, dx:dx + wo] for dy in range(k) for dx in range(k)], -1)
    wm = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
    return (np.dot(cols.reshape(-1, cols.shape[-1]), wm) + b).reshape(n, ho, wo, -1)


def _prelu(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """PReLU in place: ``max(x, 0) + a * min(x, 0)`` per channel (last axis)."""
    neg = np.minimum(x, 0.0)
    x -= neg
    neg *= a
    x += neg
    return x


def _pool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """Max pooling of (N, H, W, C), window k, stride s, output size rounded up (Caffe's and
    torch's ``ceil_mode``): the last window may hang over the edge."""
    n, h, w, c = x.shape
    ho, wo = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    xp = np.full((n, (ho - 1) * s + k, (wo - 1) * s + k, c), -np.inf, x.dtype)
    xp[:, :h, :w] = x
    out = xp[:, :s * ho:s, :s * wo:s].copy()
    for dy in range(k):
        for dx in range(k):
            if dy or dx:
                np.maximum(out, xp[:, dy:dy + s * ho:s, dx:dx + s * wo:s], out=out)
    return out


def _softmax1(logits: np.ndarray) -> np.ndarray:
    """Probability of class 1 of two-class logits (..., 2)."""
    return 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))


def _flat_wh(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 1, 3).reshape(len(x), -1)  # Caffe's (W, H, C) order


class _Net:
    """One MTCNN network with its state dict's arrays, run by ONNX Runtime (the network
    written in memory as an ONNX graph, `onnx`, `facefit.io.onnx`), numpy (channels-last,
    `forward_numpy`) as the fallback and reference.

    ``LAYERS``: the layer list, each (kind, name, input or None for the previous layer's
    output, argument): ``conv``, ``prelu`` (argument ``"flat"`` after a fully connected
    layer), ``pool`` (max, (kernel, stride), rounding up like `_pool`), ``fc`` (argument: the
    (C, H, W) of a feature map that the weights read in (W, H, C) order, see `_flat_wh`, or
    None); ``OUTPUTS``: the outputs returned."""

    LAYERS: tuple[tuple[str, str, str | None, object], ...] = ()
    OUTPUTS: tuple[str, ...] = ()

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.p = {k: np.asarray(v, np.float32) for k, v in state.items()}
        self._session: object | None = None
        self._tried = False

    def conv(self, name: str, x: np.ndarray, act: str | None = None) -> np.ndarray:
        y = _conv(x, self.p[f"{name}.weight"], self.p[f"{name}.bias"])
        return _prelu(y, self.p[f"{act}.weight"]) if act else y

    def dense(self, name: str, x: np.ndarray, act: str | None = None) -> np.ndarray:
        y = x @ self.p[f"{name}.weight"].T + self.p[f"{name}.bias"]
        return _prelu(y, self.p[f"{act}.weight"]) if act else y

    def onnx(self) -> bytes:
        """This network as a serialised ONNX model (`facefit.io.onnx.OnnxGraph`), input
        ``x`` (N, 3, H, W) normalised, outputs ``OUTPUTS`` (logits and offsets)."""
        from facefit.io.onnx import OnnxGraph

        g = OnnxGraph("x", ("batch", 3, "height", "width"))
        prev = "x"
        for kind, name, bottom, arg in self.LAYERS:
            src = bottom or prev
            if kind == "conv":
                w = self.p[f"{name}.weight"]
                prev = g.node("Conv", [src, g.weight(f"{name}.w", w),
                                       g.weight(f"{name}.b", self.p[f"{name}.bias"])],
                              name, kernel_shape=list(w.shape[2:]))
            elif kind == "prelu":  # slope per channel: (C, 1, 1) on maps, (C,) on vectors
                a = self.p[f"{name}.weight"]
                prev = g.node("PRelu", [src, g.weight(f"{name}.a", a if arg == "flat" else
                                                      a[:, None, None])], name)
            elif kind == "pool":
                k, stride = arg  # type: ignore[misc]
                prev = g.node("MaxPool", [src], name, kernel_shape=[k, k],
                              strides=[stride, stride], ceil_mode=1)
            else:  # fc
                w = self.p[f"{name}.weight"]
                if arg is not None:  # (W, H, C) columns to the NCHW flatten's (C, H, W)
                    c, h, wd = arg  # type: ignore[misc]
                    w = w.reshape(len(w), wd, h, c).transpose(0, 3, 2, 1).reshape(len(w), -1)
                    src = g.node("Flatten", [src], f"{name}.flat")
                prev = g.node("Gemm", [src, g.weight(f"{name}.w", w),
                                       g.weight(f"{name}.b", self.p[f"{name}.bias"])],
                              name, transB=1)
        return g.model(self.OUTPUTS)

    def session(self) -> object | None:
        """The network in ONNX Runtime (built once from `onnx`), or None when ONNX Runtime
        is unavailable."""
        if not self._tried:
            from facefit.io.onnx import onnx_session

            self._tried = True
            self._session = onnx_session(self.onnx())
        return self._session

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """ONNX Runtime's ``OUTPUTS`` (NCHW) for a normalised (N, H, W, 3) float32 batch, or
        [] when it cannot run the network (the caller runs `forward_numpy`)."""
        session = self.session()
        if session is None:
            return []
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return list(session.run(None, {"x": x}))  # type: ignore[attr-defined]

    def __getstate__(self) -> dict:
        """Pickled without the ONNX Runtime session (rebuilt on first use)."""
        return {**self.__dict__, "_session": None, "_tried": False}


class _PNet(_Net):
    LAYERS = (("conv", "conv1", None, None), ("prelu", "prelu1", None, None),
              ("pool", "pool1", None, (2, 2)), ("conv", "conv2", None, None),
              ("prelu", "prelu2", None, None), ("conv", "conv3", None, None),
              ("prelu", "prelu3", None, None), ("conv", "conv4_1", None, None),
              ("conv", "conv4_2", "prelu3", None))
    OUTPUTS = ("conv4_1", "conv4_2")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) -> face probability (N, H', W') and box offsets (N, 4, H', W')."""
        out = self.outputs(x)
        if not out:
            return self.forward_numpy(x)
        return _softmax1(out[0].transpose(0, 2, 3, 1)), out[1]

    def forward_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = _pool(self.conv("conv1", x, "prelu1"), 2, 2)
        x = self.conv("conv3", self.conv("conv2", x, "prelu2"), "prelu3")
        return (_softmax1(self.conv("conv4_1", x)),
                self.conv("conv4_2", x).transpose(0, 3, 1, 2))


class _RNet(_Net):
    LAYERS = (("conv", "conv1", None, None), ("prelu", "prelu1", None, None),
              ("pool", "pool1", None, (3, 2)), ("conv", "conv2", None, None),
              ("prelu", "prelu2", None, None), ("pool", "pool2", None, (3, 2)),
              ("conv", "conv3", None, None), ("prelu", "prelu3", None, None),
              ("fc", "dense4", None, (64, 3, 3)), ("prelu", "prelu4", None, "flat"),
              ("fc", "dense5_1", None, None), ("fc", "dense5_2", "prelu4", None))
    OUTPUTS = ("dense5_1", "dense5_2")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.outputs(x)
        if not out:
            return self.forward_numpy(x)
        return _softmax1(out[0]), out[1]

    def forward_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = _pool(self.conv("conv1", x, "prelu1"), 3, 2)
        x = _pool(self.conv("conv2", x, "prelu2"), 3, 2)
        x = self.dense("dense4", _flat_wh(self.conv("conv3", x, "prelu3")), "prelu4")
        return _softmax1(self.dense("dense5_1", x)), self.dense("dense5_2", x)


class _ONet(_Net):
    LAYERS = (("conv", "conv1", None, None), ("prelu", "prelu1", None, None),
              ("pool", "pool1", None, (3, 2)), ("conv", "conv2", None, None),
              ("prelu", "prelu2", None, None), ("pool", "pool2", None, (3, 2)),
              ("conv", "conv3", None, None), ("prelu", "prelu3", None, None),
              ("pool", "pool3", None, (2, 2)), ("conv", "conv4", None, None),
              ("prelu", "prelu4", None, None), ("fc", "dense5", None, (128, 3, 3)),
              ("prelu", "prelu5", None, "flat"), ("fc", "dense6_1", None, None),
              ("fc", "dense6_2", "prelu5", None), ("fc", "dense6_3", "prelu5", None))
    OUTPUTS = ("dense6_1", "dense6_2", "dense6_3")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.outputs(x)
        if not out:
            return self.forward_numpy(x)
        return _softmax1(out[0]), out[1], out[2]

    def forward_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = _pool(self.conv("conv1", x, "prelu1"), 3, 2)
        x = _pool(self.conv("conv2", x, "prelu2"), 3, 2)
        x = _pool(self.conv("conv3", x, "prelu3"), 2, 2)
        x = self.dense("dense5", _flat_wh(self.conv("conv4", x, "prelu4")), "prelu5")
        return (_softmax1(self.dense("dense6_1", x)), self.dense("dense6_2", x),
                self.dense("dense6_3", x))


def weight_dir() -> Path:
    """facefit's data folder holding the three weight files (`facefit.assets`)."""
    found = assets.find("mtcnn", list(WEIGHT_FILES))
    if found is None:
        raise MTCNNUnavailable(f"MTCNN weight files not found: {assets.INSTALL_HINT}")
    return found


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first. Overlap is intersection
    over union, or over the smaller box with ``by_min`` (MTCNN's last stage)."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2])
                    - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3])
                    - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= thresh]
    return np.asarray(keep, int)


def equalize(image_rgb: np.ndarray) -> np.ndarray:
    """The image with its luminance locally equalised (CLAHE, 4×4 tiles, clip 2): dark or
    low-contrast faces (a profile against a dark room) get the contrast MTCNN was trained on."""
    ycc = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes made square about their centres (side = the longer side)."""
    c = (boxes[:, :2] + boxes[:, 2:4]) / 2
    half = np.max(boxes[:, 2:4] - boxes[:, :2], axis=1, keepdims=True) / 2
    return np.hstack([c - half, c + half])


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply MTCNN's box offsets (fractions of the box side) to ``boxes``."""
    wh = boxes[:, 2:4] - boxes[:, :2]
    return boxes + reg * np.hstack([wh, wh])


class MTCNNDetector:
    """The MTCNN cascade (see the module docstring).

    Args:
        min_face: smallest face side searched, pixels.
        mirror_search: run the cascade on the mirrored image too and merge the faces (P-Net's
            proposals are not mirror-symmetric: a profile facing one way is found more easily).
        mirror_check: replace each face's score by the mean of O-Net's score at detection and
            the two of `verify` (refined box, mirrored): fewer confident false faces.
        min_face_frac: and at least this fraction of the image's shorter side (the pyramid's
            finest levels cost most; 0 searches down to ``min_face``).
        thresholds: P-Net, R-Net and O-Net face-probability thresholds.
        factor: image-pyramid scale step.
    """

    def __init__(self, min_face: float = 20.0, thresholds: tuple[float, float, float] =
                 (0.6, 0.7, 0.7), factor: float = 0.709, min_face_frac: float = 0.0,
                 mirror_search: bool = False, mirror_check: bool = False,
                 folder: Path | None = None) -> None:
        folder = Path(folder) if folder is not None else weight_dir()
        nets = []
        for cls, name in zip((_PNet, _RNet, _ONet), WEIGHT_FILES, strict=True):
            path = folder / name
            if not path.is_file():
                raise MTCNNUnavailable(f"{path}: MTCNN weight file missing")
            try:
                nets.append(cls(read_state_dict(path)))
            except StateDictError as exc:
                raise MTCNNUnavailable(str(exc)) from exc
        self.pnet, self.rnet, self.onet = nets
        self.min_face = float(min_face)
        self.min_face_frac = float(min_face_frac)
        self.mirror_check = mirror_check
        self.mirror_search = mirror_search
        self.thresholds = thresholds
        self.factor = factor
        self._lock = threading.Lock()

    @staticmethod
    def _tensor(images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → normalised (N, H, W, 3) float32."""
        return (images.astype(np.float32) - np.float32(_MEAN)) * np.float32(_SCALE)

    def _crops(self, image: np.ndarray, boxes: np.ndarray, n: int) -> np.ndarray:
        """(N, n, n, 3) crops of ``boxes`` (zero outside the image)."""
        out = np.empty((len(boxes), n, n, 3), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            k = n / max(x1 - x0, 1e-6), n / max(y1 - y0, 1e-6)
            m = np.array([[k[0], 0, -x0 * k[0]], [0, k[1], -y0 * k[1]]], np.float64)
            out[i] = cv2.warpAffine(image, m, (n, n), flags=cv2.INTER_AREA if k[0] < 1
                                    else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out

    def _stage1(self, image: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid: (N, 5) boxes x0 y0 x1 y1 score."""
        h, w = image.shape[:2]
        scale = 12.0 / max(self.min_face, self.min_face_frac * min(h, w))
        side = min(h, w) * scale
        found = []
        while side >= 12:
            sw, sh = int(np.ceil(w * scale)), int(np.ceil(h * scale))
            im = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            prob, reg = self.pnet(self._tensor(im[None]))
            prob, reg = prob[0], reg[0]
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys):
                b = np.stack([xs * 2, ys * 2, xs * 2 + 12, ys * 2 + 12], 1) / scale
                b = _regress(b.astype(np.float64), reg[:, ys, xs].T)
                s = prob[ys, xs]
                k = nms(b, s, 0.5)
                found.append(np.hstack([b[k], s[k, None]]))
            scale *= self.factor
            side *= self.factor
        if not found:
            return np.zeros((0, 5))
        boxes = np.vstack(found)
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]

    def verify(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N,) face probability of each box (N, 4): O-Net's score on the squared box averaged
        with its score on the mirrored crop (a face stays a face in a mirror; O-Net's
        responses to background are less consistent)."""
        crops = self._crops(np.ascontiguousarray(image_rgb), _square(np.asarray(boxes, float)),
                            48)
        with self._lock:
            prob = self.onet(self._tensor(np.concatenate([crops, crops[:, :, ::-1]])))[0]
        return prob.reshape(2, -1).mean(0)

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, best first."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} "
                             f"{image_rgb.dtype}")
        image = np.ascontiguousarray(image_rgb)
        faces = self._cascade(image, max_faces)
        if not self.mirror_search:
            return faces
        w = image.shape[1]
        for f in self._cascade(np.ascontiguousarray(image[:, ::-1]), max_faces):
            kp = f.keypoints[[1, 0, 2, 4, 3]] * [-1, 1] + [w, 0]  # image-left stays first
            box = np.array([w - f.box[2], f.box[1], w - f.box[0], f.box[3]], np.float32)
            faces.append(Face(box, f.score, kp.astype(np.float32)))
        if not faces:
            return []
        k = nms(np.stack([f.box for f in faces]), np.array([f.score for f in faces]), 0.5)
        return [faces[i] for i in k[:max_faces]]

    def _cascade(self, image: np.ndarray, max_faces: int) -> list[Face]:
        with self._lock:
            boxes = self._stage1(image)
            if not len(boxes):
                return []
            boxes = _square(boxes[:, :4])
            prob, reg = self.rnet(self._tensor(self._crops(image, boxes, 24)))
            ok = prob >= self.thresholds[1]
            if not ok.any():
                return []
            boxes, prob, reg = boxes[ok], prob[ok], reg[ok]
            k = nms(boxes, prob, 0.7)
            boxes = _square(_regress(boxes[k], reg[k]))
            prob, reg, pts = self.onet(self._tensor(self._crops(image, boxes, 48)))
        ok = prob >= self.thresholds[2]
        boxes, prob, reg, pts = boxes[ok], prob[ok], reg[ok], pts[ok]
        wh = boxes[:, 2:4] - boxes[:, :2]
        kps = np.stack([boxes[:, None, 0] + pts[:, :5] * wh[:, None, 0],
                        boxes[:, None, 1] + pts[:, 5:] * wh[:, None, 1]], -1)
        boxes = _regress(boxes, reg)
        k = nms(boxes, prob, 0.7, by_min=True)[:max_faces]
        if self.mirror_check and len(k):  # mean of three O-Net looks (see `verify`)
            prob[k] = (prob[k] + 2 * self.verify(image, boxes[k])) / 3
        return [Face(boxes[i].astype(np.float32), float(prob[i]), kps[i].astype(np.float32))
                for i in k]
