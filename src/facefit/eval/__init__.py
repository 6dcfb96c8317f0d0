"""Benchmark protocols: datasets (`datasets`), landmark tables (`landmarks`), predictions
(`predictions`), shape (`shape`), synthetic ground truth
(`synthetic`) and generative-model folders (`generative`); the metrics are `facefit.metrics`."""

from facefit.exports import lazy_exports

__all__ = ["evaluate_300w", "evaluate_aflw2000"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "evaluate_aflw2000": "facefit.eval.landmarks",
    "evaluate_300w": "facefit.eval.landmarks",
})
