"""Pluggable feature extractors and folder-level FID/KID (the metrics live in
`facefit.metrics.generative`, re-exported here).

No network weights ship with facefit (none are on PyPI under a usable licence). The user
gives one of:

* a TorchScript file (``torch.jit.save``; e.g. an Inception-v3 exported by the user), or a
  ``torch.export`` archive (``.pt2``),
* a torch state dict (``.pt``/``.pth``) plus the module to load it into
  (``module`` argument, or ``--module package.module:Class`` on the command line; the class
  is built with no arguments),
* an ONNX file (needs ``onnxruntime``, which is optional).

Images are resized to ``input_size`` (bilinear), laid out NCHW float32 and scaled by
``input_range``: ``"unit"`` [0, 1], ``"symmetric"`` [-1, 1], ``"uint8"`` [0, 255] or
``"imagenet"`` (unit, then ImageNet mean/std). Outputs with spatial axes are averaged over
them; the result is (N, D) float64.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facefit.metrics.generative import (
    PathLengthRegularizer,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    path_length,
    path_lengths,
    perceptual_path_length,
    polynomial_kernel,
    softmax,
    trace_sqrt_product,
)

__all__ = [
    "FeatureExtractor", "PathLengthRegularizer", "feature_statistics", "fid_from_features",
    "folder_features", "frechet_distance", "inception_score", "kernel_inception_distance",
    "load_feature_extractor", "mmd2_unbiased", "path_length", "path_lengths",
    "perceptual_path_length", "polynomial_kernel", "softmax", "trace_sqrt_product",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
ONNX_MISSING = ("ONNX feature extractors need onnxruntime, which is not installed "
                "(pip install onnxruntime)")


class FeatureExtractor:
    """Wraps a network: (N, H, W, 3) uint8 RGB images -> (N, D) float64 features.

    Args:
        run: maps an (N, 3, S, S) float32 numpy batch to a numpy array (N, D) or
            (N, D, h, w).
        input_size: side S the images are resized to.
        input_range: ``"unit"``, ``"symmetric"``, ``"uint8"`` or ``"imagenet"``.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], input_size: int = 299,
                 input_range: str = "unit") -> None:
        if input_range not in ("unit", "symmetric", "uint8", "imagenet"):
            raise ValueError(f"unknown input_range {input_range!r}")
        self.run = run
        self.input_size = input_size
        self.input_range = input_range

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 3, S, S) float32 batch from uint8 RGB images of any size."""
        from PIL import Image

        s = self.input_size
        batch = np.stack([
            np.asarray(Image.fromarray(np.asarray(im, np.uint8)).convert("RGB")
                       .resize((s, s), Image.Resampling.BILINEAR), np.float32)
            for im in images])
        if self.input_range != "uint8":
            batch /= 255.0
        if self.input_range == "symmetric":
            batch = batch * 2.0 - 1.0
        elif self.input_range == "imagenet":
            batch = (batch - _IMAGENET_MEAN) / _IMAGENET_STD
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.asarray(self.run(self.preprocess(images)), np.float64)
        if out.ndim > 2:
            out = out.reshape(out.shape[0], out.shape[1], -1).mean(axis=2)
        return out.reshape(out.shape[0], -1)


def _import_object(spec: str) -> Any:
    mod, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"expected 'package.module:Class', got {spec!r}")
    return getattr(importlib.import_module(mod), name)


def load_feature_extractor(path: str | Path, module: Any = None, input_size: int = 299,
                           input_range: str = "unit", device: str = "cpu") -> FeatureExtractor:
    """Load a feature network from a TorchScript, state-dict or ONNX file.

    Args:
        path: ``.onnx`` (onnxruntime), ``.pt2`` (torch.export), or another torch file:
            TorchScript if it loads as one, otherwise a state dict for ``module``.
        module: a ``torch.nn.Module`` instance, a class, or a ``"package.module:Class"``
            string; needed for state dicts only.
        input_size, input_range: see `FeatureExtractor`.
        device: torch device for torch networks.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeError(ONNX_MISSING) from exc
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return FeatureExtractor(lambda x: sess.run(None, {name: x})[0], input_size, input_range)

    import torch

    net: Any = None
    try:
        if path.suffix.lower() == ".pt2":  # torch.export archive
            net = torch.export.load(str(path)).module()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError):
        if module is None:
            raise ValueError(
                f"{path} is not TorchScript; a state dict needs a module to load it into "
                "(module=..., or --module package.module:Class)") from None
        if isinstance(module, str):
            module = _import_object(module)
        net = module() if isinstance(module, type) else module
        state = torch.load(str(path), map_location=device, weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        net.load_state_dict(state)
    if path.suffix.lower() != ".pt2":  # exported programs have no train/eval switch
        net = net.to(device).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.from_numpy(x).to(device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.detach().cpu().numpy()

    return FeatureExtractor(run, input_size, input_range)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def folder_features(folder: str | Path, extractor: Callable[[Sequence[np.ndarray]], np.ndarray],
                    batch_size: int = 32) -> np.ndarray:
    """(N, D) features of every image in ``folder`` (EXIF orientation not applied)."""
    from facefit.eval.predictions import load_rgb

    files = list_images(folder)
    chunks = [extractor([load_rgb(p) for p in files[i:i + batch_size]])
              for i in range(0, len(files), batch_size)]
    return np.concatenate(chunks, axis=0)
