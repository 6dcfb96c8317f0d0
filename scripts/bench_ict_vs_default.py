"""AFLW2000-3D and HELEN landmark NME of the packaged ICT head (``--model ict``) next to the
default model, on the first N images of each set (same detector, same protocols as
``facefit eval aflw2000`` and ``facefit eval 300w``). Usage::

    python scripts/bench_ict_vs_default.py [N] [--dir ../shared/data/aflw2000-3d-dev]
        [--helen ../shared/data/helen-test]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facefit.eval.datasets import load_300w, load_aflw2000
from facefit.eval.landmarks import evaluate_300w, evaluate_aflw2000, stack_predictions
from facefit.eval.predictions import predict_with_facefit
from facefit.model import load_default_model
from facefit.model.ict import load_compact_ict
from facefit.reconstruct import Reconstructor

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=100)
    ap.add_argument("--dir", type=Path,
                    default=ROOT.parent / "shared" / "data" / "aflw2000-3d-dev")
    ap.add_argument("--helen", type=Path, default=ROOT.parent / "shared" / "data" / "helen-test")
    args = ap.parse_args()
    samples = load_aflw2000(args.dir, args.n)
    stems = [s.stem for s in samples]
    gt = {s.stem: s.landmarks_3d for s in samples}
    for name, model in (("default", load_default_model()), ("ict", load_compact_ict())):
        t0 = time.perf_counter()
        preds = predict_with_facefit([s.image_path for s in samples],
                                     Reconstructor(model=model, texture_size=0), gt,
                                     "aflw2000", progress=False)
        xy = stack_predictions(preds, stems, dims=2)
        z = stack_predictions(preds, stems, dims=3)[..., 2:]
        res = evaluate_aflw2000(np.concatenate([xy, z], -1),
                                np.stack([s.landmarks_3d for s in samples]),
                                np.array([s.yaw_deg for s in samples]), stems)
        print(f"{name}: {time.perf_counter() - t0:.1f} s")
        print(res.table(), flush=True)
    helen = load_300w(args.helen, args.n)
    hstems = [s.stem for s in helen]
    hgt = {s.stem: s.landmarks for s in helen}
    for name, model in (("default", load_default_model()), ("ict", load_compact_ict())):
        preds = predict_with_facefit([s.image_path for s in helen],
                                     Reconstructor(model=model, texture_size=0), hgt, "300w",
                                     progress=False)
        res3 = evaluate_300w(stack_predictions(preds, hstems, dims=2),
                             np.stack([s.landmarks for s in helen]), hstems, 0.08)
        print(res3.table(name=f"HELEN {name}"), flush=True)


if __name__ == "__main__":
    main()
