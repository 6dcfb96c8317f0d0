"""Throughput of ``facefit reconstruct``: whole-process time, workers, stages, bytes, memory.

Run from the repository root (each part is a fresh ``facefit`` process, start-up included):

    python benchmarks/throughput.py [--parts json100,workers,bytes,photometric,memory]
        [--images DIR] [--memory-sizes 1000,10000] [--out out/bench/throughput]

Parts (``workers_json``: the ``workers`` part for JSON only; ``default100`` and ``large``
are run only when named):
    json100      ``facefit reconstruct DIR --formats json`` on the first 100 images, one core
                 (``taskset -c 0``) and one BLAS thread; the ratio to 3DDFA_V2's 6.6 s on the
                 same 100 held-out AFLW2000-3D images. That reference is a recorded number
                 (the issue's paired run on this machine kind, one thread, idle box):
                 3DDFA_V2 is not installed here and is not run. Both the wall-clock ratio and
                 the CPU-time ratio (user + system seconds over 6.6 s: what the wall time
                 would be on an idle core) are printed, since the box may be shared.
    default100   the default formats (json, glb, overlay) on the first 100 images, ``--jobs
                 1`` on one core: wall and CPU ms per face.
    workers      200 images, ``--jobs 1`` on one core and ``--jobs 2`` on two, for JSON only
                 and the default formats: images/s, the 2-worker speed-up, ms per face, and
                 the per-stage medians from the JSON files (detect, fit, texture, export).
    bytes        bytes written per face for every format (``--formats all`` on 20 images).
    photometric  ``--refine photometric`` end to end per image on one core (10 images).
    large        one 7-megapixel photo (3072x2304) with two faces (two input images scaled to
                 1152 px side by side on a blurred enlargement of the first), one core:
                 JSON only, JSON + overlay and the default formats, whole process each.
    memory       synthetic photos (the input faces jittered: shift, scale, flip, brightness)
                 made here, run with ``--jobs 2``; peak RSS (VmHWM) of the driver and of each
                 worker, sampled every 0.2 s, for each size in ``--memory-sizes``, and the
                 largest worker's current RSS when 100, 1,000, 2,500, ..., N - 10 images were done
                 (lazily loaded parts, such as the profile detector, arrive at the first image
                 that needs them; a leak would keep growing to the end).

``cat /proc/loadavg`` is printed beside each timing: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "aflw2000-3d-dev"
TDDFA_V2_S = 6.6  # 3DDFA_V2, detector + regression + JSON, 100 held-out images, one thread
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
FACEFIT = [sys.executable, "-m", "facefit.cli", "reconstruct"]


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def first_images(folder: Path, n: int, work: Path) -> Path:
    """A folder of symbolic links to the first ``n`` images of ``folder`` (sorted)."""
    from facefit.io.image import IMAGE_SUFFIXES

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if len(files) < n:
        raise SystemExit(f"{folder}: fewer than {n} images")
    out = work / f"first{n}"
    out.mkdir(parents=True, exist_ok=True)
    for p in files:
        link = out / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return out


def run(args: list[str], cores: str, poll: bool = False, progress: Path | None = None,
        checkpoints: tuple[int, ...] = ()) -> tuple[float, dict[str, float]]:
    """Wall seconds of one ``facefit`` process pinned to ``cores``, and ``cpu_seconds`` (user +
    system of it and its workers: the wall time it would take on idle cores, one core); with
    ``poll``, the peak RSS in MB of the driver (``driver``) and of each worker
    (``worker_PID``), and with ``progress`` (the output folder) the largest current RSS of
    a worker when the count of ``*.json`` results there first reaches each of
    ``checkpoints`` (``rss_at_N``)."""
    cmd = ["taskset", "-c", cores, *FACEFIT, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True)
    peaks: dict[str, float] = {}
    todo = sorted(checkpoints)
    while poll and proc.poll() is None:
        for pid in [proc.pid, *_children(proc.pid)]:
            mb = _hwm_mb(pid)
            key = "driver" if pid == proc.pid else f"worker_{pid}"
            if mb:
                peaks[key] = max(peaks.get(key, 0.0), mb)
        if progress is not None and todo and progress.is_dir():
            done = sum(1 for e in os.scandir(progress) if e.name.endswith(".json"))
            while todo and done >= todo[0]:
                now = [_hwm_mb(pid, "VmRSS:") for pid in _children(proc.pid)]
                peaks[f"rss_at_{todo.pop(0)}"] = max(now, default=0.0)
        time.sleep(0.2)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peaks["cpu_seconds"] = round(after.ru_utime + after.ru_stime - before.ru_utime
                                 - before.ru_stime, 2)
    if proc.returncode not in (0, 1) or "Traceback" in err or "No module named" in err:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, peaks


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _hwm_mb(pid: int, field: str = "VmHWM:") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stage_medians(out: Path) -> tuple[dict[str, float], int]:
    """Median ms per face of each stage over the JSON files in ``out``, and the face count."""
    stages: dict[str, list[float]] = defaultdict(list)
    faces = 0
    for p in out.glob("*.json"):
        for face in json.loads(p.read_text())["faces"]:
            faces += 1
            for k, v in face["timings_ms"].items():
                stages[k].append(v)
    return {k: round(statistics.median(v), 2) for k, v in sorted(stages.items())}, faces


def part_json100(images: Path, work: Path) -> dict:
    src = first_images(images, 100, work)
    out = work / "json100"
    shutil.rmtree(out, ignore_errors=True)
    before = loadavg()
    wall, info = run([str(src), "-o", str(out), "--formats", "json", "-q"], "0")
    medians, faces = stage_medians(out)
    res = {"images": 100, "faces": faces, "seconds": round(wall, 2),
           "cpu_seconds": info["cpu_seconds"],
           "ratio_to_3ddfa_v2": round(wall / TDDFA_V2_S, 2),
           "cpu_ratio_to_3ddfa_v2": round(info["cpu_seconds"] / TDDFA_V2_S, 2),
           "loadavg": [before, loadavg()], "stage_median_ms": medians}
    print(f"json100: {wall:.2f} s for 100 images ({faces} faces; CPU {info['cpu_seconds']} s), "
          f"{wall / TDDFA_V2_S:.2f}x (CPU {info['cpu_seconds'] / TDDFA_V2_S:.2f}x) "
          f"3DDFA_V2's recorded {TDDFA_V2_S} s; stages {medians}; load {before} -> {loadavg()}")
    return res


def part_default100(images: Path, work: Path) -> dict:
    """The default formats (json, glb, overlay) on the first 100 images, ``--jobs 1`` on one
    core: wall and CPU ms per face (target: 100 ms a face)."""
    from facefit.io.export import DEFAULT_FORMATS

    src = first_images(images, 100, work)
    out = work / "default100"
    shutil.rmtree(out, ignore_errors=True)
    before = loadavg()
    wall, info = run([str(src), "-o", str(out), "--formats", ",".join(DEFAULT_FORMATS),
                      "--jobs", "1", "-q"], "0")
    medians, faces = stage_medians(out)
    res = {"images": 100, "faces": faces, "seconds": round(wall, 2),
           "cpu_seconds": info["cpu_seconds"],
           "ms_per_face": round(wall * 1e3 / max(faces, 1), 1),
           "cpu_ms_per_face": round(info["cpu_seconds"] * 1e3 / max(faces, 1), 1),
           "loadavg": [before, loadavg()], "stage_median_ms": medians}
    print(f"default100: {wall:.2f} s for 100 images ({faces} faces; CPU {info['cpu_seconds']} "
          f"s): {res['ms_per_face']} ms a face wall, {res['cpu_ms_per_face']} CPU; stages "
          f"{medians}; load {before} -> {loadavg()}")
    return res


def part_workers(images: Path, work: Path, format_sets: list[str] | None = None) -> dict:
    from facefit.io.export import DEFAULT_FORMATS

    src = first_images(images, 200, work)
    res: dict = {}
    for formats in format_sets or ["json", ",".join(DEFAULT_FORMATS)]:
        row: dict = {}
        for jobs, cores in ((1, "0"), (2, "0,1")):
            out = work / f"workers_{jobs}_{formats.replace(',', '_')}"
            shutil.rmtree(out, ignore_errors=True)
            before = loadavg()
            wall, info = run([str(src), "-o", str(out), "--formats", formats, "--jobs",
                              str(jobs), "-q"], cores)
            medians, faces = stage_medians(out)
            row[f"jobs{jobs}"] = {"seconds": round(wall, 2), "images_per_s": round(200 / wall, 2),
                                  "ms_per_face": round(wall * 1e3 / max(faces, 1), 1),
                                  "cpu_ms_per_face": round(info["cpu_seconds"] * 1e3
                                                           / max(faces, 1), 1),
                                  "faces": faces, "stage_median_ms": medians,
                                  "cpu_seconds": info["cpu_seconds"],
                                  "loadavg": [before, loadavg()]}
            print(f"workers: {formats:18s} jobs={jobs}: {wall:6.2f} s, {200 / wall:5.1f} "
                  f"images/s, {wall * 1e3 / max(faces, 1):5.1f} ms/face (CPU "
                  f"{info['cpu_seconds'] * 1e3 / max(faces, 1):5.1f}), CPU "
                  f"{info['cpu_seconds']} s; stages {medians}; "
                  f"load {before} -> {loadavg()}")
        row["speedup"] = round(row["jobs1"]["seconds"] / row["jobs2"]["seconds"], 2)
        print(f"workers: {formats}: 2 workers are {row['speedup']}x 1 worker")
        res[formats] = row
    return res


def part_bytes(images: Path, work: Path) -> dict:
    src = first_images(images, 20, work)
    out = work / "bytes"
    shutil.rmtree(out, ignore_errors=True)
    run([str(src), "-o", str(out), "--formats", "all", "-q"], "0")
    _, faces = stage_medians(out)
    kinds = {"json": (".json",), "overlay": ("_overlay.jpg",), "glb": (".glb",),
             "ply": (".ply",), "npz": (".npz",), "obj": (".obj", ".mtl", ".png"),
             "html": (".html",)}
    sizes = {k: 0 for k in kinds}
    for p in out.iterdir():
        for k, ends in kinds.items():
            if not p.name.startswith(".") and p.name.endswith(ends):
                sizes[k] += p.stat().st_size
                break
    per_face = {k: round(v / max(faces, 1)) for k, v in sizes.items()}
    from facefit.io.export import DEFAULT_FORMATS

    per_face["default_total"] = sum(per_face[k] for k in DEFAULT_FORMATS)
    per_face["all_total"] = sum(v for k, v in per_face.items() if k in kinds)
    print(f"bytes per face ({faces} faces): {per_face}")
    return per_face


def part_photometric(images: Path, work: Path) -> dict:
    src = first_images(images, 10, work)
    out = work / "photometric"
    shutil.rmtree(out, ignore_errors=True)
    before = loadavg()
    wall, info = run([str(src), "-o", str(out), "--formats", "json", "--refine",
                      "photometric", "-q"], "0")
    medians, faces = stage_medians(out)
    per, cpu = wall / 10, info["cpu_seconds"] / 10
    print(f"photometric: {per:.2f} s per image end to end (CPU {cpu:.2f} s; 10 images, "
          f"{faces} faces, one core); stages {medians}; load {before} -> {loadavg()}")
    return {"seconds_per_image": round(per, 3), "cpu_seconds_per_image": round(cpu, 3),
            "faces": faces, "stage_median_ms": medians, "loadavg": [before, loadavg()]}


def large_photo(images: Path, work: Path) -> Path:
    """A folder with one 3072x2304 JPEG holding two faces (see the module docstring)."""
    import cv2

    from facefit.io.image import load_image

    folder = work / "large"
    target = folder / "two_faces_7mp.jpg"
    if target.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    a, b = (load_image(p) for p in sorted(first_images(images, 2, work).iterdir()))
    canvas = cv2.GaussianBlur(cv2.resize(a, (3072, 2304)), (0, 0), 25)
    for img, x0 in ((a, 256), (b, 1664)):
        canvas[576:576 + 1152, x0:x0 + 1152] = cv2.resize(img, (1152, 1152),
                                                           interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(target), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 92])
    return folder


def part_large(images: Path, work: Path) -> dict:
    from facefit.io.export import DEFAULT_FORMATS

    src = large_photo(images, work)
    res: dict = {}
    for formats in ("json", "json,overlay", ",".join(DEFAULT_FORMATS)):
        out = work / f"large_{formats.replace(',', '_')}"
        shutil.rmtree(out, ignore_errors=True)
        before = loadavg()
        wall, info = run([str(src), "-o", str(out), "--formats", formats, "-q"], "0")
        medians, faces = stage_medians(out)
        res[formats] = {"seconds": round(wall, 2), "cpu_seconds": info["cpu_seconds"],
                        "faces": faces, "stage_median_ms": medians,
                        "loadavg": [before, loadavg()]}
        print(f"large: 3072x2304, {faces} faces, --formats {formats}: {wall:.2f} s (CPU "
              f"{info['cpu_seconds']} s); stages {medians}; load {before} -> {loadavg()}")
    return res


def synthetic_photos(images: Path, n: int, folder: Path, seed: int = 0) -> Path:
    """``n`` JPEGs made from the first 50 input faces: random shift (±20 px), scale
    (0.8-1.2), mirror and brightness (0.7-1.3)."""
    import cv2

    from facefit.io.image import load_image

    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    if have >= n:
        return folder
    bases = [load_image(p) for p in sorted(first_images(images, 50, folder.parent).iterdir())]
    rng = np.random.default_rng(seed + have)
    for i in range(have, n):
        img = bases[i % len(bases)]
        h, w = img.shape[:2]
        s = rng.uniform(0.8, 1.2)
        m = np.float32([[s, 0, (1 - s) * w / 2 + rng.uniform(-20, 20)],
                        [0, s, (1 - s) * h / 2 + rng.uniform(-20, 20)]])
        out = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        out = np.clip(out * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"syn{i:06d}.jpg"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def part_memory(images: Path, work: Path, sizes: list[int]) -> dict:
    res = {}
    for n in sizes:
        src = synthetic_photos(images, max(sizes), work / "synthetic")
        sub = work / f"synthetic_{n}"
        if n < max(sizes):  # the first n of the same photos
            sub.mkdir(exist_ok=True)
            for p in sorted(src.glob("*.jpg"))[:n]:
                if not (sub / p.name).exists():
                    (sub / p.name).symlink_to(p)
        else:
            sub = src
        out = work / f"memory_{n}"
        shutil.rmtree(out, ignore_errors=True)
        before = loadavg()
        # the last mark a few images before the end: the workers exit with the last image
        marks = tuple(sorted({m for m in (100, 1000, 2500, 5000, n // 2, n - 10) if 0 < m < n}))
        wall, peaks = run([str(sub), "-o", str(out), "--formats", "json", "--jobs", "2", "-q"],
                          "0,1", poll=True, progress=out, checkpoints=marks)
        workers = sorted(v for k, v in peaks.items() if k.startswith("worker"))
        along = {int(k[7:]): round(v, 1) for k, v in peaks.items() if k.startswith("rss_at_")}
        res[n] = {"seconds": round(wall, 1), "images_per_s": round(n / wall, 2),
                  "driver_peak_mb": round(peaks.get("driver", 0.0), 1),
                  "worker_peak_mb": [round(v, 1) for v in workers],
                  "worker_rss_mb_at_images": along,
                  "loadavg": [before, loadavg()]}
        print(f"memory: {n} images: {wall:.1f} s ({n / wall:.1f} images/s); peak RSS driver "
              f"{res[n]['driver_peak_mb']} MB, workers {res[n]['worker_peak_mb']} MB; largest "
              f"worker RSS once N images were done {along}; load {before} -> {loadavg()}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="json100,workers,bytes,photometric,memory")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--memory-sizes", default="1000,10000")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "throughput")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "facefit-throughput")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"cores": len(os.sched_getaffinity(0))}
    sizes = [int(x) for x in args.memory_sizes.split(",")]
    parts = {"json100": part_json100, "default100": part_default100, "workers": part_workers,
             "workers_json": lambda images, work: part_workers(images, work, ["json"]),
             "bytes": part_bytes,
             "photometric": part_photometric, "large": part_large,
             "memory": lambda images, work: part_memory(images, work, sizes)}
    for part in args.parts.split(","):
        results[part] = parts[part](args.images, args.work)
        (args.out / "throughput.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.out / 'throughput.json'}")


if __name__ == "__main__":
    main()
