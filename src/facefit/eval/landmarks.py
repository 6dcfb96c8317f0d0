"""Landmark accuracy metrics with the published protocols.

AFLW2000-3D (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution", CVPR 2016;
the 3DDFA evaluation): 68-point NME normalised by ``sqrt(w * h)`` of the bounding box of
the ground-truth 68 landmarks, reported per |yaw| bucket [0, 30), [30, 60), [60, inf)
degrees, as the balanced mean of the three bucket means and as the plain mean over images.

300-W (Sagonas et al., "300 Faces in-the-Wild Challenge", ICCV-W 2013 / IMAVIS 2016): NME
normalised by the outer-eye-corner distance (0-based landmarks 36 and 45), the cumulative
error distribution (CED), its area under the curve up to 0.08 and the failure rate at 0.08.

Missing predictions (no face found) are never dropped silently: every result counts them,
and in the CED, AUC and failure rate they count as failures (infinite error). Mean NMEs are
over the images that have a prediction, reported together with the missing count, the
failure count (missing or NME above ``failure_threshold``, default 0.08) and a *capped* NME
that scores every image, a miss as the threshold and larger errors capped at it, so a
bucket cannot look better by losing its hard images.

NaN landmarks: a prediction that is entirely NaN is a missing prediction. With
``nan_policy="missing"`` (default) a partially NaN prediction is also treated as missing;
with ``nan_policy="omit"`` its error is averaged over the finite points only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from facefit.eval.predictions import ANOTHER_FACE_IOU, another_face
from facefit.metrics.landmarks import (
    FAILURE_THRESHOLD,
    NanPolicy,
    as_batch,
    auc_at,
    capped_nme,
    ced_curve,
    failure_count,
    failure_rate,
    nme_bbox,
    nme_interocular,
    plot_ced,
)

YAW_EDGES_DEG = (30.0, 60.0)
BUCKET_NAMES = ("[0,30)", "[30,60)", "[60,90]")


def stack_predictions(predictions: Mapping[str, np.ndarray | None], stems: Sequence[str],
                      n_points: int = 68, dims: int = 2) -> np.ndarray:
    """(N, n_points, dims) float64 array of the predictions for ``stems``; NaN where missing
    (stem absent, None, empty, or with fewer than ``dims`` columns)."""
    out = np.full((len(stems), n_points, dims), np.nan)
    for i, stem in enumerate(stems):
        p = predictions.get(stem)
        if p is None:
            continue
        p = np.asarray(p, np.float64)
        if p.size == 0 or p.ndim != 2 or p.shape[1] < dims:
            continue
        if p.shape[0] != n_points:
            raise ValueError(f"prediction for {stem!r} has {p.shape[0]} points, need {n_points}")
        out[i] = p[:, :dims]
    return out


def yaw_bucket(yaw_deg: np.ndarray | float) -> np.ndarray:
    """Bucket index of |yaw| in degrees: 0 for [0, 30), 1 for [30, 60), 2 for [60, inf)."""
    return np.digitize(np.abs(np.asarray(yaw_deg, np.float64)), YAW_EDGES_DEG)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _json_float(v: float) -> float | None:
    """``v`` as a JSON number, None where it is NaN or infinite."""
    return float(v) if np.isfinite(v) else None


@dataclass
class AFLW2000Result:
    """AFLW2000-3D scores. NMEs are fractions (multiply by 100 for the usual %).

    Attributes:
        stems: (N,) image stems; nme_2d, nme_3d, yaw_deg: (N,) per image (NaN = missing).
        bucket_nme_2d / bucket_nme_3d: mean NME per yaw bucket over predicted images.
        bucket_counts: images per bucket; bucket_missing: missing predictions per bucket.
        balanced_2d / balanced_3d: mean of the three bucket means; mean_2d / mean_3d: plain
            mean over predicted images.
        missing: stems with no prediction.
        failure_threshold: NME above which an image fails; bucket_failures: failures
            (missing included) per bucket; bucket_capped_2d, balanced_capped_2d,
            mean_capped_2d: 2D NME over every image with misses and failures scored as the
            threshold (`capped_nme`).
        another_face: stems whose scored face is another person's (`another_face`: its box
            hardly overlaps the annotated face's, which was not found); bucket_matched_2d,
            balanced_matched_2d: the 2D NME with those images counted as misses instead.
    """

    stems: list[str]
    nme_2d: np.ndarray
    nme_3d: np.ndarray
    yaw_deg: np.ndarray
    bucket_nme_2d: list[float]
    bucket_nme_3d: list[float]
    bucket_counts: list[int]
    bucket_missing: list[int]
    balanced_2d: float
    balanced_3d: float
    mean_2d: float
    mean_3d: float
    missing: list[str] = field(default_factory=list)
    failure_threshold: float = FAILURE_THRESHOLD
    bucket_failures: list[int] = field(default_factory=list)
    bucket_capped_2d: list[float] = field(default_factory=list)
    balanced_capped_2d: float = float("nan")
    mean_capped_2d: float = float("nan")
    another_face: list[str] = field(default_factory=list)
    bucket_matched_2d: list[float] = field(default_factory=list)
    balanced_matched_2d: float = float("nan")

    def table(self) -> str:
        """A plain-text table (NME in % of sqrt(w·h) of the ground-truth landmark box)."""
        def pct(v: float) -> str:
            return "   n/a" if not np.isfinite(v) else f"{100 * v:6.3f}"

        t = self.failure_threshold
        rows = [f"{'AFLW2000-3D':<14}{'images':>8}{'missing':>9}{f'NME>{t:g}':>10}"
                f"{'NME2D %':>9}{'NME3D %':>9}{'capped %':>10}"]
        fails = self.bucket_failures or [0] * len(BUCKET_NAMES)
        capped = self.bucket_capped_2d or [float("nan")] * len(BUCKET_NAMES)
        for name, n, m, f, e2, e3, c in zip(BUCKET_NAMES, self.bucket_counts,
                                            self.bucket_missing, fails, self.bucket_nme_2d,
                                            self.bucket_nme_3d, capped, strict=True):
            rows.append(f"{'yaw ' + name:<14}{n:>8}{m:>9}{f:>10}{pct(e2):>9}{pct(e3):>9}"
                        f"{pct(c):>10}")
        n, m, f = len(self.stems), len(self.missing), sum(fails)
        rows.append(f"{'balanced':<14}{n:>8}{m:>9}{f:>10}{pct(self.balanced_2d):>9}"
                    f"{pct(self.balanced_3d):>9}{pct(self.balanced_capped_2d):>10}")
        rows.append(f"{'mean':<14}{n:>8}{m:>9}{f:>10}{pct(self.mean_2d):>9}"
                    f"{pct(self.mean_3d):>9}{pct(self.mean_capped_2d):>10}")
        rows.append(f"NME: mean landmark error / sqrt(w*h) of the GT 68-landmark box, in %, over "
                    f"predicted images; NME>{t:g}: failures, misses included; capped: every "
                    f"image, a miss or failure scored as {100 * t:g} %")
        if m:
            rows.append(f"{m} image(s) without a prediction (no face): excluded from the NME "
                        "columns, counted as failures and in 'capped', listed in 'missing'")
        if self.another_face:
            per = " / ".join(pct(v).strip() for v in self.bucket_matched_2d)
            rows.append(f"{len(self.another_face)} image(s) scored on another person's face "
                        f"(box IoU with the annotated face under {ANOTHER_FACE_IOU:g}: "
                        f"{', '.join(self.another_face)}); counted as misses instead: balanced "
                        f"NME2D {pct(self.balanced_matched_2d).strip()} % ({per}), "
                        f"{m + len(self.another_face)} image(s) without the annotated face")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        """JSON-serialisable summary plus per-image values (NaN as None)."""
        f = _json_float
        return {
            "protocol": "AFLW2000-3D (3DDFA): NME / sqrt(w*h) of GT 68-landmark box",
            "buckets": list(BUCKET_NAMES), "bucket_counts": self.bucket_counts,
            "bucket_missing": self.bucket_missing,
            "bucket_nme_2d": [f(v) for v in self.bucket_nme_2d],
            "bucket_nme_3d": [f(v) for v in self.bucket_nme_3d],
            "balanced_2d": f(self.balanced_2d), "balanced_3d": f(self.balanced_3d),
            "mean_2d": f(self.mean_2d), "mean_3d": f(self.mean_3d),
            "failure_threshold": self.failure_threshold,
            "bucket_failures": self.bucket_failures,
            "bucket_capped_2d": [f(v) for v in self.bucket_capped_2d],
            "balanced_capped_2d": f(self.balanced_capped_2d),
            "mean_capped_2d": f(self.mean_capped_2d),
            "num_images": len(self.stems), "num_missing": len(self.missing),
            "missing": self.missing, "another_face": self.another_face,
            "bucket_nme_2d_another_face_miss": [f(v) for v in self.bucket_matched_2d],
            "balanced_2d_another_face_miss": f(self.balanced_matched_2d),
            "per_image": {s: {"nme_2d": f(a), "nme_3d": f(b), "yaw_deg": float(y)}
                          for s, a, b, y in zip(self.stems, self.nme_2d, self.nme_3d,
                                                self.yaw_deg, strict=True)},
        }


    def plot_ced(self, path: str, label: str = "facefit") -> None:
        """The 2D CED curve (NME by the landmark box, missing images as failures) as a PNG."""
        plot_ced({label: self.nme_2d}, path, self.failure_threshold,
                 title="AFLW2000-3D cumulative error distribution (2D)",
                 xlabel="NME (normalised by the ground-truth landmark box size)")

    def plot_yaw_bars(self, path: str) -> None:
        """Bars of the 2D and 3D NME (%) per yaw bucket and balanced, with each bucket's image
        count and missing images under its name, as a PNG (matplotlib, Agg backend)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = [f"{b}\n{n} images, {m} missing" for b, n, m in
                 zip(BUCKET_NAMES, self.bucket_counts, self.bucket_missing, strict=True)]
        names.append("balanced")
        v2 = 100 * np.array([*self.bucket_nme_2d, self.balanced_2d], np.float64)
        v3 = 100 * np.array([*self.bucket_nme_3d, self.balanced_3d], np.float64)
        x = np.arange(len(names))
        fig = Figure(figsize=(6, 4), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for off, vals, label in ((-0.2, v2, "2D"), (0.2, v3, "3D")):
            bars = ax.bar(x + off, np.nan_to_num(vals), width=0.4, label=label)
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=8)
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel("NME (% of the landmark box size)")
        ax.set_title("AFLW2000-3D NME per |yaw| bucket")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)


def evaluate_aflw2000(pred: np.ndarray, gt: np.ndarray, yaw_deg: np.ndarray,
                      stems: Sequence[str] | None = None,
                      nan_policy: NanPolicy = "missing",
                      failure_threshold: float = FAILURE_THRESHOLD) -> AFLW2000Result:
    """Score AFLW2000-3D predictions.

    Args:
        pred: (N, 68, 2) or (N, 68, 3) predicted landmarks in pixels (z towards the viewer);
            NaN rows for missing predictions. 3D NME is NaN when pred has no z.
        gt: (N, 68, 3) ground truth (``pt3d_68`` transposed) or (N, 68, 2).
        yaw_deg: (N,) ground-truth yaw in degrees (``Pose_Para[0][1]`` converted).
        stems: image names (default ``"0"``, ``"1"``, ...).
        failure_threshold: 2D NME above which an image fails (`capped_nme`).
    """
    pred, gt = as_batch(pred), as_batch(gt)
    yaw = np.asarray(yaw_deg, np.float64).reshape(-1)
    n = gt.shape[0]
    stems = [str(i) for i in range(n)] if stems is None else list(stems)
    nme2 = nme_bbox(pred[..., :2], gt[..., :2], nan_policy)
    if pred.shape[-1] >= 3 and gt.shape[-1] >= 3:
        nme3 = nme_bbox(pred[..., :3], gt[..., :3], nan_policy)
        nme3[~np.isfinite(nme2)] = np.nan
    else:
        nme3 = np.full(n, np.nan)
    buckets = yaw_bucket(yaw)
    b2 = [_nanmean(nme2[buckets == b]) for b in range(3)]
    b3 = [_nanmean(nme3[buckets == b]) for b in range(3)]
    missing_mask = ~np.isfinite(nme2)
    capped = capped_nme(nme2, failure_threshold)
    bc = [float(capped[buckets == b].mean()) if (buckets == b).any() else float("nan")
          for b in range(3)]
    wrong = another_face(pred, gt)
    bm = [_nanmean(np.where(wrong, np.nan, nme2)[buckets == b]) for b in range(3)]
    return AFLW2000Result(
        stems=stems, nme_2d=nme2, nme_3d=nme3, yaw_deg=yaw, bucket_nme_2d=b2, bucket_nme_3d=b3,
        bucket_counts=[int((buckets == b).sum()) for b in range(3)],
        bucket_missing=[int((missing_mask & (buckets == b)).sum()) for b in range(3)],
        balanced_2d=float(np.mean(b2)), balanced_3d=float(np.mean(b3)),
        mean_2d=_nanmean(nme2), mean_3d=_nanmean(nme3),
        missing=[s for s, m in zip(stems, missing_mask, strict=True) if m],
        failure_threshold=failure_threshold,
        bucket_failures=[failure_count(nme2[buckets == b], failure_threshold) for b in range(3)],
        bucket_capped_2d=bc, balanced_capped_2d=float(np.mean(bc)),
        mean_capped_2d=float(capped.mean()) if n else float("nan"),
        another_face=[s for s, w in zip(stems, wrong, strict=True) if w],
        bucket_matched_2d=bm, balanced_matched_2d=float(np.mean(bm)),
    )


@dataclass
class Landmarks300WResult:
    """300-W scores. NMEs are fractions (x100 for %).

    Attributes:
        stems, nme: (N,) per image (NaN = missing). mean_nme / median_nme: over predicted
        images. auc / failure: at ``threshold`` with missing images counted as failures.
        ced_thresholds, ced_fraction: the CED curve.
    """

    stems: list[str]
    nme: np.ndarray
    mean_nme: float
    median_nme: float
    auc: float
    failure: float
    threshold: float
    ced_thresholds: np.ndarray
    ced_fraction: np.ndarray
    missing: list[str] = field(default_factory=list)

    def table(self, name: str = "300-W") -> str:
        """A plain-text table (NME and failure rate in %)."""
        def pct(v: float) -> str:
            return "   n/a" if not np.isfinite(v) else f"{100 * v:7.3f}"

        t = self.threshold
        head = (f"{name:<12}{'images':>8}{'missing':>9}{f'NME>{t:g}':>10}{'NME %':>9}"
                f"{'median %':>10}{'capped %':>10}{f'AUC@{t:g}':>10}{f'FR@{t:g} %':>11}")
        row = (f"{'outer-eye':<12}{len(self.stems):>8}{len(self.missing):>9}"
               f"{failure_count(self.nme, t):>10}{pct(self.mean_nme):>9}"
               f"{pct(self.median_nme):>10}{pct(float(capped_nme(self.nme, t).mean())):>10}"
               f"{self.auc:>10.4f}{pct(self.failure):>11}")
        lines = [head, row, f"NME: mean landmark error / outer-eye-corner distance (ids 36, "
                 f"45), in %, over predicted images; NME>{t:g}: failures, misses included; "
                 f"capped: every image, a miss or failure scored as {100 * t:g} %"]
        if self.missing:
            lines.append(f"{len(self.missing)} image(s) without a prediction (no face): excluded "
                         "from NME, counted as failures in AUC/FR/CED")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-serialisable summary plus per-image values (NaN as None)."""
        f = _json_float
        return {
            "protocol": "300-W: NME / outer-eye-corner distance (ids 36, 45)",
            "num_images": len(self.stems), "num_missing": len(self.missing),
            "mean_nme": f(self.mean_nme), "median_nme": f(self.median_nme),
            "threshold": self.threshold, "auc": f(self.auc), "failure_rate": f(self.failure),
            "num_failures": failure_count(self.nme, self.threshold),
            "capped_mean_nme": f(float(capped_nme(self.nme, self.threshold).mean()))
            if len(self.nme) else None,
            "missing": self.missing,
            "per_image": {s: f(v) for s, v in zip(self.stems, self.nme, strict=True)},
        }

    def plot_ced(self, path: str, label: str = "facefit") -> None:
        """Write the CED curve as a PNG (matplotlib, Agg backend)."""
        plot_ced({label: self.nme}, path, self.threshold)


def evaluate_300w(pred: np.ndarray, gt: np.ndarray, stems: Sequence[str] | None = None,
                  threshold: float = 0.08, nan_policy: NanPolicy = "missing"
                  ) -> Landmarks300WResult:
    """Score 300-W style predictions: (N, 68, 2) pred (NaN = missing) against (N, 68, 2) GT."""
    pred, gt = as_batch(pred)[..., :2], as_batch(gt)[..., :2]
    stems = [str(i) for i in range(gt.shape[0])] if stems is None else list(stems)
    nme = nme_interocular(pred, gt, nan_policy)
    finite = nme[np.isfinite(nme)]
    t, frac = ced_curve(nme, threshold)
    return Landmarks300WResult(
        stems=stems, nme=nme, mean_nme=_nanmean(nme),
        median_nme=float(np.median(finite)) if finite.size else float("nan"),
        auc=auc_at(nme, threshold), failure=failure_rate(nme, threshold), threshold=threshold,
        ced_thresholds=t, ced_fraction=frac,
        missing=[s for s, v in zip(stems, nme, strict=True) if not np.isfinite(v)],
    )
