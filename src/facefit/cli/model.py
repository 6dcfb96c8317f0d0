"""``facefit model ...`` subcommands: info, list, convert, build.

`register(subparsers)` adds the ``model`` command to the main CLI's subparsers; every leaf
sets ``func`` (args -> exit code). Mesh folder layouts for ``build``:

* ``--meshes DIR``: one registered mesh per identity (``*.obj`` / ``*.ply``, one topology);
* ``--expressions DIR``: ``DIR/<subject>/neutral.obj`` plus any other meshes of that
  subject's expressions (expression basis from the differences);
* ``--grid DIR``: ``DIR/<subject>/<expression>.obj`` with the same expression names for every
  subject; the neutral expression is named ``neutral`` (else the first name). Writes a
  bilinear model in the FaceScape ``.npz`` layout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

EXIT_MODEL = 4  # the model could not be loaded (the CLI's exit-code table)


def _err(msg: str, code: int = 1) -> int:
    print(f"facefit model: {msg}", file=sys.stderr)
    return code


def cmd_info(args: argparse.Namespace) -> int:
    from facefit.model.bfm_3ddfa import NAME, ModelDataMissing
    from facefit.model.info import model_summary
    from facefit.model.load import ModelFileError
    from facefit.model.named import load_named_model

    try:
        model = load_named_model(NAME if args.path is None else args.path)
    except (ModelFileError, ModelDataMissing) as exc:
        return _err(str(exc), EXIT_MODEL)
    print(model_summary(model))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from facefit.model.info import installed_models, model_dirs

    entries = installed_models()
    width = max([len(e.name) for e in entries] + [4])
    for e in entries:
        print(f"{e.name:<{width}}  {e.status:<24}  {e.location}")
    print("searched: " + ", ".join(str(d) for d in model_dirs()))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from facefit.model.bfm_3ddfa import ModelDataMissing
    from facefit.model.load import ModelFileError, save_model
    from facefit.model.named import load_named_model

    try:
        model = load_named_model(args.input)
    except (ModelFileError, ModelDataMissing) as exc:
        return _err(str(exc), EXIT_MODEL)
    try:
        out = save_model(model, args.output)
    except ModelFileError as exc:
        return _err(str(exc))
    print(f"wrote {out} ({model.num_vertices} vertices, {model.num_shape} shape + "
          f"{model.num_expression} expression components)")
    return 0


def _subject_dirs(folder: Path) -> list[Path]:
    subs = sorted(d for d in folder.iterdir() if d.is_dir())
    if not subs:
        raise ValueError(f"{folder}: no subject folders")
    return subs


def _build_grid(args: argparse.Namespace) -> int:
    from facefit.io.mesh import read_mesh
    from facefit.model.build import build_bilinear, mesh_files, variance_report
    from facefit.model.io_facescape import save_bilinear

    subs = _subject_dirs(Path(args.grid))
    names = [f.stem for f in mesh_files(subs[0])]
    if not names:
        raise ValueError(f"{subs[0]}: no meshes")
    neutral = names.index("neutral") if "neutral" in names else 0
    first, tri = read_mesh(mesh_files(subs[0])[0])
    grid = np.empty((len(subs), len(names), *first.shape))
    for i, sdir in enumerate(subs):
        files = {f.stem: f for f in mesh_files(sdir)}
        for j, nm in enumerate(names):
            if nm not in files:
                raise ValueError(f"{sdir}: missing expression mesh '{nm}'")
            grid[i, j] = read_mesh(files[nm])[0]
    t0 = time.perf_counter()
    model, res = build_bilinear(grid, tri, id_components=args.components,
                                exp_components=args.exp_components,
                                variance=None if args.components else args.variance,
                                align=not args.no_align, neutral_index=neutral)
    dt = time.perf_counter() - t0
    out = save_bilinear(model, args.output)
    print(f"bilinear model: {len(subs)} subjects x {len(names)} expressions -> core "
          f"{model.num_identity} x {model.num_expression} in {dt:.2f} s; wrote {out}")
    if args.report:
        s2 = res.id_singular_values ** 2
        text, paths = variance_report(s2, float(s2.sum()), Path(args.report) / "identity",
                                      "identity mode (HOSVD)")
        e2 = res.exp_singular_values ** 2
        variance_report(e2, float(e2.sum()), Path(args.report) / "expression",
                        "expression mode (HOSVD)")
        print(text, end="")
        print(f"report: {Path(args.report)}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from facefit.io.mesh import read_mesh
    from facefit.model.build import (
        build_expression_basis,
        build_pca_model,
        mesh_files,
        read_mesh_folder,
        variance_report,
    )
    from facefit.model.load import save_model

    if not str(args.output).lower().endswith(".npz"):
        return _err(f"{args.output}: output must be a .npz file", 2)  # usage error
    try:
        if args.grid:
            return _build_grid(args)
        if not args.meshes:
            return _err("build needs --meshes DIR (or --grid DIR)", 2)  # usage error
        meshes, tri, files = read_mesh_folder(args.meshes)
        exp_basis = None
        exp_res = None
        if args.expressions:
            neutral, expr, owner = [], [], []
            for sdir in _subject_dirs(Path(args.expressions)):
                files_s = mesh_files(sdir)
                neu = [f for f in files_s if f.stem == "neutral"]
                if not neu:
                    raise ValueError(f"{sdir}: missing neutral.obj / neutral.ply")
                neutral.append(read_mesh(neu[0])[0])
                for f in files_s:
                    if f.stem != "neutral":
                        expr.append(read_mesh(f)[0])
                        owner.append(len(neutral) - 1)
            if not expr:
                raise ValueError(f"{args.expressions}: no expression meshes")
            if neutral[0].shape != meshes.shape[1:]:
                raise ValueError("expression meshes do not share the identity meshes' topology")
            exp_basis, exp_res = build_expression_basis(
                np.stack(neutral), np.stack(expr), np.asarray(owner),
                variance=args.variance, components=args.exp_components,
                align=not args.no_align)
        t0 = time.perf_counter()
        model, res = build_pca_model(
            meshes, tri, variance=None if args.components else args.variance,
            components=args.components, align=not args.no_align,
            name=Path(args.output).stem, expression_basis=exp_basis,
            source=f"facefit model build --meshes {args.meshes}")
        dt = time.perf_counter() - t0
    except (ValueError, OSError) as exc:
        return _err(str(exc).splitlines()[0])
    out = save_model(model, args.output)
    frac = float(res.explained[-1]) if res.eigenvalues.size else 0.0
    print(f"PCA model: {len(files)} meshes x {meshes.shape[1]} vertices -> "
          f"{model.num_shape} shape components ({100 * frac:.1f}% variance), "
          f"{model.num_expression} expression components; built in {dt:.2f} s; wrote {out}")
    if args.report:
        text, _ = variance_report(res.eigenvalues, res.total_variance,
                                  Path(args.report), "identity variance spectrum")
        print(text, end="")
        if exp_res is not None:
            variance_report(exp_res.eigenvalues, exp_res.total_variance,
                            Path(args.report) / "expression", "expression variance spectrum")
        print(f"report: {Path(args.report)}")
    return 0


BUILD_LAYOUTS = """\
folder layouts:
  --meshes DIR         DIR/*.obj|*.ply: one neutral mesh per subject (any names, sorted)
                       -> identity PCA (mean, shape basis, per-component sigma)
  --expressions DIR    DIR/<subject>/neutral.obj (or .ply) and DIR/<subject>/<any>.obj: the
                       expression meshes of each subject; their offsets from that subject's
                       neutral mesh -> expression PCA added to the --meshes model
  --grid DIR           DIR/<subject>/<expression>.obj, the same expression names in every
                       subject folder ("neutral" is the reference expression when present)
                       -> bilinear identity x expression model (HOSVD, FaceScape-style)

output: a facefit .npz model (documented key by key in facefit.model.io_npz); with
--report DIR also DIR/variance.tsv and DIR/variance.png (explained variance per component).
exit codes: 0 written, 1 bad input (the message names the file), 2 usage error."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``model {info,list,convert,build}`` to the main CLI's ``subparsers``."""
    p = subparsers.add_parser("model", help="inspect, convert and build morphable models")
    sub = p.add_subparsers(dest="model_command", metavar="{info,list,convert,build}")
    sub.required = True

    pi = sub.add_parser("info", help="summary of a model file (default: the bundled model)")
    pi.add_argument("path", nargs="?", default=None,
                    help="model file (.npz/.mat/.h5/.pkl/.bin) or a name from 'model list'")
    pi.set_defaults(func=lambda args: cmd_info(args))

    pl = sub.add_parser("list", help="models installed")
    pl.set_defaults(func=lambda args: cmd_list(args))

    pc = sub.add_parser("convert", help="convert any supported model to facefit .npz")
    pc.add_argument("input", help="model file to read, or a name from 'model list' (e.g. "
                                  "the default model's)")
    pc.add_argument("output", help="facefit .npz to write")
    pc.set_defaults(func=lambda args: cmd_convert(args))

    pb = sub.add_parser(
        "build", help="build a PCA (or bilinear) model from registered meshes",
        description="Build a morphable model from registered meshes (every mesh has the same "
                    "vertices in the same order and the same triangles; OBJ or PLY, mm).",
        epilog=BUILD_LAYOUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    pb.add_argument("--meshes", metavar="DIR", help="folder of registered identity meshes")
    pb.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    trunc = pb.add_mutually_exclusive_group()
    trunc.add_argument("--variance", type=float, default=0.98,
                       help="keep components up to this variance fraction (default 0.98)")
    trunc.add_argument("--components", type=int, default=None, metavar="K",
                       help="keep K components (identity)")
    pb.add_argument("--exp-components", type=int, default=None, metavar="K",
                    help="expression components (default: by --variance)")
    pb.add_argument("--expressions", metavar="DIR",
                    help="DIR/<subject>/neutral.obj + expression meshes")
    pb.add_argument("--grid", metavar="DIR",
                    help="DIR/<subject>/<expression>.obj grid -> bilinear model (HOSVD)")
    pb.add_argument("--report", metavar="DIR", help="write variance.tsv and variance.png here")
    pb.add_argument("--no-align", action="store_true",
                    help="skip generalised Procrustes alignment (meshes already aligned)")
    pb.set_defaults(func=lambda args: cmd_build(args))
