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

from collections.abc import Iterable, Iterator
from typing import Any

from facefit.batch.work import BatchConfig, ImageResult, ImageTask, process_image


def run_dask(tasks: Iterable[ImageTask], config: BatchConfig, out_dir: str,
             address: str | None = None, jobs: int = 2) -> Iterator[ImageResult]:
    """Results of ``tasks`` (completion order) computed by the cluster's workers, with at
    most two images per worker thread in flight (memory stays flat on the client)."""
    from distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    if address is None:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        window = 2 * max(1, sum(client.nthreads().values()))
        it = iter(tasks)
        futures = as_completed()
        for task in it:
            futures.add(client.submit(process_image, task, config, out_dir, pure=False))
            if futures.count() >= window:
                break
        for fut in futures:
            result = fut.result()
            fut.release()
            yield result
            task = next(it, None)
            if task is not None:
                futures.add(client.submit(process_image, task, config, out_dir, pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
