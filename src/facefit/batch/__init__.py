"""Batches of photos: one per-image function (`work.process_image`) run in this process, in
a local process pool (`pool.run_pool`) or on a Dask cluster (`cluster.run_dask`), with
unique output names (`names.output_names`) and a crash-safe manifest (`manifest.Manifest`)."""

from facefit.batch.manifest import Manifest
from facefit.batch.names import output_names
from facefit.batch.work import BatchConfig, ImageResult, ImageTask, process_image

__all__ = ["BatchConfig", "ImageResult", "ImageTask", "Manifest", "output_names",
           "process_image"]
