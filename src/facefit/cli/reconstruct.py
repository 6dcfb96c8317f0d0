"""``facefit reconstruct IMAGE_OR_DIR... -o OUT``: every face of every image, the chosen formats
written into OUT (`facefit.Reconstructor` and `facefit.export`; batches through
`facefit.batch`). One bad file never stops a batch: its problem is printed as one line,
``facefit: error: PATH: problem``, and the next file is processed. Exit codes: `facefit.cli`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facefit.batch.work import is_unavailable, one_line
from facefit.cli.common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_NO_INPUT,
    EXIT_OK,
    EXIT_OUTPUT,
    Unavailable,
    add_camera,
    add_landmarks,
    add_max_pixels,
    camera_of,
    can_encode,
    err,
    load_model_arg,
    plural,
    positive_int,
    texture_int,
)
from facefit.fit.photometric.config import IMAGE_LOSSES, JOINT_ITERATIONS, ONE_PHOTO_ITERATIONS
from facefit.reconstruct import TEXTURE_SIZINGS


def _name_list(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    """Comma-separated names of ``known`` (or ``all``), each once, in the given order."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return tuple(known)
    bad = [t for t in items if t not in known]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what}(s) {', '.join(bad) or repr(text)}; choose from "
            f"{','.join(known)} or 'all'")
    return tuple(dict.fromkeys(items))


def _formats_arg(text: str) -> tuple[str, ...]:
    from facefit.io.export import FORMATS  # looked up per call: tests swap the exporter

    return _name_list(text, FORMATS, "format")


def _npz_fields_arg(text: str) -> tuple[str, ...]:
    from facefit.io.export import NPZ_FIELDS

    return _name_list(text, NPZ_FIELDS, "npz field")


def register(sub: Any) -> None:
    """Add ``reconstruct`` to the ``facefit`` subparsers."""
    from facefit.io.export import DEFAULT_FORMATS, FORMATS

    known = ",".join(FORMATS)
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct the faces in images and export meshes, textures and parameters",
        description="Reconstruct every face in each image and write the chosen formats into\n"
                    "OUT (per face: mesh, texture, parameters; per image: an overlay and a\n"
                    "JSON summary). Files are written atomically: a failure never leaves a\n"
                    "half-written file.",
        epilog=EXIT_CODES_HELP + "\n\nAn image in which no face is found is reported as "
               "'PATH: no face found'\nand counts as a failure (exit code 1); its JSON is "
               "still written, with \"faces\": [].\n\nBatches: OUT/.facefit-manifest.jsonl "
               "records each finished image; re-running\nthe command skips them "
               "(--retry-failed redoes failures). Inputs with equal\nstems get distinct "
               "names (a/x.png, b/x.png -> a__x.*, b__x.*).\n\nexamples:\n"
               "  facefit reconstruct examples/astronaut.png -o out --formats obj,json\n"
               "  facefit reconstruct photos/ -o out --formats json --jobs 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files, or directories whose images (by suffix) are processed")
    p.add_argument("-o", "--output", "--out", dest="output", required=True, metavar="OUT",
                   help="output folder (created if needed)")
    p.add_argument("--formats", type=_formats_arg, default=tuple(DEFAULT_FORMATS), metavar="LIST",
                   help=f"comma-separated output formats from {known}, or 'all' "
                        f"(default: {','.join(DEFAULT_FORMATS)}; bytes per face in "
                        "docs/scaling.md)")
    p.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N",
                   help="worker processes (default: one per available core, at most one "
                        "per 8 images); each loads the model once")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run on the Dask cluster whose scheduler is at ADDRESS "
                        "(tcp://host:8786); inputs and OUT may then be fsspec URLs")
    p.add_argument("--dask", action="store_true",
                   help="run on a local Dask cluster of --jobs workers (what --cluster does "
                        "on many machines)")
    p.add_argument("--manifest", default=None, metavar="PATH",
                   help="the batch manifest, one JSON line per finished image (default: "
                        "OUT/.facefit-manifest.jsonl); re-running skips finished images")
    p.add_argument("--retry-failed", action="store_true",
                   help="redo the images that failed in an earlier run of this batch")
    p.add_argument("--npz-fields", type=_npz_fields_arg, default=None, metavar="LIST",
                   help="fields of each .npz (comma-separated, or 'all'; default: "
                        "coefficients, pose, landmarks and vertices_mm)")
    p.add_argument("--max-faces", type=positive_int, default=8, metavar="N",
                   help="reconstruct at most N faces per image, largest-score first "
                        "(default: 8)")
    add_landmarks(p, "face")
    add_camera(p, "each photo's own, from its EXIF 35 mm-equivalent focal length, else the "
                  "image diagonal, about a 53° diagonal field of view",
               "perspective where a photo's focal length is known (--focal-px or its EXIF), "
               "else scaled orthographic, or with --refine photometric whichever of the two "
               "(a pinhole camera at the image diagonal) explains the photo better")
    p.add_argument("--texture-size", type=texture_int, default=512, metavar="N",
                   help="largest side of the UV texture in texels; 0 disables texturing "
                        "(default: 512)")
    p.add_argument("--texture-sizing", choices=TEXTURE_SIZINGS, default="face",
                   help="face: each face's texture side is the power of two nearest to the "
                        "face's texel density in the photo (about one texel per photo pixel), "
                        "from 256 up to --texture-size (a 300 px face gets 256); fixed: "
                        "always --texture-size (default: face; --same-person: fixed)")
    p.add_argument("--model", type=Path, default=None, metavar="PATH",
                   help="morphable model file to use instead of the default BFM 2009 "
                        "(3DDFA) model, or a name 'facefit model list' prints ('ict': the "
                        "packaged ICT-FaceKit head, MIT)")
    add_max_pixels(p)
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also look for images in subdirectories of the given directories")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary line; errors are still printed")
    p.add_argument("--same-person", action="store_true",
                   help="the photos show one person: fit one shared identity and also write "
                        "identity.obj/.glb/.json (neutral mesh, texture merged from all views)")
    p.add_argument("--refine", choices=("none", "photometric"), default="none",
                   help="after the landmark fit, refine shape, pose, lighting and albedo "
                        "against the photo's pixels (analysis by synthesis, with the fit's "
                        "camera; with --camera auto and no known focal length, refined with "
                        "the scaled orthographic camera and with a pinhole one at the image "
                        "diagonal, the one that explains the photo better kept: twice the "
                        "time; adds STEM_faceK_albedo.png and _compare.png) (default: none)")
    p.add_argument("--image-loss", choices=IMAGE_LOSSES, default=None,
                   help="pixel loss of --refine photometric; 'gradient' is the gradient "
                        "correlation, robust to lighting (default: l2)")
    p.add_argument("--photometric-iterations", type=positive_int, default=None, metavar="N",
                   help="optimisation steps of --refine photometric (default: "
                        f"{ONE_PHOTO_ITERATIONS} for a photo, {JOINT_ITERATIONS} for the joint "
                        "refinement of --same-person)")
    p.add_argument("--pooling", choices=("joint", "confidence"), default=None,
                   help="with --same-person: joint fit of all photos (default) or "
                        "confidence-weighted pooling of per-photo fits (faster)")
    p.add_argument("--debug", action="store_true",
                   help="stop at the first error with a full traceback")
    p.set_defaults(func=cmd_reconstruct, parser=p)


def _check_option_use(args: argparse.Namespace) -> None:
    """Options that would do nothing are usage errors (exit 2); then fill their defaults."""
    args.camera = camera_of(args, args.parser)
    if args.pooling is not None and not args.same_person:
        args.parser.error("--pooling needs --same-person")
    if args.npz_fields is not None and "npz" not in args.formats:
        args.parser.error("--npz-fields needs npz in --formats")
    if args.refine != "photometric":
        given = [name for name, value in (("--image-loss", args.image_loss),
                                          ("--photometric-iterations",
                                           args.photometric_iterations)) if value is not None]
        if given:
            args.parser.error(f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} "
                              "--refine photometric")
    args.pooling = args.pooling or "joint"
    args.image_loss = args.image_loss or "l2"


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``facefit reconstruct``: a batch (`facefit.batch.run.run_batch`) of load →
    `Reconstructor.reconstruct` → export, per image; ``--same-person`` fits them jointly."""
    from facefit.batch.manifest import ManifestLocked
    from facefit.batch.pool import available_cores
    from facefit.batch.run import auto_jobs, run_batch
    from facefit.batch.work import BatchConfig, is_url

    _check_option_use(args)
    camera = args.camera

    remote_inputs = [p for p in args.inputs if is_url(p)]
    paths = _list_inputs(args.inputs, args.recursive)
    if not paths:
        err(f"no input images found in {', '.join(map(str, args.inputs))}")
        return EXIT_NO_INPUT
    out = str(args.output)

    def make_out() -> bool:
        """Create OUT (after the model loaded: a refused model leaves no empty folder)."""
        if is_url(out):
            return True
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            err(f"{out}: cannot create the output folder ({exc.strerror or exc})")
            return False
        return True

    if getattr(args, "same_person", False):
        if remote_inputs or is_url(out):
            args.parser.error("--same-person needs local inputs and OUT")
        from facefit.same_person import run_same_person

        recon = _make_reconstructor(args, camera)
        if not make_out():
            return EXIT_OUTPUT
        return run_same_person([Path(p) for p in paths], Path(out), recon, _exporter(),
                               args.formats, method=args.pooling, quiet=args.quiet)
    if not _needs_texture(args.formats):
        args.texture_size = 0  # only textured formats need the texture step
    distributed = args.cluster is not None or args.dask
    jobs = args.jobs or auto_jobs(len(paths), available_cores())
    recon = None
    if not distributed and jobs == 1:
        _exporter()
        recon = _make_reconstructor(args, camera)
    config = BatchConfig(
        formats=tuple(args.formats), max_faces=args.max_faces, camera=camera,
        focal_px=args.focal_px, texture_size=args.texture_size,
        texture_sizing=getattr(args, "texture_sizing", "face"),
        model_path=None if args.model is None else str(args.model),
        refine=getattr(args, "refine", "none"), image_loss=getattr(args, "image_loss", "l2"),
        photometric_iterations=getattr(args, "photometric_iterations", None),
        npz_fields=args.npz_fields, landmarks=getattr(args, "landmarks", "auto"))
    if args.model is not None and recon is None:
        load_model_arg(args.model)  # a bad --model is exit 4 before any worker starts
    if not make_out():
        return EXIT_OUTPUT

    def report(result: Any) -> None:
        _fail(None, result.error, args, result.exception)

    def lost(tasks: list[Any]) -> None:
        err(f"a worker process died; {plural(len(tasks), 'image')} in flight not "
             f"processed (re-run the command to complete them)")

    try:
        summary = run_batch(paths, config, out, jobs=jobs, cluster=args.cluster,
                            use_dask=args.dask, manifest_path=args.manifest,
                            retry_failed=args.retry_failed, recon=recon, report=report,
                            progress=not args.quiet, on_lost=lost)
    except ManifestLocked as exc:
        err(str(exc))
        return EXIT_OUTPUT
    if not args.quiet:
        per = summary.seconds / max(len(paths), 1)
        arrow = "→" if can_encode("→") else "->"
        extra = ""
        if summary.skipped:
            extra += f", {summary.skipped} done before"
        if summary.prior_failed:
            extra += f", {summary.prior_failed} failed before (--retry-failed to redo)"
        if summary.lost:
            extra += f", {summary.lost} lost"
        n_failed = summary.failed + summary.no_face
        err(f"{plural(len(paths), 'image')}, {plural(summary.faces, 'face')}, "
             f"{n_failed} failed{extra} ({per:.2f} s/image) {arrow} {out}"
             f"{'' if is_url(out) else os.sep}", prefix="facefit: ")
    if "html" in args.formats and not is_url(out):
        from facefit.io.html import write_index

        write_index(Path(out))  # thumbnails and failures of the whole batch
    bad = (summary.failed + summary.no_face + summary.prior_failed + summary.prior_no_face
           + summary.lost)
    return EXIT_FAILED if bad else EXIT_OK


def _needs_texture(formats: Sequence[str]) -> bool:
    try:
        from facefit.io.export import needs_texture
    except ImportError:
        return bool({"obj", "ply", "glb"} & set(formats))
    return needs_texture(formats)


def _list_inputs(inputs: Sequence[str], recursive: bool) -> list[str]:
    """Local files and folders by `facefit.io.image.list_images`; fsspec URLs (a file, or a
    folder whose images are listed by suffix) through fsspec."""
    from facefit.batch.work import is_url
    from facefit.io.image import IMAGE_SUFFIXES, list_images

    out: list[str] = []
    for item in inputs:
        if not is_url(item):
            out += [str(p) for p in list_images([item], recursive=recursive)]
            continue
        import fsspec

        fs, root = fsspec.core.url_to_fs(item)
        protocol = item.split("://", 1)[0]
        if fs.isdir(root):
            found = fs.find(root) if recursive else fs.ls(root, detail=False)
            out += [f"{protocol}://{p.lstrip('/')}" if protocol != "memory" else
                    f"memory://{p}" for p in sorted(found)
                    if Path(p).suffix.lower() in IMAGE_SUFFIXES
                    and not Path(p).name.startswith(".")]
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def _exporter() -> Any:
    try:
        from facefit.io.export import export_reconstructions
    except ModuleNotFoundError as exc:
        if exc.name != "facefit.io.export":
            raise
        raise Unavailable("facefit.io.export is missing: reinstall facefit") from None
    return export_reconstructions


def _make_reconstructor(args: argparse.Namespace, camera: str) -> Any:
    """The `Reconstructor` for ``args``; raises `Unavailable` when model/detector are missing."""
    from facefit.reconstruct import Reconstructor

    model = load_model_arg(args.model) if args.model is not None else None
    try:
        refine = getattr(args, "refine", "none")
        return Reconstructor(model=model, camera=camera, focal_px=args.focal_px,
                             texture_size=args.texture_size,
                             texture_sizing=getattr(args, "texture_sizing", "face"),
                             refine=refine,
                             image_loss=getattr(args, "image_loss", "l2"),
                             photometric_iterations=getattr(args, "photometric_iterations", None),
                             progress=not getattr(args, "quiet", False),
                             landmarks=getattr(args, "landmarks", "auto"),
                             vertex_colors="ply" in args.formats)  # only PLY uses them
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("facefit"):
            raise Unavailable(f"this facefit install is incomplete ({exc})") from exc
        raise Unavailable(f"{exc}: install the missing package (see README.md)") from exc
    except Exception as exc:
        if is_unavailable(exc):
            raise Unavailable(one_line(exc)) from exc
        raise


def _fail(bar: Any, problem: BaseException | str, args: argparse.Namespace,
          exc: BaseException | None = None) -> int:
    """Report one failed input (one line); with --debug, re-raise instead. Returns 1."""
    if getattr(args, "debug", False):
        if exc is not None:
            raise exc
        if isinstance(problem, BaseException):
            raise problem
    text = f"facefit: error: {one_line(problem)}"
    if bar is not None and not bar.disable:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)
    return 1


