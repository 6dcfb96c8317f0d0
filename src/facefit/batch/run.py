"""Drive a batch: unique names, skip what the manifest says is finished, run the rest
(serially, in a process pool or on Dask), record each result, report progress.

The driver alone writes the manifest; workers only write image outputs. See
`facefit.batch.manifest` for what a crash or a ``kill -9`` leaves behind.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefit.batch.manifest import MANIFEST_NAME, Manifest
from facefit.batch.names import output_names
from facefit.batch.work import BatchConfig, ImageResult, ImageTask, clean_staging, is_url


@dataclass
class BatchSummary:
    """Counts of one run (``skipped``: finished by an earlier run, ``prior_no_face`` of them
    without a face; ``prior_failed``: failed in an earlier run and not retried; ``lost``: in
    flight when a worker died)."""

    images: int = 0
    faces: int = 0
    failed: int = 0
    no_face: int = 0
    skipped: int = 0
    prior_failed: int = 0
    prior_no_face: int = 0
    lost: int = 0
    seconds: float = 0.0


def default_manifest_path(out_dir: str) -> Path:
    """``OUT/.facefit-manifest.jsonl`` for a local OUT; for a URL, a local file named after
    the URL in the current folder (object stores cannot append)."""
    if not is_url(out_dir):
        return Path(out_dir.removeprefix("file://")) / MANIFEST_NAME
    digest = hashlib.sha1(out_dir.encode()).hexdigest()[:12]
    return Path(f".facefit-manifest-{digest}.jsonl")


def auto_jobs(n_images: int, cores: int) -> int:
    """Default worker count: one per available core, but no more than one per 8 images (a
    worker's start-up, about 1 s of model and detector loading, is worth ~8 images)."""
    return max(1, min(cores, n_images // 8))


def run_batch(
    sources: list[str],
    config: BatchConfig,
    out_dir: str,
    jobs: int = 1,
    cluster: str | None = None,
    use_dask: bool = False,
    manifest_path: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    recon: Any = None,
    report: Callable[[ImageResult], None] | None = None,
    progress: bool = True,
    on_lost: Callable[[list[ImageTask]], None] | None = None,
) -> BatchSummary:
    """Process ``sources`` into ``out_dir`` and return the counts.

    Args:
        sources: input paths or fsspec URLs, in order.
        config: the per-image options.
        out_dir: output folder or fsspec URL (created).
        jobs: local worker processes (1: this process, using ``recon`` when given).
        cluster: a Dask scheduler address; with ``use_dask`` and no address, a local
            Dask cluster of ``jobs`` workers.
        manifest_path: default `default_manifest_path`.
        retry_failed: redo images that failed in an earlier run.
        recon: a ready `facefit.Reconstructor` for the serial path.
        report: called for every failed or face-less image (one-line ``result.error``).
        progress: show a progress bar (images/s and ETA).
        on_lost: called with the tasks lost when a pool worker died.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    summary = BatchSummary(images=len(sources))
    names = output_names(sources)
    fingerprint = config.fingerprint()
    with Manifest(manifest_path or default_manifest_path(out_dir)) as manifest:
        clean_staging(out_dir)
        local_out = None if is_url(out_dir) else out_dir
        todo_ids: list[int] = []  # indices only: the tasks are made as the workers need them
        for i, (src, name) in enumerate(zip(sources, names, strict=True)):
            if manifest.is_finished(src, name, config.formats, fingerprint, local_out,
                                    retry_failed):
                entry = manifest.entries[src]
                if entry.state == "failed":
                    summary.prior_failed += 1
                else:
                    summary.skipped += 1
                    summary.prior_no_face += entry.state == "no_face"
                    summary.faces += entry.faces
                continue
            todo_ids.append(i)
        todo = (ImageTask(i, sources[i], names[i]) for i in todo_ids)
        bar = tqdm(total=len(todo_ids), file=sys.stderr, unit="image", dynamic_ncols=True,
                   disable=not progress or len(todo_ids) <= 1)

        def lost(tasks: list[ImageTask]) -> None:
            summary.lost += len(tasks)
            bar.update(len(tasks))
            if on_lost is not None:
                on_lost(tasks)

        try:
            for result in _results(todo, len(todo_ids), config, out_dir, jobs, cluster,
                                   use_dask, recon, lost):
                manifest.record(result, config.formats if result.state != "failed" else (),
                                fingerprint)
                summary.faces += result.faces
                summary.failed += result.state == "failed"
                summary.no_face += result.state == "no_face"
                if result.error and report is not None:
                    if not bar.disable:
                        bar.clear()
                    report(result)
                bar.update(1)
        finally:
            bar.close()
            clean_staging(out_dir)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _results(todo: Iterator[ImageTask], n_todo: int, config: BatchConfig, out_dir: str,
             jobs: int, cluster: str | None, use_dask: bool, recon: Any,
             on_lost: Callable[[list[ImageTask]], None]) -> Iterator[ImageResult]:
    if not is_url(out_dir):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    if cluster is not None or use_dask:
        from facefit.batch.cluster import run_dask

        return run_dask(todo, config, out_dir, cluster, jobs, n_tasks=n_todo)
    if jobs > 1 and n_todo > 1:
        from facefit.batch.pool import run_pool

        return run_pool(todo, config, out_dir, min(jobs, n_todo), on_lost)
    from facefit.batch.pool import run_serial

    return run_serial(todo, config, out_dir, recon)
