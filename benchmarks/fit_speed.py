"""CPU time of the landmark fit alone (`facefit.fit.face_fit.fit_face`) per face.

Detects the faces of the first ``--limit`` AFLW2000-3D dev images once (MediaPipe's mesh, as
``facefit reconstruct --landmarks mediapipe``, and facefit's network from the same box, as
``--landmarks network``; not timed), then fits the default model to every detection
``--repeats`` times and prints, per landmark source, the CPU milliseconds a fit
(``time.process_time``; the fastest pass, and the median over passes) beside wall time.
One BLAS thread; pin it (``taskset -c 1``) and compare trees back to back
(``PYTHONPATH=<other tree>/src``), as the box's load moves single numbers.

    python benchmarks/fit_speed.py [--data ../shared/data/aflw2000-3d-dev] [--limit 100]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

import facefit  # noqa: E402
from facefit.detect.network import NetworkLandmarkDetector  # noqa: E402
from facefit.eval.datasets import load_aflw2000  # noqa: E402
from facefit.eval.predictions import select_face  # noqa: E402
from facefit.fit.face_fit import fit_face  # noqa: E402
from facefit.io.image import load_image  # noqa: E402
from facefit.reconstruct import Reconstructor  # noqa: E402
from facefit.regress.predictor import RegressionPredictor  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw2000-3d-dev"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=100, help="first N images")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the faces")
    args = ap.parse_args()

    rec = Reconstructor(texture_size=0, landmarks="mediapipe")
    net_lm = NetworkLandmarkDetector(rec.detector, "network", predictor=RegressionPredictor())
    sets: dict[str, list] = {"mediapipe": [], "network": []}
    for s in load_aflw2000(args.data, args.limit):
        image = load_image(s.image_path)
        faces = rec.detector.detect(image)
        if not faces:
            continue
        face = faces[select_face([f.box for f in faces], s.landmarks_2d)]
        size = image.shape[1::-1]
        sets["mediapipe"].append((face, size))
        sets["network"].append((net_lm.landmark_faces(image, [face])[0], size))
    print(f"facefit from {Path(facefit.__file__).parent}; {len(sets['mediapipe'])} faces of "
          f"{args.data.name}, default model, {args.repeats} passes")
    for name, faces in sets.items():
        fit_face(rec.model, *faces[0])  # per-model caches
        cpu, wall = [], []
        for _ in range(args.repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            for face, size in faces:
                fit_face(rec.model, face, size)
            cpu.append((time.process_time() - c0) / len(faces))
            wall.append((time.perf_counter() - w0) / len(faces))
        print(f"{name:>10}: fit_face {1e3 * min(cpu):6.2f} ms CPU a face (fastest pass; "
              f"median {1e3 * float(np.median(cpu)):.2f}), wall {1e3 * min(wall):.2f}")


if __name__ == "__main__":
    main()
