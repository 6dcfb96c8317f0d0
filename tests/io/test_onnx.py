"""The in-memory ONNX writer (`facefit.io.onnx`) against numpy computations of the same ops."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.io.onnx import OnnxGraph, _varint, onnx_session


def test_varints_are_protobuf_encodings() -> None:
    assert _varint(1) == b"\x01"
    assert _varint(300) == b"\xac\x02"  # the protocol-buffer documentation's example
    assert _varint(-1) == b"\xff" * 9 + b"\x01"  # 64-bit two's complement, 10 bytes


def _conv_numpy(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int
                ) -> np.ndarray:
    """Direct (N, C, H, W) cross-correlation, the independent reference."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, w.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    return out + b[None, :, None, None]


def test_graph_runs_in_onnx_runtime_as_numpy_computes_it() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 11)).astype(np.float32)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    slope = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    fc = rng.normal(size=(5, 4 * 3 * 3)).astype(np.float32)
    g = OnnxGraph("x", ("batch", 3, "h", "w"))
    c = g.node("Conv", ["x", g.weight("w", w), g.weight("b", b)], "conv",
               kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    a = g.node("PRelu", [c, g.weight("slope", slope[:, None, None])], "act")
    p = g.node("MaxPool", [a], "pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    f = g.node("Gemm", [g.node("Flatten", [p], "flat"), g.weight("fc_w", fc),
                        g.weight("fcb", np.zeros(5))], "fc", transB=1)
    s = g.node("Softmax", [g.node("LeakyRelu", [f], "leaky", alpha=0.25)], "soft", axis=-1)
    session = onnx_session(g.model([c, s]))
    assert session is not None
    conv, soft = session.run(None, {"x": x})

    ref = _conv_numpy(x.astype(np.float64), w, b, 2, 1)  # (2, 4, 5, 6)
    np.testing.assert_allclose(conv, ref, rtol=1e-5, atol=1e-5)
    act = np.where(ref > 0, ref, ref * slope[None, :, None, None])
    padded = np.full((2, 4, 6, 6), -np.inf)  # ceil mode: the last window hangs over
    padded[:, :, :5, :6] = act
    pool = padded.reshape(2, 4, 3, 2, 3, 2).max(axis=(3, 5))
    y = pool.reshape(2, -1) @ fc.T
    y = np.where(y > 0, y, 0.25 * y)
    e = np.exp(y - y.max(1, keepdims=True))
    np.testing.assert_allclose(soft, e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_a_broken_model_gives_no_session() -> None:
    g = OnnxGraph("x", (1, 3))
    g.node("NoSuchOperator", ["x"], "y")
    assert onnx_session(g.model(["y"])) is None


def test_session_runs_one_thread() -> None:
    ort = pytest.importorskip("onnxruntime")
    g = OnnxGraph("x", (1, 3))
    session = onnx_session(g.model([g.node("Relu", ["x"], "y")]))
    assert isinstance(session, ort.InferenceSession)
    opts = session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
