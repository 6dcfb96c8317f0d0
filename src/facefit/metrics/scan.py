"""NoW-style geometric error between a reconstructed mesh and a 3D scan.

Protocol after Sanyal et al., "Learning to Regress 3D Face Shape and Expression from an Image
without 3D Supervision", CVPR 2019 (the NoW benchmark):

1. crop the scan to the points within ``crop_radius`` (95 mm) of its nose tip landmark;
2. align the reconstruction to the scan by a similarity transform from 7 corresponding
   landmarks (Umeyama, "Least-squares estimation of transformation parameters between two
   point patterns", TPAMI 1991);
3. refine the similarity (rotation, translation, scale) ICP-style, minimising the distance
   from the cropped scan points to the reconstructed surface;
4. report the scan-to-mesh point-to-surface distances (median, mean, std; scan units, mm).

The 7 landmarks, in this order: right-eye outer corner, right-eye inner corner, left-eye
inner corner, left-eye outer corner (subject's right/left), nose tip, right and left mouth
corners -- ids 36, 39, 42, 45, 30, 48, 54 of the 68-point iBUG layout (`NOW_IBUG68_IDS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from facefit.fit.core.rotation import Similarity, rodrigues, umeyama
from facefit.fit.core.solver import descend

__all__ = ["NOW_IBUG68_IDS", "Similarity", "SurfaceQuery", "closest_points_on_triangles",
           "umeyama"]

NOW_IBUG68_IDS = np.array([36, 39, 42, 45, 30, 48, 54])
NOSE_TIP_INDEX = 4


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                                ) -> np.ndarray:
    """Closest point to each of (N, 3) ``points`` on the triangles (N, 3) ``a``, ``b``, ``c``
    (row-wise; the Voronoi-region method, Ericson, "Real-Time Collision Detection", 5.1.5)."""
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = points - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = points - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        out = a + ab * (vb / denom)[:, None] + ac * (vc / denom)[:, None]  # interior
        # Regions in Ericson's order of precedence, lowest first (later ones overwrite).
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        regions = [
            ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0),
             lambda m: b[m] + (c[m] - b[m]) * t_bc[m, None]),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), lambda m: a[m] + ac[m] * (d2 / (d2 - d6))[m, None]),
            ((d6 >= 0) & (d5 <= d6), lambda m: c[m]),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), lambda m: a[m] + ab[m] * (d1 / (d1 - d3))[m, None]),
            ((d3 >= 0) & (d4 <= d3), lambda m: b[m]),
            ((d1 <= 0) & (d2 <= 0), lambda m: a[m]),
        ]
        for mask, value in regions:
            if mask.any():
                out[mask] = value(mask)
    bad = ~np.isfinite(out).all(axis=1)  # degenerate triangles: nearest vertex
    if bad.any():
        cand = np.stack([a[bad], b[bad], c[bad]], axis=1)
        k = np.linalg.norm(cand - points[bad, None], axis=2).argmin(axis=1)
        out[bad] = cand[np.arange(len(k)), k]
    return out


class SurfaceQuery:
    """Point-to-surface distances to a triangle mesh without spatial-index dependencies.

    Candidate triangles come from a KD-tree over dense barycentric samples of every triangle
    (``k`` nearest samples); the exact closest point is then computed on each candidate.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, samples_per_edge: int = 3,
                 k: int = 12) -> None:
        self.vertices = np.asarray(vertices, np.float64)
        self.triangles = np.asarray(triangles, np.int64)
        n = samples_per_edge
        bary = np.array([(i, j, n - i - j) for i in range(n + 1) for j in range(n + 1 - i)],
                        np.float64) / n
        bary = 0.9 * bary + 0.1 / 3  # keep samples inside so each maps to its own triangle
        tri = self.vertices[self.triangles]  # (F, 3, 3)
        samples = np.einsum("sk,fkd->fsd", bary, tri).reshape(-1, 3)
        self._owner = np.repeat(np.arange(len(self.triangles)), len(bary))
        self._tree = cKDTree(samples)
        self.k = min(k, len(samples))

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For (N, 3) points: closest surface points (N, 3), distances (N,), triangle ids (N,)."""
        pts = np.asarray(points, np.float64)
        _, idx = self._tree.query(pts, k=self.k)
        idx = idx.reshape(len(pts), -1)
        cand = self._owner[idx]  # (N, k) triangle ids (duplicates are harmless)
        tri = self.triangles[cand.reshape(-1)]
        rep = np.repeat(pts, cand.shape[1], axis=0)
        cp = closest_points_on_triangles(rep, self.vertices[tri[:, 0]], self.vertices[tri[:, 1]],
                                         self.vertices[tri[:, 2]])
        d = np.linalg.norm(cp - rep, axis=1).reshape(len(pts), -1)
        best = d.argmin(axis=1)
        rows = np.arange(len(pts))
        flat = rows * cand.shape[1] + best
        return cp[flat], d[rows, best], cand[rows, best]


@dataclass
class ScanErrorResult:
    """NoW-style scan-to-mesh error.

    Attributes:
        distances: (M,) distance of each cropped scan point to the aligned mesh (scan units, mm).
        scan_points: (M, 3) the cropped scan points.
        median, mean, std: of ``distances``.
        transform: the similarity mapping the reconstruction into the scan frame.
        landmark_rmse: RMS 7-landmark residual after the Procrustes step.
        iterations: refinement iterations run.
    """

    distances: np.ndarray
    scan_points: np.ndarray
    median: float
    mean: float
    std: float
    transform: Similarity
    landmark_rmse: float
    iterations: int

    def table(self) -> str:
        return (f"{'NoW-style scan error':<22}{'points':>8}{'median mm':>11}{'mean mm':>9}"
                f"{'std mm':>8}\n{'scan-to-mesh':<22}{len(self.distances):>8}"
                f"{self.median:>11.3f}{self.mean:>9.3f}{self.std:>8.3f}")

    def to_dict(self) -> dict:
        t = self.transform
        return {"protocol": "NoW-style (Sanyal et al. CVPR 2019) scan-to-mesh distance, mm",
                "num_points": int(len(self.distances)), "median_mm": self.median,
                "mean_mm": self.mean, "std_mm": self.std, "landmark_rmse": self.landmark_rmse,
                "iterations": self.iterations, "scale": t.scale,
                "rotation": t.rotation.tolist(), "translation": t.translation.tolist()}


def crop_scan(scan_vertices: np.ndarray, center: np.ndarray, radius: float = 95.0) -> np.ndarray:
    """Boolean (V,) mask of scan vertices within ``radius`` (mm) of ``center`` (3,)."""
    return np.linalg.norm(np.asarray(scan_vertices) - np.asarray(center), axis=1) <= radius


def scan_error(mesh_vertices: np.ndarray, mesh_triangles: np.ndarray,
               mesh_landmarks: np.ndarray, scan_vertices: np.ndarray, scan_landmarks: np.ndarray,
               crop_radius: float = 95.0, nose_index: int = NOSE_TIP_INDEX,
               max_iterations: int = 30, tol: float = 1e-6, trim: float | None = None,
               fit_points: int | None = None) -> ScanErrorResult:
    """NoW-style error of a reconstruction against a scan (see the module docstring).

    Args:
        mesh_vertices: (V, 3) reconstruction (any units and frame); mesh_triangles (F, 3).
        mesh_landmarks: (7, 3) reconstruction landmarks (same frame as the mesh).
        scan_vertices: (S, 3) scan points in mm; scan_landmarks: (7, 3) in mm.
        crop_radius: mm around the scan nose tip (``scan_landmarks[nose_index]``).
        max_iterations, tol: refinement stops when the mean squared distance improves by
            less than ``tol`` (relative). Each iteration takes the better of a point-to-plane
            Gauss-Newton step and a point-to-point Umeyama step, and only if it lowers the
            mean squared scan-to-surface distance (`facefit.fit.core.descend`).
        trim: if set, pairs farther than ``trim`` mm are ignored while *fitting* (never when
            reporting); None follows NoW (all cropped points).
        fit_points: if set, the alignment is refined on a fixed random subset of at most
            this many cropped scan points (faster); distances are reported for all of them.
    """
    scan_landmarks = np.asarray(scan_landmarks, np.float64)
    mesh_landmarks = np.asarray(mesh_landmarks, np.float64)
    if scan_landmarks.shape != mesh_landmarks.shape or scan_landmarks.shape[1] != 3:
        raise ValueError(f"landmarks must both be (K, 3), got {mesh_landmarks.shape} "
                         f"and {scan_landmarks.shape}")
    scan = np.asarray(scan_vertices, np.float64)
    scan = scan[crop_scan(scan, scan_landmarks[nose_index], crop_radius)]
    if len(scan) == 0:
        raise ValueError("no scan points within the crop radius of the nose tip")
    verts = np.asarray(mesh_vertices, np.float64)
    tris = np.asarray(mesh_triangles, np.int64)

    sim = umeyama(mesh_landmarks, scan_landmarks)
    lm_rmse = float(np.sqrt(((sim.apply(mesh_landmarks) - scan_landmarks) ** 2).sum(1).mean()))
    query = SurfaceQuery(verts, tris)
    normals = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)

    everything = scan
    if fit_points is not None and len(scan) > fit_points:
        pick = np.random.default_rng(0).choice(len(scan), fit_points, replace=False)
        scan = scan[np.sort(pick)]

    def pair(sim: Similarity, pts: np.ndarray) -> _Paired:
        # Query in the mesh frame (one KD-tree): map scan points back by the inverse.
        closest, _, tri = query.closest(sim.inverse_apply(pts))
        return _Paired(sim, np.linalg.norm(sim.apply(closest) - pts, axis=1), closest, tri)

    def candidates(cur: _Paired) -> tuple[float, list[tuple[float, _Paired]]]:
        keep = np.ones(len(cur.distances), bool) if trim is None else cur.distances <= trim
        if keep.sum() < 7:
            return float("nan"), []
        steps = (_point_to_plane_step(cur.sim, cur.closest[keep], normals[cur.tri[keep]],
                                      scan[keep]),
                 umeyama(cur.closest[keep], scan[keep]))
        paired = [pair(step, scan) for step in steps]
        return (float(np.mean(cur.distances[keep] ** 2)),
                [(float(np.mean(p.distances[keep] ** 2)), p) for p in paired])

    fit = descend(candidates, pair(sim, scan), max_iterations, tol)
    sim = fit.state.sim
    d = pair(sim, everything).distances if scan is not everything else fit.state.distances
    return ScanErrorResult(d, everything, float(np.median(d)), float(d.mean()), float(d.std()),
                           sim, lm_rmse, fit.iterations)


class _Paired(NamedTuple):
    """A similarity with each scan point's distance (M,), closest mesh point (M, 3, mesh
    frame) and its triangle (M,)."""

    sim: Similarity
    distances: np.ndarray
    closest: np.ndarray
    tri: np.ndarray


def _point_to_plane_step(sim: Similarity, closest: np.ndarray, normals: np.ndarray,
                         scan: np.ndarray) -> Similarity:
    """One Gauss-Newton step of the point-to-plane objective
    ``sum(((s R q + t - p) . n)^2)`` over a small rotation, scale change and translation
    (about the matched points' centroid), by linear least squares on the rows.

    ``closest``: (M, 3) matched mesh points q (mesh frame); ``normals``: (M, 3) their unit
    triangle normals (mesh frame); ``scan``: (M, 3) scan points p.
    """
    c = sim.apply(closest)
    n = normals @ sim.rotation.T
    g = c.mean(axis=0)
    cc = c - g
    jac = np.concatenate([np.cross(cc, n), (n * cc).sum(1, keepdims=True), n], axis=1)
    x = np.linalg.lstsq(jac, ((scan - c) * n).sum(1), rcond=None)[0]
    ds, tau = float(x[3]), x[4:]
    dr = rodrigues(x[:3])[0]
    f = 1.0 + ds
    return Similarity(sim.scale * f, dr @ sim.rotation,
                      f * dr @ (sim.translation - g) + g + tau)


def plot_error_map(result: ScanErrorResult, path: str | Path, vmax: float | None = None,
                   view_rotation: np.ndarray | None = None) -> None:
    """Write a per-point error heat map of the cropped scan (frontal scatter, mm colour bar).

    ``view_rotation`` (3, 3) maps scan coordinates to view (x right, y up); default identity.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = result.scan_points if view_rotation is None else result.scan_points @ view_rotation.T
    order = np.argsort(pts[:, 2])  # draw far points first
    vmax = float(np.percentile(result.distances, 99)) if vmax is None else vmax
    fig = Figure(figsize=(5, 5.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    sc = ax.scatter(pts[order, 0], pts[order, 1], c=result.distances[order], s=2, cmap="jet",
                    vmin=0.0, vmax=max(vmax, 1e-6), linewidths=0)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"scan-to-mesh: median {result.median:.2f} mm, mean {result.mean:.2f} mm",
                 fontsize=9)
    fig.colorbar(sc, ax=ax, label="mm", shrink=0.8)
    fig.tight_layout()
    fig.savefig(str(path))
