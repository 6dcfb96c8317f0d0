"""The regression network's forward pass without torch: ONNX Runtime, numpy as fallback.

`facefit.regress.network.MobileNetV1` with every batch norm folded into its convolution
(``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``) is a chain
of 3x3 convolutions (the first full, then depthwise), 1x1 convolutions and ReLUs, a global
average pool and a linear head. `FoldedMobileNet` runs it in ONNX Runtime (the folded layers
written in memory as an ONNX graph, `FoldedMobileNet.onnx`, `facefit.io.onnx`): 1.7 ms a 120 px
crop on one core here, against 4.7 ms for the same layers in OpenCV's DNN module and about
twice that for `FoldedMobileNet.forward_numpy`, the channels-last numpy reference (depthwise
layers as nine shifted multiply-adds, 1x1 layers as one BLAS product each). A process that
landmarks faces does not pay torch's import (1.5-3 s here).

Weights file (``.npz``, written by `save_weights`, read by `load_weights`, no pickles):
``w{i}`` (float16, torch layout (Cout, Cin/groups, k, k)), ``b{i}`` (float32) per convolution,
``stride``/``groups`` (int32, one per convolution), ``head_w``/``head_b``, ``norm_mean``/
``norm_std`` (the output de-normalisation) and ``meta`` (a JSON string).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FoldedConv", "FoldedMobileNet", "load_weights", "save_weights", "from_torch"]


@dataclass(frozen=True, eq=False)
class FoldedConv:
    """One convolution with its batch norm folded in, followed by a ReLU.

    Attributes:
        weight: (Cout, Cin / groups, k, k) float32 (torch layout).
        bias: (Cout,) float32.
        stride: 1 or 2; padding is ``k // 2``.
        groups: 1 (full) or Cin (depthwise).
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: int
    groups: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, H, W, Cin) float32 -> (B, Ho, Wo, Cout) float32, ReLU applied."""
        if self.weight.shape[2] == 1:  # 1x1: one (B*H*W, Cin) x (Cin, Cout) product
            y = (x.reshape(-1, x.shape[-1]) @ self._matrix()).reshape(*x.shape[:3], -1)
        else:
            y = self._conv3(x)
        y += self.bias
        return np.maximum(y, 0.0, out=y)

    def _matrix(self) -> np.ndarray:
        """(k*k*Cin, Cout) weights of the full convolution's im2col product (cached)."""
        m = self.__dict__.get("_m")
        if m is None:
            m = np.ascontiguousarray(
                self.weight.transpose(2, 3, 1, 0).reshape(-1, self.weight.shape[0]))
            object.__setattr__(self, "_m", m)
        return m

    def _conv3(self, x: np.ndarray) -> np.ndarray:
        s = self.stride
        b, h, w, c = x.shape
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        xp = np.zeros((b, h + 2, w + 2, c), np.float32)
        xp[:, 1:-1, 1:-1] = x

        def tap(dy: int, dx: int) -> np.ndarray:  # (B, Ho, Wo, Cin) input under kernel tap
            return xp[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s]

        if self.groups == 1:  # full convolution: the nine taps side by side, one product
            cols = np.concatenate([tap(dy, dx) for dy in range(3) for dx in range(3)], -1)
            return (cols.reshape(-1, cols.shape[-1]) @ self._matrix()).reshape(b, ho, wo, -1)
        kern = np.ascontiguousarray(self.weight[:, 0].transpose(1, 2, 0))  # (3, 3, C)
        y = np.multiply(tap(0, 0), kern[0, 0])
        tmp = np.empty_like(y)
        for dy in range(3):
            for dx in range(3):
                if dy or dx:
                    np.multiply(tap(dy, dx), kern[dy, dx], out=tmp)
                    y += tmp
        return y


@dataclass(frozen=True, eq=False)
class FoldedMobileNet:
    """The folded network: ``layers``, then the mean over pixels, then ``x @ head_w.T +
    head_b``, de-normalised by ``norm_mean + norm_std * y``.

    Attributes:
        layers: the folded convolutions in order.
        head_w: (P, C) float32; head_b: (P,) float32.
        norm_mean, norm_std: (P,) float32 output de-normalisation (`ParamNorm`).
        meta: the weights' description (model, network, input size, width, outputs).
    """

    layers: tuple[FoldedConv, ...]
    head_w: np.ndarray
    head_b: np.ndarray
    norm_mean: np.ndarray
    norm_std: np.ndarray
    meta: dict = field(default_factory=dict)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 RGB crops -> (B, P) float32 parameters (de-normalised), by
        ONNX Runtime (`session`), else by `forward_numpy`."""
        session = self.session()
        if session is None:
            return self.forward_numpy(crops)
        x = np.ascontiguousarray(_normalised(crops).transpose(0, 3, 1, 2))
        y = session.run(None, {"x": x})[0].reshape(len(x), -1)  # type: ignore[attr-defined]
        return (y * self.norm_std + self.norm_mean).astype(np.float32)

    def forward_numpy(self, crops: np.ndarray) -> np.ndarray:
        """`__call__` in numpy (the reference; several times the time of ONNX Runtime's)."""
        x = _normalised(crops)
        for layer in self.layers:
            x = layer(x)
        y = x.mean(axis=(1, 2)) @ self.head_w.T + self.head_b
        return (y * self.norm_std + self.norm_mean).astype(np.float32)

    def session(self) -> object | None:
        """The network in ONNX Runtime (built once from `onnx`, cached), or None when ONNX
        Runtime is unavailable. Its output is the head's, before de-normalisation."""
        if "_session" not in self.__dict__:
            from facefit.io.onnx import onnx_session

            object.__setattr__(self, "_session", onnx_session(self.onnx()))
        return self.__dict__["_session"]

    def __getstate__(self) -> dict:
        """Pickled without the ONNX Runtime session (rebuilt on first use)."""
        return {k: v for k, v in self.__dict__.items() if k != "_session"}

    def onnx(self) -> bytes:
        """The network as a serialised ONNX model (`facefit.io.onnx.OnnxGraph`): input ``x``
        (B, 3, S, S) float32 normalised crops, each folded layer a ``Conv`` (padding k // 2,
        ``group`` for the depthwise ones) and a ``Relu``, then ``GlobalAveragePool``,
        ``Flatten`` and the head as ``Gemm``; output (B, P) before de-normalisation."""
        from facefit.io.onnx import OnnxGraph

        size = int(self.meta.get("input_size", 120))
        g = OnnxGraph("x", ("batch", 3, size, size))
        x = "x"
        for i, la in enumerate(self.layers):
            k = la.weight.shape[2]
            x = g.node("Conv", [x, g.weight(f"w{i}", la.weight), g.weight(f"b{i}", la.bias)],
                       f"conv{i}", kernel_shape=[k, k], strides=[la.stride] * 2,
                       pads=[k // 2] * 4, group=la.groups)
            x = g.node("Relu", [x], f"relu{i}")
        x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flat")
        y = g.node("Gemm", [x, g.weight("head_w", self.head_w), g.weight("head_b", self.head_b)],
                   "y", transB=1)
        return g.model([y])


def _normalised(crops: np.ndarray) -> np.ndarray:
    """(B, S, S, 3) uint8 crops as the network's float32 input, ``(x / 255 - 0.5) * 4``."""
    return (np.asarray(crops, np.float32) * np.float32(1 / 255) - np.float32(0.5)) * 4.0


def from_torch(features, head, norm_mean: np.ndarray, norm_std: np.ndarray,  # noqa: ANN001
               meta: dict | None = None) -> FoldedMobileNet:
    """The folded network of a trained `MobileNetV1`'s ``features`` (``Conv2d, BatchNorm2d,
    ReLU`` triples) and ``head`` (``Linear``), in eval mode."""
    import torch
    from torch import nn

    mods = list(features)
    layers = []
    with torch.no_grad():
        for conv, bn in zip(mods[0::3], mods[1::3], strict=True):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                raise ValueError("expected Conv2d, BatchNorm2d, ReLU triples")
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            layers.append(FoldedConv(
                (conv.weight * scale[:, None, None, None]).numpy().astype(np.float32),
                ((bias - bn.running_mean) * scale + bn.bias).numpy().astype(np.float32),
                int(conv.stride[0]), int(conv.groups)))
        return FoldedMobileNet(tuple(layers), head.weight.numpy().astype(np.float32),
                               head.bias.numpy().astype(np.float32),
                               np.asarray(norm_mean, np.float32), np.asarray(norm_std, np.float32),
                               dict(meta or {}))


def save_weights(net: FoldedMobileNet) -> bytes:
    """The ``.npz`` bytes of ``net``: convolution weights in float16, the rest float32; the
    same bytes for the same weights (fixed archive dates)."""
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(net.layers):
        arrays[f"w{i}"] = layer.weight.astype(np.float16)
        arrays[f"b{i}"] = layer.bias.astype(np.float32)
    arrays["stride"] = np.array([la.stride for la in net.layers], np.int32)
    arrays["groups"] = np.array([la.groups for la in net.layers], np.int32)
    arrays["head_w"] = net.head_w.astype(np.float16)
    arrays["head_b"] = net.head_b.astype(np.float32)
    arrays["norm_mean"] = net.norm_mean.astype(np.float32)
    arrays["norm_std"] = net.norm_std.astype(np.float32)
    arrays["meta"] = np.array(json.dumps(net.meta, sort_keys=True))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            item = io.BytesIO()
            np.lib.format.write_array(item, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                        item.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def load_weights(path: str | Path) -> FoldedMobileNet:
    """The network of a weights file of `save_weights`. Raises ValueError (naming the file)
    if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            n = len(z["stride"])
            layers = tuple(FoldedConv(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32),
                                      int(z["stride"][i]), int(z["groups"][i])) for i in range(n))
            net = FoldedMobileNet(layers, z["head_w"].astype(np.float32),
                                  z["head_b"].astype(np.float32), z["norm_mean"].astype(np.float32),
                                  z["norm_std"].astype(np.float32), json.loads(z["meta"].item()))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not facefit regression weights ({e})") from e
    return net
