"""Shape benchmark: NoW-style scan-to-mesh error on scans facefit did not make.

Rows (`facefit.eval.shape`; each with the mean-face baseline, the landmark fit and the
photometric refinement):

* ``in-model 1``: faces of the default model (shape N(0, 1)), one photo each; also the
  rigid-aligned mean vertex error.
* ``ict 1`` / ``ict 3`` / ``ict 6``: ICT Face Model identities (a different model and
  topology, from light-stage scans), 1, 3 or 6 photos each (several photos: joint fit).
* ``ict:clip50`` / ``in-model:clip50``: a talking, head-turning 50-frame clip per subject,
  scored with the identity ``facefit video`` fits, landmarks only and ``--refine photometric``
  (`facefit.eval.shape_clip`; rows mean face / clip identity / clip photometric).

``--focal-px F`` takes the photos (and clips) with a pinhole camera of focal length F
(close-ups) and ``--camera perspective`` fits them with it (the photometric refinement
keeps it; ``--fit-focal-px`` fits with another focal length).

With ``--heatmap PNG`` it also draws the per-vertex mean scan-to-mesh error of the ICT rows
on the ICT mean face (landmark fit, photometric, 6 photos). The ICT folder is
``--ict DIR`` (an unpacked ``FaceXModel``); without it the pack in ``../shared`` is
unpacked into ``out/ict-facekit`` once.

    nice -n 10 python benchmarks/shape.py [--rows in-model:1:30,ict:1:30,ict:3:10,ict:6:10]
        [--iterations 100] [--heatmap benchmarks/shape_heatmap.png] [--json out/shape.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from facefit.cli.common import add_close_ups
from facefit.detect.network import SOURCES
from facefit.fit.photometric.config import JOINT_ITERATIONS, ONE_PHOTO_ITERATIONS, parse_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_ICT = ROOT.parent / "shared" / "data" / "ict-facekit"
DEFAULT_ROWS = "in-model:1:30,ict:1:30,ict:3:10,ict:6:10"


def ict_folder(path: Path | None) -> Path:
    """The ICT FaceXModel folder: ``path``, or ``out/ict-facekit`` unpacked from ../shared."""
    if path is not None:
        return path
    dest = ROOT / "out" / "ict-facekit"
    if not (dest / "FaceXModel" / "generic_neutral_mesh.obj").is_file() or len(
            list((dest / "FaceXModel").glob("*.obj"))) < 158:
        unpack = SHARED_ICT / "unpack.py"
        if not unpack.is_file():
            sys.exit(f"benchmarks/shape.py: {unpack} not found; give --ict FaceXModel folder")
        subprocess.run([sys.executable, str(unpack), str(dest)], check=True)
    return dest / "FaceXModel"


def heatmap(ict, maps: dict[str, np.ndarray], path: Path, vmax: float = 3.0) -> None:
    """Panels of per-vertex mean error (mm) on the ICT neutral face region, frontal view."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from facefit.io.atomic import atomic_path

    pts = ict.neutral[ict.regions["face"]].astype(np.float64)
    order = np.argsort(pts[:, 2])
    fig = Figure(figsize=(1.9 * len(maps) + 0.9, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    sc = None
    for k, (name, err) in enumerate(maps.items()):
        ax = fig.add_subplot(1, len(maps), k + 1)
        ok = np.isfinite(err[order])
        sc = ax.scatter(pts[order][ok, 0], pts[order][ok, 1], c=err[order][ok], s=2.2,
                        cmap="jet", vmin=0, vmax=vmax, linewidths=0)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(f"{name}\nmedian {np.nanmedian(err):.2f} mm", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.86, top=0.84, bottom=0.02, wspace=0.02)
    if sc is not None:
        cax = fig.add_axes((0.88, 0.12, 0.02, 0.66))
        fig.colorbar(sc, cax=cax, label="mean scan-to-mesh, mm")
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=DEFAULT_ROWS,
                    help="data:photos:n,... rows to run (photos: a count, or clipF for an "
                         "F-frame clip)")
    ap.add_argument("--ict", type=Path, help="ICT-FaceKit FaceXModel folder")
    ap.add_argument("--iterations", type=int, default=None,
                    help=f"photometric iterations (default: {ONE_PHOTO_ITERATIONS} for one "
                         f"photo, {JOINT_ITERATIONS} joint)")
    ap.add_argument("--max-yaw", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-photometric", action="store_true")
    ap.add_argument("--ceiling", action="store_true",
                    help="add the row of the model fitted to the scan in 3D (its best)")
    ap.add_argument("--landmark-weight", type=float,
                    help="landmark weight of the refinement (default: the function's)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a PhotometricConfig setting of the refinement (Python literal), "
                         "e.g. level_share=(0.7,0.2,0.1); repeatable")
    ap.add_argument("--heatmap", type=Path, help="write the ICT error heat map PNG here")
    ap.add_argument("--json", type=Path, help="write all rows as JSON here")
    ap.add_argument("--maps", type=Path, help="save the ICT per-vertex error maps (.npz)")
    ap.add_argument("--merge-maps", type=Path, nargs="*", default=[],
                    help="add maps saved by earlier runs to the heat map")
    ap.add_argument("--plain-renders", action="store_true",
                    help="in-model photos without painted brows, lips and eyes (the renders "
                         "before session 11; facefit.synthetic.photos.paint_features)")
    ap.add_argument("--untextured", action="store_true",
                    help="ICT photos and clips in one grey (the bare mesh, no painted skin, "
                         "brows, lips or eyes; facefit.eval.shape.ict_albedo)")
    ap.add_argument("--landmarks", choices=SOURCES, default="auto",
                    help="landmark source of the fits (facefit.detect.network; default auto, "
                         "as facefit reconstruct: MediaPipe's dense points within 30 degrees, "
                         "the refinement started from the network's fit)")
    add_close_ups(ap)
    ap.add_argument("--fit-focal-px", type=float, default=None,
                    help="the perspective fits' focal length when it is not the photos' "
                         "(0: facefit's default, the image diagonal)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    options = {} if args.landmark_weight is None else {"landmark_weight": args.landmark_weight}
    try:
        options.update(parse_settings(args.option))
    except ValueError as e:
        ap.error(f"--option {e}")

    # the fits' focal length: the true one (a photo's EXIF), unless --fit-focal-px says
    # otherwise; auto: unknown (renders carry no EXIF), so the refinement picks the camera
    fit_focal = ((None if args.camera == "auto" else args.focal_px)
                 if args.fit_focal_px is None else (args.fit_focal_px or None))
    renders = (("" if args.focal_px is None else f"pinhole camera, focal {args.focal_px:g} px")
               + ("" if args.fit_focal_px is None else
                  f", fits' focal {fit_focal or 'the image diagonal'}"))
    if args.fit_focal_px is not None and args.camera == "scaled_orthographic":
        ap.error("--fit-focal-px needs --camera perspective")
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.detect.network import landmark_detector
    from facefit.eval.shape import evaluate_shape, ict_subject, in_model_subject
    from facefit.model import load_default_model

    model = load_default_model()
    detector, _ = landmark_detector(MediaPipeDetector(), args.landmarks)
    rows = [r.split(":") for r in args.rows.split(",") if r]
    ict = None
    if any(r[0] == "ict" for r in rows):
        from facefit.model.io_ict import load_ict

        ict = load_ict(ict_folder(args.ict))
    reports, maps = [], {}
    for data, photos_s, n_s in rows:
        n = int(n_s)
        how = ", ".join(x for x in (renders, "untextured" if args.untextured and data == "ict"
                                    else "") if x)
        if photos_s.startswith("clip"):  # a clip per subject: the identity facefit video fits
            from facefit.eval.shape_clip import (
                evaluate_clip_shape,
                ict_clip_subject,
                in_model_clip_subject,
            )

            frames = int(photos_s[4:] or 50)

            def clip(i: int, data: str = data, frames: int = frames):  # noqa: ANN202
                rng = np.random.default_rng([args.seed, i])
                if data == "ict":
                    return ict_clip_subject(ict, rng, frames, args.max_yaw,
                                            focal_px=args.focal_px,
                                            textured=not args.untextured)
                return in_model_clip_subject(model, rng, frames, args.max_yaw,
                                             features=not args.plain_renders,
                                             focal_px=args.focal_px)

            rep = evaluate_clip_shape(model, clip, n, data, frames,
                                      keyframes=0 if args.no_photometric else 6,
                                      iterations=args.iterations, detector=detector,
                                      progress=not args.quiet, seed=args.seed,
                                      max_yaw=args.max_yaw, camera=args.camera,
                                      focal_px=fit_focal, renders=how)
            print(rep.table(), flush=True)
            reports.append(rep.to_dict())
            continue
        photos = int(photos_s)

        def subject(i: int, data: str = data, photos: int = photos):  # noqa: ANN202
            rng = np.random.default_rng([args.seed, i])
            if data == "ict":
                return ict_subject(ict, rng, photos, args.max_yaw, focal_px=args.focal_px,
                                   textured=not args.untextured)
            return in_model_subject(model, rng, photos, args.max_yaw,
                                    features=not args.plain_renders, focal_px=args.focal_px)

        keep: dict = {}
        rep = evaluate_shape(model, subject, n, data, photos,
                             photometric=not args.no_photometric, iterations=args.iterations,
                             detector=detector, progress=not args.quiet, seed=args.seed,
                             max_yaw=args.max_yaw, keep=keep, photometric_options=options,
                             ceiling=args.ceiling, camera=args.camera, focal_px=fit_focal,
                             renders=how)
        print(rep.table(), flush=True)
        reports.append(rep.to_dict())
        if data == "ict":
            for method, dists in keep.items():
                if method == "mean face" and "mean face" in maps:
                    continue
                label = method if photos == 1 else f"{method}, {photos} photos"
                maps[label] = _vertex_means(np.stack(dists))
    if args.json:
        from facefit.io.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(reports, indent=1))
    if args.maps and maps:
        np.savez(args.maps, **{k.replace(" ", "_").replace(",", ""): v for k, v in maps.items()})
    for path in args.merge_maps:
        with np.load(path) as z:
            for key in z.files:
                label = key.replace("_6_photos", ", 6 photos").replace("_3_photos", ", 3 photos")
                maps.setdefault(label.replace("_", " "), z[key])
    if args.heatmap and maps:
        if ict is None:
            from facefit.model.io_ict import load_ict

            ict = load_ict(ict_folder(args.ict), num_identity=1)
        wanted = [k for k in ("mean face", "landmarks", "photometric", "landmarks, 6 photos",
                              "photometric, 6 photos") if k in maps]
        heatmap(ict, {k: maps[k] for k in wanted}, args.heatmap)
        print(f"heat map: {args.heatmap}", file=sys.stderr)
    return 0


def _vertex_means(dists: np.ndarray) -> np.ndarray:
    """(V,) mean over subjects of (S, V) per-vertex distances, NaN where a vertex was never
    scored (outside every subject's face region: numpy's nanmean warns there)."""
    seen = np.isfinite(dists)
    count = seen.sum(0)
    total = np.where(seen, dists, 0.0).sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


if __name__ == "__main__":
    raise SystemExit(main())
