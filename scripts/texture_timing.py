"""Time `facefit.texture.extract.extract_texture` against the same function at an earlier git
revision, on cached fits (``scripts/texture_checks.py`` writes them) and the Reconstructor's
face crops. Rounds alternate old and new; each image's time is its fastest round, CPU time
of this process by default (less disturbed by other jobs on a shared machine than wall
time). Usage::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 \\
        python scripts/texture_timing.py --before 5e41f2a examples/astronaut.png \\
        ../shared/data/helen-test --limit 20
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facefit.io.image import load_image
from facefit.model.named import load_named_model
from facefit.reconstruct import crop_to_face
from facefit.texture import extract

ROOT = Path(__file__).resolve().parents[1]


def module_at(revision: str, folder: Path):
    """`facefit.texture.extract` as it was at git ``revision`` (imported from a copy)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show",
                             f"{revision}:src/facefit/texture/extract.py"],
                            check=True, capture_output=True, text=True).stdout
    path = folder / "extract_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("extract_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["extract_before"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--before", default="5e41f2a", help="git revision to compare with")
    parser.add_argument("--model", default="default")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--wall", action="store_true", help="wall-clock time, not CPU time")
    parser.add_argument("--cache", type=Path, default=Path("out/texture_checks"))
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.wall else time.process_time
    model = load_named_model(args.model)
    paths = []
    for item in args.inputs:
        paths += sorted(item.glob("*.jpg"))[: args.limit] if item.is_dir() else [item]
    cases = []
    for p in paths:  # texture_checks.py's cache keys
        name = ("" if args.model == "default" else args.model + ":") + str(p.resolve())
        key = args.cache / (hashlib.sha1(name.encode()).hexdigest()[:16] + ".npy")
        if key.is_file():
            image, verts = crop_to_face(load_image(p), np.load(key), max_side=2 * args.size)
            cases.append((verts, np.ascontiguousarray(image)))
    if not cases:
        raise SystemExit("no cached fits: run scripts/texture_checks.py on these images first")
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"before": module_at(args.before, Path(tmp)), "now": extract}
        times = {k: np.full((args.rounds, len(cases)), np.inf) for k in versions}
        for r in range(args.rounds):
            for name, module in versions.items():
                module.extract_texture(model, *cases[0], size=args.size)  # caches
                for i, (verts, image) in enumerate(cases):
                    t0 = clock()
                    module.extract_texture(model, verts, image, size=args.size)
                    times[name][r, i] = clock() - t0
    for name, t in times.items():
        best = t.min(0) * 1e3
        print(f"{name:>6s}: {'wall' if args.wall else 'CPU'} ms per face over {len(cases)} "
              f"images: median {np.median(best):.1f}, mean {best.mean():.1f}, "
              f"max {best.max():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
