"""The per-image function of a batch, the same for the serial loop, the process pool and
Dask: read one image, reconstruct its faces, write its outputs, return what happened.

Outputs are first written into a private staging folder beside the final ones and then
renamed into place, the JSON last: a failure (or a ``kill -9``) never leaves a partial set
of files under final names, and a visible ``NAME.json`` means every file of that image is
there. Inputs and outputs may be local paths or fsspec URLs (``s3://``, ``gcs://``,
``memory://`` ...): a remote image is read into memory, remote outputs are staged locally
and uploaded one object at a time.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STAGING = ".facefit-staging"
"""Folder inside a local output folder where outputs are written before their rename."""


@dataclass(frozen=True)
class BatchConfig:
    """Everything that decides an image's outputs (picklable: it travels to the workers).

    Attributes mirror ``facefit reconstruct`` options; `fingerprint` identifies the
    options that change the results (a manifest entry is reused only when it matches).
    """

    formats: tuple[str, ...] = ("json", "glb", "overlay")
    max_faces: int = 8
    camera: str = "auto"
    focal_px: float | None = None
    texture_size: int = 512
    texture_sizing: str = "face"
    model_path: str | None = None
    refine: str = "none"
    image_loss: str = "l2"
    photometric_iterations: int | None = None
    npz_fields: tuple[str, ...] | None = None
    landmarks: str = "auto"

    def fingerprint(self) -> str:
        """Hash of the result-changing options (formats excluded: a run asking for fewer
        formats than a finished one may reuse it; the refinement's options only with a
        refinement, the texture's only with a textured format)."""
        d = asdict(self)
        d.pop("formats")
        if self.refine == "none":
            d.pop("image_loss")
            d.pop("photometric_iterations")
        if not _textured(self.formats):
            d.pop("texture_size")
            d.pop("texture_sizing")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ImageTask:
    """One input: its position in the batch, its path or URL, and its output base name."""

    index: int
    source: str
    name: str


@dataclass
class ImageResult:
    """What happened to one image.

    Attributes:
        state: ``"done"`` (faces written), ``"no_face"`` (JSON with ``faces: []``
            written) or ``"failed"``.
        kind: for failures, ``"image"`` (unreadable), ``"reconstruct"`` or ``"export"``.
        files: output file names (relative to the output folder), the JSON last.
        timings_ms: ``load``, ``reconstruct``, ``export`` for the image.
        exception: the exception of a failure in this process (for ``--debug``); None in
            results from worker processes (an exception may not pickle).
    """

    index: int
    source: str
    name: str
    state: str
    faces: int = 0
    files: list[str] = field(default_factory=list)
    error: str | None = None
    kind: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, repr=False, compare=False)


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an fsspec URL (``scheme://...``) other than ``file://``."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def _textured(formats: tuple[str, ...]) -> bool:
    from facefit.io.export import needs_texture

    return needs_texture(formats)


_STATE: dict[str, Any] = {}


def reconstructor_for(config: BatchConfig) -> Any:
    """The process's `facefit.Reconstructor` for ``config``: model and detector are loaded
    once per process (per worker) and reused for every image."""
    key = (config.fingerprint(), "ply" in config.formats)
    if _STATE.get("key") != key:
        from facefit.reconstruct import Reconstructor

        model = None
        if config.model_path is not None:
            from facefit.model.named import load_named_model

            model = load_named_model(config.model_path)
        _STATE["recon"] = Reconstructor(
            model=model, camera=config.camera, focal_px=config.focal_px,
            texture_size=config.texture_size if _textured(config.formats) else 0,
            texture_sizing=config.texture_sizing,
            refine=config.refine, image_loss=config.image_loss,
            photometric_iterations=config.photometric_iterations,
            landmarks=config.landmarks, vertex_colors="ply" in config.formats)
        _STATE["key"] = key
    return _STATE["recon"]


def process_image(task: ImageTask, config: BatchConfig, out_dir: str,
                  recon: Any = None) -> ImageResult:
    """Read, reconstruct and export one image into ``out_dir`` (a folder or fsspec URL).

    Never raises for a bad image or a failed export: the failure is returned as
    ``state="failed"`` with a one-line ``error`` ("PATH: problem"). Errors meaning the model
    or detector cannot be loaded do propagate (they concern every image).
    """
    from facefit.fit.camera import checked_camera
    from facefit.io.image import ImageError

    res = ImageResult(task.index, task.source, task.name, "failed")
    t0 = time.perf_counter()
    try:  # a perspective (or auto) camera without a focal length: each photo's own (EXIF)
        image, focal = _read_image(task.source, config.focal_px is None and checked_camera(
            config.camera, None, auto=True) != "scaled_orthographic")
    except ImageError as exc:
        res.error, res.kind, res.exception = str(exc), "image", exc
        return res
    t1 = time.perf_counter()
    recon = recon if recon is not None else reconstructor_for(config)
    try:
        faces = recon.reconstruct(image, max_faces=config.max_faces, focal_px=focal)
    except Exception as exc:
        if is_unavailable(exc):
            raise
        res.error = f"{task.source}: reconstruction failed ({one_line(exc)})"
        res.kind, res.exception = "reconstruct", exc
        return res
    t2 = time.perf_counter()
    load_ms = (t1 - t0) * 1e3
    try:
        res.files = _export(task, config, out_dir, image, faces, recon.model, load_ms)
    except Exception as exc:
        res.error, res.kind = f"{task.source}: cannot write results ({one_line(exc)})", "export"
        res.exception = exc
        return res
    res.state = "done" if faces else "no_face"
    res.faces = len(faces)
    if not faces:
        res.error = f"{task.source}: no face found"
    res.timings_ms = {"load": load_ms, "reconstruct": (t2 - t1) * 1e3,
                      "export": (time.perf_counter() - t2) * 1e3}
    return res


def process_image_remote(task: ImageTask, config: BatchConfig, out_dir: str) -> ImageResult:
    """`process_image` for a worker process: the result without the exception object (it
    may not pickle; its one-line message is in ``error``)."""
    result = process_image(task, config, out_dir)
    result.exception = None
    return result


def _read_image(source: str, focal: bool = False) -> tuple[Any, float | None]:
    """The image of ``source`` and, with ``focal``, its EXIF focal length in pixels
    (`facefit.io.image.exif_focal_px`; else None)."""
    from facefit.io.image import ImageError, exif_focal_px, load_image

    if not is_url(source):
        path = source.removeprefix("file://")
        return load_image(path), exif_focal_px(path) if focal else None
    import fsspec

    suffix = Path(source.split("?")[0]).suffix
    try:
        with fsspec.open(source, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(source, "file not found") from None
    except OSError as exc:
        raise ImageError(source, f"cannot read ({one_line(exc)})") from None
    with tempfile.TemporaryDirectory(prefix="facefit-in-") as tmp:
        local = Path(tmp) / f"image{suffix}"
        local.write_bytes(data)
        try:
            return load_image(local), exif_focal_px(local) if focal else None
        except ImageError as exc:
            raise ImageError(source, exc.problem) from None


def _export(task: ImageTask, config: BatchConfig, out_dir: str, image: Any, faces: list[Any],
            model: Any, load_ms: float) -> list[str]:
    """Export into a fresh staging folder, then publish (rename or upload), JSON last."""
    export = importlib.import_module("facefit.io.export")
    kwargs: dict[str, Any] = {"timings_ms_extra": {"load": load_ms}}
    if task.name != Path(task.source).stem:
        kwargs["name"] = task.name
    if config.npz_fields is not None:
        kwargs["npz_fields"] = config.npz_fields
    remote = is_url(out_dir)
    if not remote and config.formats == ("json",) and config.refine == "none":
        # one file, written atomically: nothing to stage (saves ~3 ms per image)
        export.export_reconstructions(out_dir, task.source, image, faces, model, ("json",),
                                      **kwargs)
        return [f"{task.name}.json"]
    root = Path(tempfile.gettempdir()) if remote else Path(out_dir) / STAGING
    stage = root / f"{task.name}.{uuid.uuid4().hex[:12]}"
    stage.mkdir(parents=True)
    try:
        export.export_reconstructions(stage, task.source, image, faces, model, config.formats,
                                      **kwargs)
        names = sorted(os.listdir(stage), key=lambda n: (n == f"{task.name}.json", n))
        _publish(stage, names, out_dir)
        return names
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, names: list[str], out_dir: str) -> None:
    if is_url(out_dir):
        import fsspec

        fs, root = fsspec.core.url_to_fs(out_dir)
        for n in names:
            fs.put_file(str(stage / n), f"{root.rstrip('/')}/{n}")
        return
    for n in names:
        os.replace(stage / n, Path(out_dir) / n)


def clean_staging(out_dir: str | os.PathLike[str]) -> None:
    """Remove staging folders left by killed runs (call while holding the manifest lock)."""
    if not is_url(out_dir):
        shutil.rmtree(Path(out_dir) / STAGING, ignore_errors=True)


def is_unavailable(exc: BaseException) -> bool:
    """Missing model data or detector files: a problem of the install, not of the image
    (the CLI's exit code 4)."""
    from facefit.detect.mediapipe import DetectorUnavailable
    from facefit.model.bfm_3ddfa import ModelDataMissing

    return isinstance(exc, ModelDataMissing | DetectorUnavailable)


def one_line(exc: BaseException | str) -> str:
    text = str(exc).strip() or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return " ".join(text.split())
