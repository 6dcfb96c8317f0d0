"""Small networks as ONNX models written in memory, run by ONNX Runtime on the CPU.

facefit's own networks (the regression network, `facefit.regress.inference`; MTCNN,
`facefit.detect.mtcnn`) keep their weights in plain numpy archives; at first use each is
written here as an ONNX ``ModelProto`` (the protocol-buffer encoding of the ONNX spec,
https://onnx.ai: a graph of standard operators with float32 initializers, opset 13) and
loaded by ``onnxruntime`` from those bytes: no file, no ``onnx`` package, no code from a
model file. ONNX Runtime's CPU kernels run a MobileNet-class network several times faster than
the numpy reference kernels kept beside each network.

    graph = OnnxGraph("x", ("N", 3, 120, 120))
    graph.node("Conv", ["x", graph.weight("w0", w), graph.weight("b0", b)], "c0",
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    session = onnx_session(graph.model(["c0"]))
    y = session.run(None, {"x": x})[0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OPSET = 13
_FLOAT = 1  # TensorProto.DataType.FLOAT
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7  # AttributeProto.AttributeType


def _varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement (10 bytes)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(field: int, payload: bytes) -> bytes:
    """A length-delimited protocol-buffer field (wire type 2): bytes, string or message."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def pb_int(field: int, value: int) -> bytes:
    """A varint protocol-buffer field (wire type 0)."""
    return _varint(field << 3) + _varint(int(value))


def _str(field: int, text: str) -> bytes:
    return pb_bytes(field, text.encode())


def _attribute(name: str, value: Any) -> bytes:
    """An ``AttributeProto``: an int, a float or a list of ints."""
    body = _str(1, name)
    if isinstance(value, bool | int | np.integer):
        return body + pb_int(3, int(value)) + pb_int(20, _ATTR_INT)
    if isinstance(value, float):
        return body + _varint(2 << 3 | 5) + np.float32(value).tobytes() + pb_int(20, _ATTR_FLOAT)
    return body + b"".join(pb_int(8, int(v)) for v in value) + pb_int(20, _ATTR_INTS)


def _value_info(name: str, shape: Sequence[int | str]) -> bytes:
    """A float32 ``ValueInfoProto``; a str dimension is symbolic (e.g. the batch)."""
    dims = b"".join(pb_bytes(1, _str(2, d) if isinstance(d, str) else pb_int(1, d))
                    for d in shape)
    tensor = pb_int(1, _FLOAT) + pb_bytes(2, dims)
    return _str(1, name) + pb_bytes(2, pb_bytes(1, tensor))


class OnnxGraph:
    """An ONNX graph built node by node: one float32 input, float32 initializers.

    Args:
        input_name: the graph input's name.
        input_shape: its shape; strings name free dimensions (batch, height, width).
    """

    def __init__(self, input_name: str, input_shape: Sequence[int | str]) -> None:
        self._input = _value_info(input_name, input_shape)
        self._nodes: list[bytes] = []
        self._inits: list[bytes] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as a float32 initializer (``TensorProto``, raw little-endian data);
        returns ``name``."""
        a = np.ascontiguousarray(array, "<f4")
        self._inits.append(b"".join(pb_int(1, d) for d in a.shape) + pb_int(2, _FLOAT)
                           + _str(8, name) + pb_bytes(9, a.tobytes()))
        return name

    def node(self, op_type: str, inputs: Sequence[str], output: str, **attributes: Any
             ) -> str:
        """Add one operator (a ``NodeProto`` of the default domain); returns ``output``."""
        body = b"".join(_str(1, i) for i in inputs) + _str(2, output) + _str(3, output)
        body += _str(4, op_type)
        body += b"".join(pb_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self._nodes.append(body)
        return output

    def model(self, outputs: Sequence[str]) -> bytes:
        """The serialised ``ModelProto`` (IR version 8, opset `OPSET`) with ``outputs`` as
        the graph's outputs (float32, shapes left to inference)."""
        graph = b"".join(pb_bytes(1, n) for n in self._nodes) + _str(2, "facefit")
        graph += b"".join(pb_bytes(5, t) for t in self._inits) + pb_bytes(11, self._input)
        graph += b"".join(pb_bytes(12, _str(1, o) + pb_bytes(2, pb_bytes(1, pb_int(1, _FLOAT))))
                          for o in outputs)
        opset = _str(1, "") + pb_int(2, OPSET)
        return pb_int(1, 8) + _str(2, "facefit") + pb_bytes(7, graph) + pb_bytes(8, opset)


def onnx_session(model: bytes) -> Any | None:
    """An ``onnxruntime.InferenceSession`` of the serialised ``model`` on the CPU, one thread
    (facefit runs one image per process; a worker pool supplies the parallelism and a forked
    worker inherits no thread pool), or None when ONNX Runtime is missing or rejects the
    model (callers then use their numpy reference)."""
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - missing package, unsupported platform or operator
        return None
