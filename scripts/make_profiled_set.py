"""Generate the face-profiling training set (300W-LP style) from ``train-300w``.

One shard ``OUT/<stem>.npz`` per source face (`facefit.regress.dataset.profile_face`),
deterministic for a given ``--seed``; existing shards are skipped, so an interrupted run
resumes. Usage::

    python scripts/make_profiled_set.py [--data ../shared/data/train-300w] [--out out/profiled]
        [--views 20] [--limit N] [--seed 0] [--workers 1] [--sheet PNG]

Exit codes: 0 done, 2 bad input (missing folder, unreadable face).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

_MODEL = None


def _one(job: tuple[str, int, str, int, int]) -> str:
    global _MODEL
    from facefit.model.bfm_3ddfa import load_default_model
    from facefit.regress.dataset import profile_face, write_shard

    jpg, index, out, views, seed = job
    if _MODEL is None:
        _MODEL = load_default_model()
    write_shard(out, profile_face(_MODEL, jpg, index, views=views, seed=seed))
    return out


def contact_sheet(shards: list[Path], path: Path, cols: int = 8, rows: int = 4) -> None:
    """PNG grid of the first views of ``shards`` with their 68 labels drawn (green)."""
    from PIL import Image

    from facefit.regress.dataset import read_shard

    tiles = []
    for s in shards:
        d = read_shard(s)
        for img, lm in zip(d["images"], d["landmarks_68"], strict=True):
            t = img.copy()
            xy = np.rint(lm).astype(int)
            ok = (xy >= 0).all(1) & (xy < t.shape[0]).all(1)
            t[xy[ok, 1], xy[ok, 0]] = (0, 255, 0)
            tiles.append(t)
            if len(tiles) == cols * rows:
                break
        if len(tiles) == cols * rows:
            break
    if not tiles:
        return
    tiles += [np.zeros_like(tiles[0])] * (cols * rows - len(tiles))
    grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], 1)
                           for r in range(rows)], 0)
    Image.fromarray(grid).save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train-300w"))
    ap.add_argument("--out", type=Path, default=Path("out/profiled"))
    ap.add_argument("--views", type=int, default=20, help="views per source face")
    ap.add_argument("--limit", type=int, default=None, help="first N source faces only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sheet", type=Path, default=None, help="write a contact-sheet PNG")
    a = ap.parse_args(argv)
    jpgs = sorted(a.data.glob("*.jpg"))
    if not jpgs:
        print(f"{a.data}: no .jpg faces found (expected the train-300w folder)", file=sys.stderr)
        return 2
    jpgs = jpgs[:a.limit] if a.limit is not None else jpgs
    jobs = [(str(j), i, str(a.out / f"{j.stem}.npz"), a.views, a.seed)
            for i, j in enumerate(jpgs) if not (a.out / f"{j.stem}.npz").exists()]
    print(f"{len(jpgs)} faces, {len(jpgs) - len(jobs)} done already, {len(jobs)} to make",
          flush=True)
    t0 = time.time()
    try:
        if a.workers > 1:
            with ProcessPoolExecutor(a.workers) as ex:
                for k, _ in enumerate(ex.map(_one, jobs, chunksize=4)):
                    if k % 50 == 0:
                        print(f"{k + 1}/{len(jobs)} {time.time() - t0:.0f} s", flush=True)
        else:
            for k, job in enumerate(jobs):
                _one(job)
                if k % 50 == 0:
                    print(f"{k + 1}/{len(jobs)} {time.time() - t0:.0f} s", flush=True)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(f"made {len(jobs) * a.views} views in {time.time() - t0:.1f} s", flush=True)
    if a.sheet is not None:
        contact_sheet([a.out / f"{j.stem}.npz" for j in jpgs], a.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
