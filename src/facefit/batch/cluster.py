"""Run the per-image function on a Dask cluster (`distributed`).

Why Dask rather than Ray: both schedule Python functions on a cluster, but Dask is pure
Python from PyPI (``dask[distributed]``, a few MB, no compiled runtime or object store to
provision), starts a local cluster of worker processes in about a second, reads and writes
any fsspec URL natively, and its scheduler already retries tasks whose worker died. A
per-image function that returns a small record needs nothing more.

``address=None`` starts a `distributed.LocalCluster` of ``jobs`` single-threaded worker
processes; otherwise the client connects to an existing scheduler (``tcp://host:8786``)
whose workers have facefit installed and can reach the inputs and the output folder (a
shared file system or an fsspec URL such as ``s3://bucket/out``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from facefit.batch.work import BatchConfig, ImageResult, ImageTask, process_image_remote


def process_chunk(tasks: list[ImageTask], config: BatchConfig, out_dir: str
                  ) -> list[ImageResult]:
    """`facefit.batch.work.process_image` on each of ``tasks`` (one Dask task for several
    images: the scheduler's per-task cost, about a millisecond, is paid once per chunk)."""
    return [process_image_remote(t, config, out_dir) for t in tasks]


def chunk_size(n_tasks: int, n_workers: int) -> int:
    """Images per Dask task: at least 8 tasks per worker (load balance, and a dead worker
    loses little), at most 32 images per task."""
    return max(1, min(32, n_tasks // (8 * max(n_workers, 1))))


def run_dask(tasks: Iterable[ImageTask], config: BatchConfig, out_dir: str,
             address: str | None = None, jobs: int = 2, n_tasks: int | None = None
             ) -> Iterator[ImageResult]:
    """Results of ``tasks`` (completion order) computed by the cluster's workers, in chunks
    (`chunk_size`; ``n_tasks``: how many there are, when known), with at most two chunks per
    worker thread in flight (memory stays flat on the client)."""
    from distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    if address is None:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        threads = max(1, sum(client.nthreads().values()))
        size = chunk_size(n_tasks if n_tasks is not None else 0, threads)
        chunks = _chunks(iter(tasks), size)
        futures = as_completed()
        for chunk in itertools.islice(chunks, 2 * threads):
            futures.add(client.submit(process_chunk, chunk, config, out_dir, pure=False))
        for fut in futures:
            results = fut.result()
            fut.release()
            yield from results
            chunk = next(chunks, None)
            if chunk is not None:
                futures.add(client.submit(process_chunk, chunk, config, out_dir, pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _chunks(tasks: Iterator[ImageTask], size: int) -> Iterator[list[ImageTask]]:
    while chunk := list(itertools.islice(tasks, size)):
        yield chunk
