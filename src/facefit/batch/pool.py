"""Run the per-image function in this process or in a local process pool.

The pool (`concurrent.futures.ProcessPoolExecutor`) loads the model and the detector once
per worker (`facefit.batch.work.reconstructor_for`) and is fed from the task iterator with
at most ``2 * jobs`` images in flight, so memory does not grow with the number of inputs.
A worker that dies (``kill -9``, out of memory) breaks the pool: the images it and the
others had in flight are reported through ``on_lost`` (not recorded, so the next run does
them) and a fresh pool carries on with the rest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from facefit.batch.manifest import close_inherited
from facefit.batch.work import (
    BatchConfig,
    ImageResult,
    ImageTask,
    process_image,
    process_image_remote,
    reconstructor_for,
)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_serial(tasks: Iterable[ImageTask], config: BatchConfig, out_dir: str,
               recon: Any = None) -> Iterator[ImageResult]:
    """One image after the other in this process (no start-up cost: the fastest choice for
    one core or a few images)."""
    for task in tasks:
        yield process_image(task, config, out_dir, recon)


def _warm(config: BatchConfig, parent: int) -> None:
    """Pool initializer: die with the driver (a ``kill -9`` of it leaves no orphans), let go
    of its manifest lock, then load the model and the detector once."""
    _die_with_parent(parent)
    close_inherited()
    _one_thread()
    reconstructor_for(config)


def _one_thread() -> None:
    """One compute thread per worker (the pool already runs one worker per core), for BLAS
    and torch. It also keeps torch off OpenMP in a forked worker: a parent that had
    used torch's OpenMP thread team leaves libgomp unusable after ``fork`` (the child hangs
    in its first parallel loop), and torch runs a loop inline when it has a single thread."""
    from threadpoolctl import threadpool_limits

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    threadpool_limits(1)  # BLAS and OpenMP pools already loaded (the variable is read at load)
    # Not cv2.setNumThreads(1): in a forked child of a process whose OpenCV thread pool has
    # run (the networks' forward passes were cv2.dnn until 2026-12-02), it waited forever for
    # the parent's pool threads; OpenCV's own parallel loops are fork-safe without it.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _die_with_parent(parent: int) -> None:
    """Linux: ask for SIGKILL when the parent process ends (``prctl(PR_SET_PDEATHSIG)``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)


def run_pool(tasks: Iterable[ImageTask], config: BatchConfig, out_dir: str, jobs: int,
             on_lost: Callable[[list[ImageTask]], None] | None = None
             ) -> Iterator[ImageResult]:
    """Results of ``tasks`` (in completion order) from a pool of ``jobs`` processes."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_warm,
                                   initargs=(config, os.getpid()))

    it = iter(tasks)
    pending: dict[Future[ImageResult], ImageTask] = {}
    pool = new_pool()
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * jobs:
                task = next(it, None)
                if task is None:
                    exhausted = True
                    break
                try:
                    pending[pool.submit(process_image_remote, task, config, out_dir)] = task
                except BrokenProcessPool:
                    pending[_broken()] = task
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            lost: list[ImageTask] = []
            for fut in done:
                task = pending.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    lost.append(task)
            if lost:  # a worker died: every image in flight is lost; start a fresh pool
                lost += list(pending.values())
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
                if on_lost is not None:
                    on_lost(sorted(lost, key=lambda t: t.index))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _broken() -> Future[ImageResult]:
    fut: Future[ImageResult] = Future()
    fut.set_exception(BrokenProcessPool("the pool broke"))
    return fut
