"""``facefit eval ...``: benchmark commands (registered by the main CLI via `register`).

* ``eval aflw2000 DIR [--pred FILE] [--limit N] [--out DIR]``: AFLW2000-3D, 3DDFA protocol.
* ``eval 300w DIR [--pred FILE] [--limit N] [--out DIR]``: 300-W NME, AUC/FR at 0.08, CED PNG.
* ``eval scan (--photo P | --mesh M --mesh-landmarks L) --scan S --scan-landmarks L``:
  NoW-style scan error with a heat map.
* ``eval fid DIR_A DIR_B --features FILE``: FID (and KID) with a user-given feature network.
* ``eval synthetic --n N [--seed S] [--out DIR]``: faces sampled from the model priors,
  rendered and re-fitted (landmark NME, pose and dense vertex errors; `facefit.eval.synthetic`).
* ``eval shape --data {in-model,ict} [--ict DIR] [--photos K] [--landmarks SRC] --n N``:
  metric shape accuracy, NoW-style scan-to-mesh distance of neutral fits against scans (the
  fitting model's own faces, or ICT Face Model identities: a different model), mean face /
  landmark fit / photometric rows (`facefit.eval.shape`).

Without ``--pred`` the facefit pipeline is run on every image and its predictions are saved
to ``OUT/<benchmark>_predictions.npz`` (the `facefit.eval.predictions` format), so the
numbers can be recomputed from the file alone. Exit codes: 0 done, 1 evaluation error,
2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facefit.cli.common import add_close_ups, add_landmarks
from facefit.fit.photometric.config import JOINT_ITERATIONS, ONE_PHOTO_ITERATIONS

DEFAULT_OUT = "out/eval"

EVAL_HELP = """\
Score facefit, or another tool's predictions, on benchmarks:

  aflw2000 DIR    AFLW2000-3D: NME by yaw bucket (3DDFA protocol)
  300w DIR        300-W: NME (outer eye corners), AUC and failure rate at 0.08, CED plot
  scan            NoW-style scan-to-mesh error with a heat map
  fid A B         FID and KID between two image folders with your feature network
  synthetic       faces sampled from the model priors, rendered with a known pose and refitted
  shape           NoW-style metric shape accuracy on scans facefit did not make

Without --pred the facefit pipeline runs on every image and its predictions are saved to
OUT/BENCHMARK_predictions.npz, so the numbers can be recomputed from that file alone (aflw2000
and 300w fit the default model, or --model NAME|PATH, with --landmarks as `facefit
reconstruct`). Every
run writes its results (JSON, figures) and OUT/NAME_report.html (one page with all of them).
Run `facefit eval BENCHMARK --help` for the options; defaults are shown there.

exit codes: 0 done, 1 evaluation error (the message says why), 2 usage error, 4 the model
could not be loaded."""


def register(subparsers: Any) -> None:
    """Add the ``eval`` command and its sub-commands to an argparse subparsers object."""
    from facefit.detect.network import SOURCES

    p = subparsers.add_parser("eval", help="score facefit (or other tools' predictions) on "
                              "benchmarks: AFLW2000-3D, 300-W, NoW-style scans, FID/KID",
                              description=EVAL_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: _usage(p))
    sub = p.add_subparsers(dest="eval_command", metavar="BENCHMARK",
                           parser_class=_DefaultsParser)

    a = sub.add_parser("aflw2000", help="AFLW2000-3D NME by yaw bucket (Zhu et al. CVPR 2016)")
    a.add_argument("dir", type=Path, help="folder of imageNNNNN.jpg + .mat")
    _common(a)
    a.set_defaults(func=_with_report(_cmd_aflw2000, "aflw2000"))

    w = sub.add_parser("300w", help="300-W NME (outer-eye-corner), AUC/FR@0.08, CED plot")
    w.add_argument("dir", type=Path, help="folder (searched recursively) of images + .pts")
    _common(w)
    w.add_argument("--threshold", type=float, default=0.08, help="AUC/failure threshold")
    w.set_defaults(func=_with_report(_cmd_300w, "300w"))

    s = sub.add_parser("scan", help="NoW-style scan-to-mesh error (Sanyal et al. CVPR 2019)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--photo", type=Path, help="photo to reconstruct with facefit")
    src.add_argument("--mesh", type=Path, help="a reconstruction from another tool")
    s.add_argument("--mesh-landmarks", type=Path,
                   help="7 landmarks of --mesh (.ljson/.pts/.pp/.npy/.txt, NoW order)")
    s.add_argument("--scan", type=Path, required=True, help="scan mesh or point cloud (mm)")
    s.add_argument("--scan-landmarks", type=Path, required=True,
                   help="7 scan landmarks (NoW order, mm)")
    s.add_argument("--crop-radius", type=float, default=95.0, help="mm around the nose tip")
    s.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="output folder")
    s.set_defaults(func=_with_report(_cmd_scan, "scan_error"))

    f = sub.add_parser("fid", help="FID/KID between two image folders (Heusel et al. 2017)")
    f.add_argument("dir_a", type=Path, help="first image folder (e.g. real photos)")
    f.add_argument("dir_b", type=Path, help="second image folder (e.g. renders)")
    f.add_argument("--features", type=Path, required=True,
                   help="feature network: TorchScript, torch state dict (+ --module) or .onnx")
    f.add_argument("--module", help="package.module:Class to load a state dict into")
    f.add_argument("--input-size", type=int, default=299, help="square input side (pixels)")
    f.add_argument("--input-range", default="unit",
                   choices=("unit", "symmetric", "uint8", "imagenet"),
                   help="pixel values fed to the network: unit [0, 1], symmetric [-1, 1], "
                        "uint8 [0, 255], imagenet (unit, then ImageNet mean/std)")
    f.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    f.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (0: skip KID)")
    f.add_argument("--kid-subset-size", type=int, default=1000,
                   help="images per KID subset")
    f.set_defaults(func=_cmd_fid)

    y = sub.add_parser("synthetic", help="faces sampled from the model priors, rendered with "
                       "known pose: NME, pose error (deg), dense vertex error (mm)")
    y.add_argument("--n", type=int, default=100, help="number of faces")
    y.add_argument("--seed", type=int, default=0, help="random seed of the set")
    y.add_argument("--size", type=int, default=320, help="image side in pixels")
    y.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="output folder")
    y.add_argument("--quiet", action="store_true", help="no per-face progress")
    y.add_argument("--no-photometric", action="store_true",
                   help="skip the photometric refinement row")
    y.add_argument("--photometric-n", type=int, default=None,
                   help="photometric refinement of the first N faces only (slow on a CPU)")
    y.add_argument("--albedo", choices=("painted", "photo"), default="painted",
                   help="the faces' skin: a skin tone with brows, lips and eyes painted where "
                   "the mesh has them (default), or the example photo's colours (its smile and "
                   "shading on every face; the texture before 2026-12-03)")
    y.set_defaults(func=_with_report(_cmd_synthetic, "synthetic"))

    h = sub.add_parser("shape", help="NoW-style shape accuracy on scans facefit did not make: "
                       "in-model faces or ICT Face Model identities, 1 or more photos each")
    h.add_argument("--data", choices=("in-model", "ict"), default="in-model",
                   help="in-model: the fitting model's own random faces; ict: ICT identities")
    h.add_argument("--ict", type=Path, help="ICT-FaceKit FaceXModel folder (for --data ict)")
    h.add_argument("--model", type=Path, help="model file to fit (default: the default model)")
    h.add_argument("--n", type=int, default=30, help="number of subjects")
    h.add_argument("--photos", type=int, default=1, help="photos per subject (>1: joint fit)")
    h.add_argument("--clip", type=int, default=0, metavar="FRAMES",
                   help="instead of photos, a talking, head-turning clip of FRAMES frames per "
                        "subject, scored with the identity facefit video fits (landmarks, and "
                        "refined photometrically on 6 frames unless --no-photometric)")
    h.add_argument("--seed", type=int, default=0, help="random seed of the set")
    h.add_argument("--max-yaw", type=float, default=30.0, help="yaw range of the photos, deg")
    h.add_argument("--size", type=int, default=256, help="photo side in pixels")
    h.add_argument("--iterations", type=int, default=None,
                   help=f"photometric iterations (default: {ONE_PHOTO_ITERATIONS} for one photo, "
                        f"{JOINT_ITERATIONS} joint)")
    h.add_argument("--no-photometric", action="store_true", help="skip the photometric row")
    h.add_argument("--landmarks", choices=SOURCES, default="auto",
                   help="landmark source of the fits, as `facefit reconstruct --landmarks` "
                        "(default auto: MediaPipe's dense mesh for faces within 30 degrees of "
                        "frontal, the photometric refinement started from the network's "
                        "fit), mediapipe or network")
    add_close_ups(h)
    h.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="output folder")
    h.add_argument("--quiet", action="store_true", help="no per-subject progress")
    h.set_defaults(func=_cmd_shape)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it has none or states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and "default" not in text
                and action.default not in (None, False, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


class _DefaultsParser(argparse.ArgumentParser):
    """Sub-command parsers that show every option's default in ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def _with_report(func: Any, prefix: str) -> Any:
    """``func`` followed, when it succeeds, by the run's HTML report (its PNG figures and
    results on one self-contained page, `facefit.io.html.write_eval_report`)."""

    def run(args: argparse.Namespace) -> int:
        code = func(args)
        if code == 0:
            from facefit.io.html import write_eval_report

            page = write_eval_report(args.out, f"facefit eval {args.eval_command}", prefix)
            print(f"report: {page}", file=sys.stderr)
        return code

    return run


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", type=Path, help="predictions (.npz/.json, see "
                   "facefit.eval.predictions) instead of running facefit")
    p.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="output folder")
    p.add_argument("--quiet", action="store_true", help="no per-image progress")
    p.add_argument("--model", type=Path, default=None, metavar="PATH_OR_NAME",
                   help="morphable model facefit fits (a file or a name of `facefit model "
                        "list`, e.g. ict; default: the default model)")
    add_landmarks(p, "face")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _err(msg: str) -> None:
    print(f"facefit eval: error: {msg}", file=sys.stderr)


def _predict(paths: list[Path], gt: dict[str, np.ndarray], convention: str,
             args: argparse.Namespace) -> dict[str, np.ndarray | None] | None:
    """facefit's predictions (``--model``, ``--landmarks``); None after a one-line error
    when the model cannot be loaded."""
    from facefit.cli.common import Unavailable, load_model_arg
    from facefit.eval.predictions import predict_with_facefit
    from facefit.reconstruct import Reconstructor

    try:
        model = load_model_arg(args.model) if args.model is not None else None
    except Unavailable as exc:
        _err(str(exc))
        return None
    rec = Reconstructor(model=model, texture_size=0, landmarks=args.landmarks)
    return predict_with_facefit(paths, rec, gt, convention, progress=not args.quiet)


def _predictions(args: argparse.Namespace, samples: list[Any], gt: dict[str, np.ndarray],
                 name: str, convention: str) -> dict[str, np.ndarray | None] | None:
    """``--pred``'s predictions, or facefit's saved to ``OUT/NAME_predictions.npz``; None
    when the model cannot be loaded."""
    from facefit.eval.predictions import load_predictions, save_predictions

    if args.pred is not None:
        return load_predictions(args.pred)
    preds = _predict([s.image_path for s in samples], gt, convention, args)
    if preds is None:
        return None
    path = save_predictions(Path(args.out) / f"{name}_predictions.npz", preds)
    print(f"predictions: {path}", file=sys.stderr)
    return preds


def _write_json(path: Path, data: dict) -> None:
    """An eval result as JSON, atomically, with the outputs' ``schema_version`` first."""
    from facefit.io.atomic import write_text_atomic
    from facefit.io.schemas import SCHEMA_VERSION

    write_text_atomic(path, json.dumps({"schema_version": SCHEMA_VERSION, **data}, indent=1,
                                       allow_nan=False))


def _load(loader: Any, args: argparse.Namespace) -> list[Any] | None:
    """``loader(args.dir, args.limit)``, or None after a one-line error when it cannot."""
    try:
        return loader(args.dir, args.limit)
    except (OSError, ValueError) as exc:
        _err(str(exc))
        return None


def _benchmark_inputs(args: argparse.Namespace, loader: Any, truth: Any, name: str
                      ) -> tuple[list[Any], list[str], dict[str, np.ndarray | None]] | int:
    """(samples, their stems, predictions) of a landmark benchmark (``--pred``'s or
    facefit's), or the exit code after a one-line error (1: unreadable data, 4: bad model).
    ``truth(sample)`` gives the ground truth the prediction step picks the face by."""
    samples = _load(loader, args)
    if samples is None:
        return 1
    stems = [s.stem for s in samples]
    preds = _predictions(args, samples, {s.stem: truth(s) for s in samples}, name, name)
    if preds is None:
        return 4
    return samples, stems, preds


def _write_results(args: argparse.Namespace, name: str, result: Any, plots: dict[str, Any]
                  ) -> None:
    """``OUT/NAME.json`` and each plot ``OUT/<file>`` (``plots``: file name -> a function
    drawing to a path), written atomically, then where they are on stderr."""
    from facefit.io.atomic import atomic_path

    out = Path(args.out)
    _write_json(out / f"{name}.json", result.to_dict())
    for file, draw in plots.items():
        with atomic_path(out / file) as tmp:
            draw(str(tmp))
    print(f"results: {out / f'{name}.json'}, plots: "
          + ", ".join(str(out / f) for f in plots), file=sys.stderr)


def _cmd_aflw2000(args: argparse.Namespace) -> int:
    from facefit.eval.datasets import load_aflw2000
    from facefit.eval.landmarks import evaluate_aflw2000, stack_predictions

    got = _benchmark_inputs(args, load_aflw2000, lambda s: s.landmarks_3d, "aflw2000")
    if isinstance(got, int):
        return got
    samples, stems, preds = got
    xy = stack_predictions(preds, stems, dims=2)
    z = stack_predictions(preds, stems, dims=3)[..., 2:]
    result = evaluate_aflw2000(np.concatenate([xy, z], axis=-1),
                               np.stack([s.landmarks_3d for s in samples]),
                               np.array([s.yaw_deg for s in samples]), stems)
    print(result.table())
    label = "predictions" if args.pred else "facefit"
    _write_results(args, "aflw2000", result, {
        "aflw2000_yaw.png": result.plot_yaw_bars,
        "aflw2000_ced.png": lambda path: result.plot_ced(path, label=label)})
    return 0


def _cmd_300w(args: argparse.Namespace) -> int:
    from facefit.eval.datasets import load_300w
    from facefit.eval.landmarks import evaluate_300w, stack_predictions

    got = _benchmark_inputs(args, load_300w, lambda s: s.landmarks, "300w")
    if isinstance(got, int):
        return got
    samples, stems, preds = got
    result = evaluate_300w(stack_predictions(preds, stems, dims=2),
                           np.stack([s.landmarks for s in samples]), stems, args.threshold)
    print(result.table(name=Path(args.dir).name or "300-W"))
    label = "predictions" if args.pred else "facefit"
    _write_results(args, "300w", result, {
        "300w_ced.png": lambda path: result.plot_ced(path, label=label)})
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from facefit.eval.datasets import read_landmarks
    from facefit.io.mesh import read_mesh
    from facefit.metrics.scan import NOW_IBUG68_IDS, plot_error_map, scan_error

    scan_v, _ = read_mesh(args.scan)
    scan_lm = read_landmarks(args.scan_landmarks)
    if args.mesh is not None:
        if args.mesh_landmarks is None:
            _err("--mesh needs --mesh-landmarks")
            return 2
        verts, tris = read_mesh(args.mesh)
        mesh_lm = read_landmarks(args.mesh_landmarks)
    else:
        from facefit.eval.predictions import load_rgb
        from facefit.fit.result import model_frame_vertices
        from facefit.reconstruct import Reconstructor

        rec = Reconstructor(texture_size=0)
        faces = rec.reconstruct(load_rgb(args.photo))
        if not faces:
            _err(f"{args.photo}: no face found")
            return 1
        areas = [float((r.face.box[2] - r.face.box[0]) * (r.face.box[3] - r.face.box[1]))
                 for r in faces]
        fit = faces[int(np.argmax(areas))].fit
        verts = model_frame_vertices(rec.model, fit).astype(np.float64)
        tris = rec.model.triangles
        mesh_lm = verts[np.asarray(rec.model.landmark_ids["ibug68"])[NOW_IBUG68_IDS]]
    if len(tris) == 0:
        _err("the reconstruction must be a triangle mesh")
        return 1
    result = scan_error(verts, tris, mesh_lm, scan_v, scan_lm, crop_radius=args.crop_radius)
    print(result.table())
    out = Path(args.out)
    _write_json(out / "scan_error.json", result.to_dict())
    from facefit.io.atomic import atomic_path

    with atomic_path(out / "scan_error.png") as tmp:
        plot_error_map(result, tmp)
    np.save(out / "scan_error_per_point.npy", result.distances.astype(np.float32))
    print(f"results: {out / 'scan_error.json'}, heat map: {out / 'scan_error.png'}",
          file=sys.stderr)
    return 0


def _cmd_synthetic(args: argparse.Namespace) -> int:
    from facefit.eval.synthetic import contact_sheet, evaluate_synthetic, example_labels

    if args.n < 1 or args.size < 64:
        _err("--n must be >= 1 and --size >= 64")
        return 2
    report, faces = evaluate_synthetic(args.n, args.seed, size=args.size,
                                       progress=not args.quiet,
                                       photometric=not args.no_photometric,
                                       photometric_n=args.photometric_n,
                                       albedo=args.albedo)
    print(report.table())
    out = Path(args.out)
    _write_json(out / "synthetic.json", report.to_dict())
    from PIL import Image

    from facefit.io.atomic import atomic_path

    with atomic_path(out / "synthetic_examples.png") as tmp:
        Image.fromarray(contact_sheet(faces, labels=example_labels(report))).save(
            tmp, format="PNG")
    print(f"results: {out / 'synthetic.json'}, renders: {out / 'synthetic_examples.png'}",
          file=sys.stderr)
    return 0


def _cmd_shape(args: argparse.Namespace) -> int:
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.detect.network import landmark_detector
    from facefit.eval.shape import evaluate_shape, ict_subject, in_model_subject
    from facefit.model import ModelFileError, load_default_model, load_model

    if args.n < 1 or args.photos < 1 or args.size < 64 or args.clip < 0 or 0 < args.clip < 2:
        _err("--n and --photos must be >= 1, --clip 0 or >= 2, --size >= 64")
        return 2
    if args.clip and args.photos != 1:
        _err("--clip and --photos: choose one (a clip, or photos)")
        return 2
    if args.data == "ict" and args.ict is None:
        _err("--data ict needs --ict FOLDER (the ICT-FaceKit FaceXModel folder)")
        return 2
    try:
        model = load_model(args.model) if args.model else load_default_model()
        if args.data == "ict":
            from facefit.model.io_ict import load_ict

            ict = load_ict(args.ict)
    except ModelFileError as exc:
        _err(str(exc))
        return 1
    detector, source = landmark_detector(MediaPipeDetector(), args.landmarks, model.kind)
    renders = "" if args.focal_px is None else f"pinhole camera, focal {args.focal_px:g} px"
    # the fits know the true focal length (as from EXIF), except with auto (renders carry none)
    fit_focal = None if args.camera == "auto" else args.focal_px

    def subject(i: int):  # noqa: ANN202 - a ShapeSubject
        rng = np.random.default_rng([args.seed, i])
        if args.data == "ict":
            return ict_subject(ict, rng, args.photos, args.max_yaw, args.size,
                               focal_px=args.focal_px)
        return in_model_subject(model, rng, args.photos, args.max_yaw, args.size,
                                focal_px=args.focal_px)

    if args.clip:
        from facefit.eval.shape_clip import (
            evaluate_clip_shape,
            ict_clip_subject,
            in_model_clip_subject,
        )

        def clip(i: int):  # noqa: ANN202 - a ShapeSubject
            rng = np.random.default_rng([args.seed, i])
            if args.data == "ict":
                return ict_clip_subject(ict, rng, args.clip, args.max_yaw, args.size,
                                        focal_px=args.focal_px)
            return in_model_clip_subject(model, rng, args.clip, args.max_yaw, args.size,
                                         focal_px=args.focal_px)

        report = evaluate_clip_shape(model, clip, args.n, args.data, args.clip,
                                     keyframes=0 if args.no_photometric else 6,
                                     iterations=args.iterations, detector=detector,
                                     progress=not args.quiet, seed=args.seed,
                                     max_yaw=args.max_yaw, camera=args.camera,
                                     focal_px=fit_focal, renders=renders)
    else:
        report = evaluate_shape(model, subject, args.n, args.data, args.photos,
                                photometric=not args.no_photometric, iterations=args.iterations,
                                detector=detector, progress=not args.quiet, seed=args.seed,
                                max_yaw=args.max_yaw, camera=args.camera,
                                focal_px=fit_focal, renders=renders)
    print(report.table())
    out = Path(args.out)
    name = (f"shape_{args.data}_clip{args.clip}.json" if args.clip
            else f"shape_{args.data}_{args.photos}.json")
    _write_json(out / name, {**report.to_dict(), "landmarks": source})
    print(f"results: {out / name}", file=sys.stderr)
    return 0


def _cmd_fid(args: argparse.Namespace) -> int:
    from facefit.eval.generative import (
        fid_from_features,
        folder_features,
        kernel_inception_distance,
        load_feature_extractor,
    )

    try:
        extractor = load_feature_extractor(args.features, args.module, args.input_size,
                                           args.input_range)
        fa = folder_features(args.dir_a, extractor, args.batch_size)
        fb = folder_features(args.dir_b, extractor, args.batch_size)
        fid = fid_from_features(fa, fb)
    except (OSError, ValueError, RuntimeError) as exc:
        _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 1
    print(f"{'metric':<8}{'value':>14}{'images A':>10}{'images B':>10}")
    print(f"{'FID':<8}{fid:>14.4f}{len(fa):>10}{len(fb):>10}")
    if args.kid_subsets > 0 and min(len(fa), len(fb)) >= 2:
        kid, kid_std = kernel_inception_distance(fa, fb, args.kid_subsets, args.kid_subset_size)
        print(f"{'KID':<8}{kid:>14.6f}{'':>10}{'':>10}  (std {kid_std:.6f})")
    return 0
