"""Photometric refinement benchmark: speed, synthetic ground truth and AFLW2000-3D.

1. Synthetic faces of the default model (random shape, expression, pose, smooth albedo and
   SH light, random background, pixel noise; `facefit.synthetic.photos`): landmark fit from
   the noisy projected 68 landmarks, then `refine_photometric`. Prints the dense vertex error
   (image space, px; over the vertices inside the face-skin mask) before and after, the
   recovered light direction's angle error and the photometric error; and the time per face
   with its parts (raster, forward = interpolation + shading + loss, backward + step) for
   the given iterations at ``--size`` px. Run under ``taskset -c 0``: one thread.
2. ``--photos N``: the speed on real photos: N train-300w photos (every 37th file name),
   detected and landmark-fitted once (not timed), then `refine_photometric` on each with the
   default settings; CPU ms per refinement (``time.process_time``: the load of a shared box
   stretches wall time) and the final photometric RMS. ``--option KEY=VALUE`` passes a
   `PhotometricConfig` setting. Run under ``taskset -c 0``.
3. ``--aflw N``: AFLW2000-3D, N images stratified over |yaw| (0-30, 30-60, 60-90), MediaPipe
   detection → landmark fit → refinement; 68-point 2D NME (GT-box normalised) per yaw bucket
   of the landmark fit (what `facefit reconstruct --refine photometric` outputs) and of the
   refined mesh's own landmark vertices.
4. ``--helen N``: the same for the 300-W points (`landmarks_68_2d_contour`, fused with the
   detector's as `facefit reconstruct` does) on about N HELEN test photos, inter-ocular NME.

    python benchmarks/photometric.py [--faces 5] [--iterations 100] [--aflw 99]
    taskset -c 0 python benchmarks/photometric.py --faces 0 --photos 8
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from facefit.detect.network import refinement_starts  # noqa: E402
from facefit.fit.camera import Camera  # noqa: E402
from facefit.fit.landmark_fit import fit_points, make_result  # noqa: E402
from facefit.fit.photometric import (  # noqa: E402
    PhotometricConfig,
    refine_photometric,
    skin_mask,
)
from facefit.fit.photometric.config import parse_settings  # noqa: E402
from facefit.fit.points_aflw import with_aflw_convention  # noqa: E402
from facefit.model import load_default_model  # noqa: E402
from facefit.render.differentiable import light_direction  # noqa: E402
from facefit.synthetic.photos import dense_error_px, make_synthetic_face  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw2000-3d-dev"
TRAIN_300W = Path(__file__).resolve().parents[2] / "shared" / "data" / "train-300w"
HELEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "helen-test"


def _components(a: np.ndarray, b: np.ndarray, ids: np.ndarray) -> tuple[float, float]:
    """Mean image-plane and depth (offset removed) errors, px."""
    d = (np.asarray(a, np.float64) - b)[ids]
    d[:, 2] -= np.median(d[:, 2])
    return float(np.linalg.norm(d[:, :2], axis=1).mean()), float(np.abs(d[:, 2]).mean())


def synthetic(args: argparse.Namespace) -> None:
    model = load_default_model()
    lm_ids = model.landmark_ids["ibug68"]
    rng = np.random.default_rng(args.seed)
    config = PhotometricConfig(iterations=args.iterations, size=args.size,
                               image_loss=args.image_loss, device=args.device)
    warm = make_synthetic_face(model, np.random.default_rng(99))  # caches, first-call costs
    a, b, pose, rms, n = fit_points(model, warm.landmarks, lm_ids)
    refine_photometric(model, make_result(model, a, b, pose, Camera(), rms, n, 5), warm.image,
                       config=replace(config, iterations=10))
    rows, times = [], []
    print(f"synthetic: {args.faces} faces, {args.iterations} iterations at {args.size} px, "
          f"loss {args.image_loss}, landmark noise {args.landmark_noise} px, "
          f"device {args.device or 'auto'}, torch threads {torch.get_num_threads()}")
    print(f"{'face':>4}{'yaw':>6}{'dense0':>8}{'dense1':>8}{'drop%':>7}{'xy0':>6}{'xy1':>6}"
          f"{'z0':>6}{'z1':>6}{'light°':>8}{'photo0':>8}{'photo1':>8}{'lm px':>7}{'s':>6}")
    for i in range(args.faces):
        face = make_synthetic_face(model, rng)
        pts = face.landmarks + rng.normal(0, args.landmark_noise, face.landmarks.shape)
        size = float(np.sqrt(np.prod(pts.max(0) - pts.min(0))))
        a, b, pose, rms, n = fit_points(model, pts, lm_ids, landmark_sigma_px=0.02 * size)
        fit = make_result(model, a, b, pose, Camera(), rms, n, 5)
        t0 = time.perf_counter()
        res = refine_photometric(model, fit, face.image, landmarks_px=pts, config=config)
        dt = time.perf_counter() - t0
        mask = skin_mask(face.landmarks, *face.image.shape[:2])
        xy = np.rint(face.verts_px[:, :2]).astype(int).clip(0, face.image.shape[0] - 1)
        ids = np.flatnonzero(mask[xy[:, 1], xy[:, 0]])
        e0 = dense_error_px(fit.verts_px, face.verts_px, ids)
        e1 = dense_error_px(res.fit.verts_px, face.verts_px, ids)
        (xy0, z0), (xy1, z1) = (_components(fit.verts_px, face.verts_px, ids),
                                _components(res.fit.verts_px, face.verts_px, ids))
        cos = float(light_direction(res.sh_coeffs) @ face.light_dir)
        ang = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
        rows.append((e0, e1, xy0, xy1, z0, z1, ang, res.initial_photometric_error,
                     res.photometric_error, res.landmark_error_px))
        times.append({**res.timings_ms, "wall": dt * 1e3})
        print(f"{i:4d}{res.fit.yaw_deg:6.1f}{e0:8.3f}{e1:8.3f}{100 * (1 - e1 / e0):7.1f}"
              f"{xy0:6.2f}{xy1:6.2f}{z0:6.2f}{z1:6.2f}{ang:8.2f}"
              f"{res.initial_photometric_error:8.4f}{res.photometric_error:8.4f}"
              f"{res.landmark_error_px:7.2f}{dt:6.2f}", flush=True)
    r = np.array(rows)
    print(f"mean: dense {r[:, 0].mean():.3f} -> {r[:, 1].mean():.3f} px "
          f"(drop {100 * (1 - r[:, 1].mean() / r[:, 0].mean()):.1f} %, per-face drops "
          f"{100 * np.mean(1 - r[:, 1] / r[:, 0]):.1f} % mean, "
          f"{100 * np.min(1 - r[:, 1] / r[:, 0]):.1f} % min); image-plane "
          f"{r[:, 2].mean():.3f} -> {r[:, 3].mean():.3f}, depth {r[:, 4].mean():.3f} -> "
          f"{r[:, 5].mean():.3f}; light error {r[:, 6].mean():.2f}° mean, {r[:, 6].max():.2f}° "
          f"max; photometric RMS {r[:, 7].mean():.4f} -> {r[:, 8].mean():.4f}")
    med = {k: float(np.median([t[k] for t in times])) for k in times[0]}
    print(f"time per face (median ms, {args.iterations} it at {args.size} px): "
          f"total {med['total']:.0f} = raster {med['raster']:.0f} + forward "
          f"{med['forward']:.0f} + backward/step {med['backward']:.0f} + other "
          f"{med['total'] - med['raster'] - med['forward'] - med['backward']:.0f}")


def config_options(args: argparse.Namespace) -> tuple[PhotometricConfig, dict]:
    """The refinement's settings: the command line's, then each ``--option KEY=VALUE``."""
    options = parse_settings(args.option)
    return replace(PhotometricConfig(iterations=args.iterations, size=args.size,
                                     image_loss=args.image_loss, device=args.device),
                   **options), options


def photos(args: argparse.Namespace) -> None:
    from facefit.io.image import to_rgb
    from facefit.reconstruct import Reconstructor

    config, options = config_options(args)
    paths = sorted(args.train300w.glob("*.jpg"))[::37][:args.photos]
    if not paths:
        raise SystemExit(f"benchmarks/photometric.py: no .jpg files in {args.train300w}")
    rec = Reconstructor(texture_size=0)
    fits = []
    for path in paths:
        image = to_rgb(path)
        found = rec.reconstruct(image, max_faces=1)
        if found:
            fits.append((image, found[0].fit))
    image, fit = fits[0]
    refine_photometric(rec.model, fit, image, config=replace(config, iterations=10))  # caches
    cpu, rms = [], []
    for image, fit in fits:
        t0 = time.process_time()
        res = refine_photometric(rec.model, fit, image, config=config)
        cpu.append(1e3 * (time.process_time() - t0))
        rms.append(res.photometric_error)
    print(f"train-300w: {len(fits)} photos, {config.iterations} it, options {options}: "
          f"refine_photometric CPU median {np.median(cpu):.0f} ms (mean {np.mean(cpu):.0f}); "
          f"final photometric RMS mean {np.mean(rms):.5f}")


def fit_and_refine(rec, image_path: Path, gt: np.ndarray, config: PhotometricConfig,  # noqa: ANN001, ANN201
                   camera: str = "scaled_orthographic"):
    """As `facefit.Reconstructor` with ``--refine photometric`` on one annotated photo: the
    detected face overlapping the annotation most (`select_face`), its landmark fit, and the
    refinement started from `refinement_starts` (``camera`` auto: both cameras of a photo
    without a focal length, `best_refinement` keeps one). (face, landmark fit, refinement
    seconds, `PhotometricResult`), or None without a face."""
    from facefit.eval.predictions import select_face
    from facefit.fit.camera import camera_candidates
    from facefit.fit.landmark_fit import fit_landmarks
    from facefit.fit.photometric import best_refinement
    from facefit.io.image import load_image

    image = load_image(image_path)
    faces = rec.detector.detect(image)
    if not faces:
        return None
    face = faces[select_face([f.box for f in faces], gt)]
    fits = [fit_landmarks(rec.model, face, image.shape[1::-1], camera=c, focal_px=f)
            for c, f in camera_candidates(camera, None, True)]
    starts = refinement_starts(rec.model, rec.detector, image, face, fits)
    t0 = time.perf_counter()
    _, joint = best_refinement(rec.model, [[s] for s in starts], [image], config=config)
    # the landmark outputs: the first camera's fit, as the Reconstructor's
    return face, fits[0], time.perf_counter() - t0, joint.results[0]


def aflw(args: argparse.Namespace) -> None:
    from facefit.eval.datasets import load_aflw2000
    from facefit.eval.landmarks import evaluate_aflw2000
    from facefit.reconstruct import Reconstructor

    samples = load_aflw2000(args.data)
    yaw_all = np.abs([s.yaw_deg for s in samples])
    per = args.aflw // 3
    chosen = []
    for lo, hi in ((0, 30), (30, 60), (60, 90.01)):
        idx = np.flatnonzero((yaw_all >= lo) & (yaw_all < hi))
        chosen += list(idx[np.linspace(0, len(idx) - 1, min(per, len(idx))).astype(int)])
    samples = [samples[i] for i in chosen]
    config, options = config_options(args)
    rec = Reconstructor(texture_size=0)
    n = len(samples)
    pred0, pred1 = np.full((n, 68, 2), np.nan), np.full((n, 68, 2), np.nan)
    t_ref, kept = [], []
    for i, s in enumerate(samples):
        got = fit_and_refine(rec, s.image_path, s.landmarks_2d, config, args.camera)
        if got is None:
            continue
        face, fit, seconds, res = got
        t_ref.append(seconds)
        kept.append(res.fit.camera.kind)
        pred0[i] = with_aflw_convention(rec.model, fit, face).landmarks_68_2d  # as Reconstructor
        pred1[i] = with_aflw_convention(rec.model, res.fit, face).landmarks_68_2d
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{n}", flush=True)
    stems = [s.stem for s in samples]
    yaw = np.array([s.yaw_deg for s in samples])
    gt = np.stack([s.landmarks_2d for s in samples])
    print(f"AFLW2000-3D ({args.data.name}), {n} images stratified over |yaw|, 68-point 2D NME "
          f"(%), GT-box normalised; refinement {args.iterations} it, loss {args.image_loss}, "
          f"options {options}, camera {args.camera}")
    print(f"{'method':<26}{'0-30':>7}{'30-60':>7}{'60-90':>7}{'balanced':>10}{'mean':>7}"
          f"{'no face':>9}{'failures':>13}{'capped':>8}")
    # the command's outputs are the landmark fit's points (`with_landmark_outputs`); the
    # second row scores the refined mesh's own landmark vertices
    for name, p in (("landmark fit", pred0), ("refined mesh's points", pred1)):
        r = evaluate_aflw2000(p, gt, yaw, stems)
        b = [100 * v for v in r.bucket_nme_2d]
        fails = "/".join(str(f) for f in r.bucket_failures)
        print(f"{name:<26}{b[0]:7.2f}{b[1]:7.2f}{b[2]:7.2f}{100 * r.balanced_2d:10.2f}"
              f"{100 * r.mean_2d:7.2f}{len(r.missing):>9}{fails:>13}"
              f"{100 * r.balanced_capped_2d:8.2f}")
    print(f"bucket sizes {r.bucket_counts}; failures per bucket: no face or NME > "
          f"{100 * r.failure_threshold:g} %; capped: balanced NME with every failure scored "
          f"{100 * r.failure_threshold:g} %; refinement median {np.median(t_ref):.2f} s/face; "
          f"cameras kept: {_kinds(kept)}")


def _kinds(kinds: list[str]) -> str:
    """``"perspective 3, scaled_orthographic 57"``: the cameras the refinements kept."""
    return ", ".join(f"{k} {kinds.count(k)}" for k in sorted(set(kinds)))


def helen(args: argparse.Namespace) -> None:
    """300-W points (`landmarks_68_2d_contour`) of the landmark fit and of the refined mesh on
    every k-th HELEN test photo (k chosen so that about ``args.helen`` are used)."""
    from facefit.eval.datasets import load_300w
    from facefit.eval.landmarks import evaluate_300w
    from facefit.fit.points300w import with_detector_points
    from facefit.reconstruct import Reconstructor

    samples = load_300w(args.helen_data)
    step = max(len(samples) // args.helen, 1)
    samples = samples[::step][:args.helen]
    config, options = config_options(args)
    rec = Reconstructor(texture_size=0)
    n = len(samples)
    pred0, pred1 = np.full((n, 68, 2), np.nan), np.full((n, 68, 2), np.nan)
    kept = []
    for i, s in enumerate(samples):
        got = fit_and_refine(rec, s.image_path, s.landmarks, config, args.camera)
        if got is None:
            continue
        face, fit, _, res = got
        kept.append(res.fit.camera.kind)
        pred0[i] = with_detector_points(rec.model.name, fit, face).landmarks_68_2d_contour
        pred1[i] = with_detector_points(rec.model.name, res.fit, face).landmarks_68_2d_contour
    stems = [s.stem for s in samples]
    gt = np.stack([s.landmarks for s in samples])
    print(f"HELEN test ({args.helen_data.name}), one photo in {step}, {n} photos, 300-W points "
          f"(landmarks_68_2d_contour), inter-ocular NME; refinement {args.iterations} it, "
          f"options {options}, camera {args.camera} (kept: {_kinds(kept)})")
    for name, p in (("landmark fit", pred0), ("refined mesh's points", pred1)):
        print(name)
        print(evaluate_300w(p, gt, stems).table())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=5, help="synthetic faces (0 skips)")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--image-loss", default="l2", choices=("l2", "huber", "gradient"))
    ap.add_argument("--landmark-noise", type=float, default=1.0, help="px, synthetic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    ap.add_argument("--aflw", type=int, default=0, metavar="N",
                    help="also run N AFLW2000-3D images stratified over yaw")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--photos", type=int, default=0, metavar="N",
                    help="also time the refinement on N train-300w photos (CPU time)")
    ap.add_argument("--train300w", type=Path, default=TRAIN_300W)
    ap.add_argument("--helen", type=int, default=0, metavar="N",
                    help="also compare the 300-W points on about N HELEN test photos")
    ap.add_argument("--helen-data", type=Path, default=HELEN)
    ap.add_argument("--camera", default="scaled_orthographic",
                    choices=("scaled_orthographic", "perspective", "auto"),
                    help="camera of the fits of --aflw and --helen photos (perspective: focal "
                         "length the image diagonal, as facefit without EXIF; auto: both "
                         "refined, the one that explains the pixels better kept, as "
                         "facefit's default --refine photometric without EXIF)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a PhotometricConfig setting for --photos and --aflw (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.faces:
        synthetic(args)
    if args.photos:
        photos(args)
    if args.aflw:
        aflw(args)
    if args.helen:
        helen(args)


if __name__ == "__main__":
    main()
