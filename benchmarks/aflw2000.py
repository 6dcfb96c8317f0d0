"""AFLW2000-3D benchmark of the whole pipeline: own detection, landmarks, fit, texture, export.

Prints the 3DDFA-protocol table (68-point 2D NME normalised by the ground-truth landmark box,
yaw buckets 0-30 / 30-60 / 60-90 and their balanced mean), the images with no face found,
and median milliseconds per image for each stage, for each landmark source of ``facefit
reconstruct --landmarks`` (`facefit.detect.network`): ``mediapipe`` (MediaPipe's mesh + fit),
``network`` (facefit's network; the fit makes the mesh), ``auto`` (per face, by the
network's yaw), and as baselines MediaPipe's raw points mapped to the 68 iBUG points, the
network's own 68 points (no fit) and the fit's projections of them. Every row shares one
detection per image; when it finds several faces the one overlapping the annotated face most
is scored (`select_face`), and the "another face = miss" rows count an image whose scored face
is another person's (`another_face`: the annotated face was not found) as a miss instead.
``auto`` runs as in ``facefit reconstruct`` (`NetworkLandmarkDetector.landmark_faces`, then
the fit); its blend's end (``NETWORK_ONLY``)
is also swept, and the hard switch it replaced scored, from the two sources' landmarks (the
constants are chosen on the even-numbered images of this dev half, sorted: model selection,
no training; the odd-numbered ones are printed as a held-out check).
Single-threaded on purpose (run it under ``taskset -c 0`` for a strict one-core number).

    python benchmarks/aflw2000.py [--data ../shared/data/aflw2000-3d-dev] [--limit N]
        [--json FILE] [--predictions FILE.npz]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402

import cv2  # noqa: E402

cv2.setNumThreads(1)  # OpenCV's own thread pool (resizes, the network's DNN forward pass)
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from facefit.detect.base import box_iou  # noqa: E402
from facefit.detect.network import (  # noqa: E402
    NETWORK_ONLY,
    PASSES,
    YAW_THRESHOLD,
    NetworkLandmarkDetector,
    keeps_mediapipe,
    landmark_source,
    network_face,
)
from facefit.eval.datasets import load_aflw2000  # noqa: E402
from facefit.eval.landmarks import evaluate_aflw2000  # noqa: E402
from facefit.eval.predictions import (  # noqa: E402
    ANOTHER_FACE_IOU,
    another_face,
    landmark_box,
    select_face,
)
from facefit.fit.correspondence import mediapipe_to_ibug68  # noqa: E402
from facefit.fit.points_aflw import with_aflw_convention  # noqa: E402
from facefit.io.atomic import atomic_path  # noqa: E402
from facefit.io.export import FORMATS, export_reconstructions  # noqa: E402
from facefit.io.image import load_image  # noqa: E402
from facefit.reconstruct import Reconstructor  # noqa: E402
from facefit.regress.predictor import (  # noqa: E402
    RegressionPredictor,
    crop_faces,
    crop_maps,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw2000-3d-dev"
GROSS = 0.15  # NME over which an image is listed as a gross failure (each adds 0.75 points or
# more to a 200-image bucket's mean)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--texture-every", type=int, default=4,
                    help="time texturing on every Nth image (it does not change the NME)")
    ap.add_argument("--export-every", type=int, default=32,
                    help="time the export of all formats on every Nth image")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--predictions", type=Path, default=None,
                    help="also write every image's 68 points per method here (.npz)")
    ap.add_argument("--weights", type=Path, default=None,
                    help="network weights (default: the packaged ones)")
    args = ap.parse_args()

    samples = load_aflw2000(args.data, args.limit)
    rec = Reconstructor(texture_size=0, landmarks="mediapipe")
    net = RegressionPredictor(args.weights)
    auto_lm = NetworkLandmarkDetector(rec.detector, "auto", predictor=net, model=rec.model)
    net_lm = NetworkLandmarkDetector(rec.detector, "network", predictor=net, model=rec.model)
    n = len(samples)
    pred = np.full((n, 68, 2), np.nan)
    raw = np.full((n, 68, 2), np.nan)
    net_raw = np.full((n, 68, 2), np.nan)
    net_fit = np.full((n, 68, 2), np.nan)  # `--landmarks network`'s output
    net_proj = np.full((n, 68, 2), np.nan)  # the fit's own projections of those faces
    auto_fit = np.full((n, 68, 2), np.nan)
    auto_src = np.full(n, "", dtype=object)
    net_yaw = np.full(n, np.nan)  # first pass
    net_yaw2 = np.full(n, np.nan)  # last pass
    mp_ok = np.zeros(n, bool)
    t_detect, t_fit, t_texture, t_export, t_net, t_net_fit, t_fwd = [], [], [], [], [], [], []
    t_auto: list[float] = []  # `auto`'s landmarks (network passes, blend) + fit, CPU s
    from facefit.fit.landmark_fit import fit_landmarks
    from facefit.texture.extract import extract_texture

    out_dir = Path(tempfile.mkdtemp(prefix="facefit-bench-"))
    for i, s in enumerate(samples):
        image = load_image(s.image_path)
        t0 = time.perf_counter()
        faces = rec.detector.detect(image)
        t_detect.append(time.perf_counter() - t0)
        if not faces:
            continue
        face = faces[select_face([f.box for f in faces], s.landmarks_2d)]
        t1 = time.perf_counter()
        fit = with_aflw_convention(rec.model, fit_landmarks(rec.model, face, image.shape[1::-1]),
                                   face)  # as `Reconstructor` does
        t_fit.append(time.perf_counter() - t1)
        pred[i] = fit.landmarks_68_2d
        raw[i] = mediapipe_to_ibug68(face.points_px)
        # as NetworkLandmarkDetector: one pass decides `auto` (its yaw), the network's faces
        # get PASSES - 1 more, each cropped upright from the previous pass's landmarks
        t4 = time.perf_counter()
        first = net_lm.first_pass(image, [face])[0]
        res = net_lm.landmark_faces(image, [face], first=[first])[0].regression
        t_net.append(time.perf_counter() - t4)
        crop = crop_faces(image, crop_maps(res.upright_box[None], angles_deg=[res.inplane_deg]))
        t6 = time.perf_counter()
        net.params_from_crops(crop)
        t_fwd.append(time.perf_counter() - t6)
        t5 = time.perf_counter()
        nface = network_face(res, face.score)
        nfit = fit_landmarks(rec.model, nface, image.shape[1::-1])
        t_net_fit.append(time.perf_counter() - t5)
        net_raw[i], net_proj[i] = res.landmarks_68_px, nfit.landmarks_68_2d
        net_fit[i] = with_aflw_convention(rec.model, nfit, nface).landmarks_68_2d
        net_yaw[i], net_yaw2[i] = first.yaw_deg, res.yaw_deg
        mp_ok[i] = keeps_mediapipe(face, first, np.inf)
        c0 = time.process_time()
        aface = auto_lm.landmark_faces(image, [face])[0]
        afit = with_aflw_convention(rec.model, fit_landmarks(rec.model, aface,
                                                             image.shape[1::-1]), aface)
        t_auto.append(time.process_time() - c0)
        auto_fit[i], auto_src[i] = afit.landmarks_68_2d, landmark_source(aface)
        if i % args.texture_every == 0:
            t2 = time.perf_counter()
            texture, colors = extract_texture(rec.model, fit.verts_px, image, size=512)
            t_texture.append(time.perf_counter() - t2)
            if i % args.export_every == 0:
                from facefit.reconstruct import Reconstruction

                recon = Reconstruction(face, fit, texture, colors, {})
                t3 = time.perf_counter()
                export_reconstructions(out_dir, s.image_path, image, [recon], rec.model,
                                       FORMATS)
                t_export.append(time.perf_counter() - t3)
    stems = [s.stem for s in samples]
    yaw = np.array([s.yaw_deg for s in samples])
    gt = np.stack([s.landmarks_2d for s in samples])
    ours = evaluate_aflw2000(pred, gt, yaw, stems)
    base = evaluate_aflw2000(raw, gt, yaw, stems)
    # A scored face that hardly overlaps the annotated one (`another_face`) is another person
    # (or a false positive): the "another face = miss" rows count such an image as "no face
    # found" instead of scoring that face's landmarks against the annotated face's.
    found = np.isfinite(pred[:, 0, 0])
    wrong = another_face(pred, gt)
    matched = evaluate_aflw2000(np.where(wrong[:, None, None], np.nan, pred), gt, yaw, stems)

    ay1, ay2 = np.abs(net_yaw), np.abs(net_yaw2)

    def switch(threshold: float) -> np.ndarray:
        """The hard switch `auto` was until session 11: MediaPipe + fit where `keeps_mediapipe`
        with the first pass's yaw under 30 or the last pass's under ``threshold``, else the
        network's points (`--landmarks network`)."""
        use_mp = mp_ok & ((ay1 < min(30.0, threshold)) | (ay2 < threshold))
        return np.where(use_mp[:, None, None], pred, net_fit)

    def blend(end: float) -> np.ndarray:
        """`auto` with ``NETWORK_ONLY = end`` from the two fits' landmarks (the real blend
        fits the blended points once more: within about 0.01 of the row's NME)."""
        w = np.clip((end - ay2) / max(end - YAW_THRESHOLD, 1e-9), 0.0, 1.0)
        w = np.where(mp_ok, np.where(ay1 < YAW_THRESHOLD, 1.0, w), 0.0)[:, None, None]
        return w * pred + (1.0 - w) * net_fit

    net_alone = evaluate_aflw2000(net_raw, gt, yaw, stems)
    net_fitted = evaluate_aflw2000(net_fit, gt, yaw, stems)
    net_projected = evaluate_aflw2000(net_proj, gt, yaw, stems)
    auto_res = evaluate_aflw2000(auto_fit, gt, yaw, stems)
    auto_wrong = another_face(auto_fit, gt)
    auto_matched = evaluate_aflw2000(np.where(auto_wrong[:, None, None], np.nan, auto_fit), gt,
                                     yaw, stems)
    switch_res = evaluate_aflw2000(switch(55.0), gt, yaw, stems)
    sweep = {t: evaluate_aflw2000(blend(t), gt, yaw, stems) for t in (30, 55, 65, 70, 75, 80,
                                                                      85, 90, 100)}
    halves = np.arange(n) % 2  # 0: even-numbered images (sorted), where constants are chosen

    def ms(t: list[float]) -> str:
        return f"{1e3 * np.median(t):7.1f}" if t else "    n/a"

    thr = ours.failure_threshold
    print(f"AFLW2000-3D ({args.data.name}), {n} images, 68-point 2D NME in % of sqrt(w*h) of "
          f"the GT landmark box; per bucket: NME over predicted images / failures (no face "
          f"or NME > {100 * thr:g} %) / capped NME (every image; a failure scores "
          f"{100 * thr:g} %)")
    print(f"{'method':<28}{'0-30':>19}{'30-60':>19}{'60-90':>19}{'balanced':>10}{'mean':>7}"
          f"{'capped':>8}{'no face':>9}")
    rows = (("--landmarks mediapipe + fit", ours), ("MediaPipe raw -> 68", base),
            ("mediapipe, another face=miss", matched), ("--landmarks network", net_fitted),
            ("network + fit's projections", net_projected), ("network alone (no fit)", net_alone),
            ("auto, switch at 55 (before)", switch_res),
            (f"--landmarks auto (switch {YAW_THRESHOLD:g})" if NETWORK_ONLY == YAW_THRESHOLD
             else f"--landmarks auto ({YAW_THRESHOLD:g}-{NETWORK_ONLY:g})", auto_res),
            ("auto, another face = miss", auto_matched))
    for name, r in rows:
        cells = "".join(f"{100 * e:7.2f} /{f:>3} /{100 * c:5.2f}" for e, f, c in zip(
            r.bucket_nme_2d, r.bucket_failures, r.bucket_capped_2d, strict=True))
        print(f"{name:<28}{cells}{100 * r.balanced_2d:10.2f}{100 * r.mean_2d:7.2f}"
              f"{100 * r.balanced_capped_2d:8.2f}{len(r.missing):>5} "
              f"({100 * len(r.missing) / n:.1f}%)")
    print(f"bucket sizes: {ours.bucket_counts}, no face per bucket: {ours.bucket_missing}, "
          f"another face scored (68-point box IoU with the annotated face's under "
          f"{ANOTHER_FACE_IOU:g}): MediaPipe + fit {int(wrong.sum())}, auto "
          f"{int(auto_wrong.sum())} ({', '.join(np.array(stems)[auto_wrong])}); capped: "
          f"balanced mean of the bucket capped NMEs")
    print(f"auto blended from |yaw| {YAW_THRESHOLD:g} (MediaPipe alone below) to NETWORK_ONLY "
          f"(network alone from), swept from the two fits' landmarks (balanced NME %, buckets): "
          + "; ".join(f"{t:g}: {100 * r.balanced_2d:.2f} "
                      f"({'/'.join(f'{100 * e:.2f}' for e in r.bucket_nme_2d)})"
                      for t, r in sweep.items()))

    def half(p: np.ndarray, h: int) -> str:
        keep = halves == h
        r = evaluate_aflw2000(p[keep], gt[keep], yaw[keep])
        return (f"{100 * r.balanced_2d:.2f} ({'/'.join(f'{100 * e:.2f}' for e in r.bucket_nme_2d)}"
                f", no face {len(r.missing)})")

    print("halves (sorted images; even: model selection, odd: held out), balanced NME % "
          "(buckets): " + "; ".join(
              f"{name} even {half(p, 0)} odd {half(p, 1)}" for name, p in (
                  ("auto", auto_fit), ("auto, another face = miss",
                                       np.where(auto_wrong[:, None, None], np.nan, auto_fit)),
                  ("switch at 55", switch(55.0)), ("mediapipe", pred), ("network", net_fit))))
    print("auto: blend end sweep on the even half: " + "; ".join(
        f"{t:g}: {half(blend(t), 0).split(' (')[0]}" for t in sweep))
    mp_used = auto_src == "mediapipe"
    print(f"auto used MediaPipe's points alone on {int(mp_used.sum())}, blends on "
          f"{int((auto_src == 'blend').sum())}, the network's alone on "
          f"{int((auto_src == 'network').sum())} of {int(found.sum())} faces")
    gross = np.flatnonzero(auto_res.nme_2d > GROSS)  # NaN (no face) compares False
    print(f"auto over {100 * GROSS:g} % NME ({len(gross)} images; which points auto kept, the "
          f"NME of MediaPipe + fit / --landmarks network, the box IoU of the MediaPipe fit with "
          f"the annotated face): "
          + ", ".join(f"{stems[i]} yaw {yaw[i]:.0f} {100 * auto_res.nme_2d[i]:.0f} % "
                      f"{auto_src[i]} ({100 * ours.nme_2d[i]:.0f} / "
                      f"{100 * net_fitted.nme_2d[i]:.0f} %, IoU "
                      f"{box_iou(landmark_box(pred[i]), landmark_box(gt[i])):.2f})"
                      for i in gross))
    print("median ms per image (one thread): detection+landmarks" + ms(t_detect)
          + ", fit" + ms(t_fit) + ", network forward (one 120 px crop)" + ms(t_fwd)
          + f", network landmarks ({PASSES} passes, mirrored crops {net.flip})" + ms(t_net)
          + ", network fit"
          + ms(t_net_fit) + ", detection+landmarks+fit"
          + ms([a + b for a, b in zip(t_detect, t_fit, strict=False)])
          + ", detection+network+fit"
          + ms([a + b + c for a, b, c in zip(t_detect, t_net, t_net_fit, strict=False)])
          + ", auto landmarks+fit (CPU)" + ms(t_auto)
          + ", detection+auto+fit" + ms([a + b for a, b in zip(t_detect, t_auto, strict=False)])
          + f", texture 512²{ms(t_texture)} (n={len(t_texture)})"
          + f", export all formats{ms(t_export)} (n={len(t_export)})")
    if args.predictions:
        with atomic_path(args.predictions) as tmp:
            np.savez_compressed(tmp, stems=np.array(stems), yaw_deg=yaw, gt_px=gt,
                                mediapipe_fit_px=pred, network_px=net_fit, auto_px=auto_fit,
                                auto_source=auto_src.astype(str))
    if args.json:
        args.json.write_text(json.dumps({
            "facefit": ours.to_dict(), "mediapipe_raw": base.to_dict(),
            "network_fit": net_fitted.to_dict(), "network_alone": net_alone.to_dict(),
            "network_fit_projections": net_projected.to_dict(),
            "auto": auto_res.to_dict(), "auto_another_face_miss": auto_matched.to_dict(),
            "auto_yaw_threshold": YAW_THRESHOLD,
            "auto_network_only": NETWORK_ONLY, "auto_switch55": switch_res.to_dict(),
            "auto_sweep": {str(t): r.balanced_2d for t, r in sweep.items()},
            "auto_source": {s: str(a) for s, a in zip(stems, auto_src, strict=True)},
            "ms": {"detect": 1e3 * np.median(t_detect), "fit": 1e3 * np.median(t_fit),
                   "network": 1e3 * np.median(t_net), "forward": 1e3 * np.median(t_fwd),
                   "network_fit": 1e3 * np.median(t_net_fit),
                   "auto_cpu": 1e3 * np.median(t_auto)}}, indent=1))


if __name__ == "__main__":
    main()
