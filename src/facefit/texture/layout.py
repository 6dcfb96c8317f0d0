"""A UV layout that fills the texture square and gives the face centre the most texels:
`fill_square` (a separable fisheye warp of an existing fold-free layout) and `layout_stats`
(utilisation, fold-overs, stretch, texel density)."""

from __future__ import annotations

import numpy as np

__all__ = ["FACE_MAGNIFICATION", "face_centred_layout", "fill_square", "layout_stats"]

FACE_MAGNIFICATION = 2.0
"""Default linear magnification of the face centre (longer axis) in `face_centred_layout`."""


def _axis_warp(x: np.ndarray, centre: float, magnification: float, lo: float, hi: float
               ) -> np.ndarray:
    """Map coordinates ``x`` in [min(x), max(x)] monotonically onto [lo, hi]: each side of
    ``centre`` through ``f(t) = (1 + a) t / (1 + a t)`` of its normalised distance, the
    centre placed so that both sides have the same slope there."""
    left, right = centre - x.min(), x.max() - centre
    target = lo + (hi - lo) * left / max(left + right, 1e-12)
    a = magnification - 1.0
    d = x - centre
    t = np.where(d < 0, -d / max(left, 1e-12), d / max(right, 1e-12))
    f = (1.0 + a) * t / (1.0 + a * t)
    return np.where(d < 0, target - f * (target - lo), target + f * (hi - target))


def fill_square(uv: np.ndarray, centre: np.ndarray, magnification: float = 2.0,
                margin: float = 0.01) -> np.ndarray:
    """Warp a UV island to fill the unit square, densest and isotropic at ``centre``.

    Each axis is warped separately and monotonically (no fold-overs can appear; a layout
    symmetric about ``u = 0.5`` stays symmetric when ``centre[0] = 0.5``): the side of the
    centre is mapped through ``f(t) = (1 + a) t / (1 + a t)`` of its normalised distance,
    which magnifies the centre by ``1 + a`` (linear) relative to a uniform map and compresses
    the rim by ``1 / (1 + a)`` (Sarkar & Brown's fisheye, "Graphical fisheye views", CACM
    1994, here in texture space as in importance-driven parametrisation, Sander et al.,
    "Signal-specialized parametrization", EGWR 2002). ``magnification`` applies to the
    longer axis of the island's bounding box; the shorter one gets the magnification that
    makes both axes' scales equal at the centre (no stretch there), or none when that
    would be below 1.

    Args:
        uv: (V, 2) UVs of the island.
        centre: (2,) the point that gets the highest texel density (e.g. the nose tip's UV).
        magnification: linear centre magnification ``1 + a`` along the longer axis.
        margin: border left free on each side of the square (UV units).

    Returns:
        (V, 2) float32 UVs in ``[margin, 1 - margin]``.
    """
    p = np.asarray(uv, np.float64)
    c = np.asarray(centre, np.float64)
    extent = np.ptp(p, axis=0)
    long_axis = int(np.argmax(extent))
    mags = np.ones(2)
    mags[long_axis] = magnification
    # equal slopes at the centre: (1 + a_i) / extent_i equal for both axes
    mags[1 - long_axis] = max(magnification * extent[1 - long_axis] / extent[long_axis], 1.0)
    out = np.stack([_axis_warp(p[:, k], c[k], mags[k], margin, 1.0 - margin)
                    for k in range(2)], axis=1)
    return np.clip(out, margin, 1.0 - margin).astype(np.float32)


def face_centred_layout(uv: np.ndarray, nose_tip: int,
                        magnification: float = FACE_MAGNIFICATION) -> np.ndarray:
    """`fill_square` about the nose tip's UV, kept on the symmetry axis ``u = 0.5``: the
    layout of facefit's default model (``scripts/build_default_topology.py``)."""
    uv = np.asarray(uv, np.float64)
    return fill_square(uv, np.array([0.5, uv[nose_tip, 1]]), magnification)


def layout_stats(points: np.ndarray, triangles: np.ndarray, uv: np.ndarray,
                 centre_ids: np.ndarray | None = None) -> dict[str, float]:
    """Utilisation and stretch of a UV layout.

    Keys: ``utilisation`` (summed UV triangle area over the unit square), ``fold_overs``
    (fraction of triangles with non-positive UV area), ``anisotropy_p95`` and ``_max``
    (ratio of the singular values of the 3D → UV map per triangle), ``density_centre`` and
    ``density_rim`` (UV area per 3D area, relative to the mean, over the triangles touching
    ``centre_ids`` and over the boundary triangles).
    """
    pts = np.asarray(points, np.float64)
    tri = np.asarray(triangles, np.int64)
    uvv = np.asarray(uv, np.float64)
    a, b, c = (pts[tri[:, i]] for i in range(3))
    ua, ub, uc = (uvv[tri[:, i]] for i in range(3))
    e1, e2 = b - a, c - a
    area3 = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)
    d1, d2 = ub - ua, uc - ua
    area_uv = 0.5 * (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    # local 2D frame of each triangle: x along e1
    x = e1 / np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-12)
    n = np.cross(e1, e2)
    y = np.cross(n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12), x)
    p1 = np.c_[np.einsum("ij,ij->i", e1, x), np.zeros(len(tri))]
    p2 = np.c_[np.einsum("ij,ij->i", e2, x), np.einsum("ij,ij->i", e2, y)]
    src = np.stack([p1, p2], axis=2)  # (F, 2, 2) columns = edges in the local frame
    dst = np.stack([d1, d2], axis=2)
    ok = (area3 > 1e-12) & (np.abs(np.linalg.det(src)) > 1e-12)
    jac = dst[ok] @ np.linalg.inv(src[ok])
    sv = np.linalg.svd(jac, compute_uv=False)
    aniso = sv[:, 0] / np.maximum(sv[:, 1], 1e-12)
    dens = np.zeros(len(tri))
    dens[ok] = np.abs(area_uv[ok]) / area3[ok]
    dens /= np.abs(area_uv).sum() / area3.sum()
    edges = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1)
    key = edges[:, 0] * (len(pts) + 1) + edges[:, 1]
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    rim = (cnt[inv] == 1).reshape(-1, 3).any(1)
    out = {
        "utilisation": float(np.abs(area_uv).sum()),
        "fold_overs": float((area_uv <= 0).mean()),
        "anisotropy_p95": float(np.percentile(aniso, 95)),
        "anisotropy_max": float(aniso.max()),
        "density_rim": float(np.median(dens[rim])),
    }
    if centre_ids is not None:
        near = np.isin(tri, np.asarray(centre_ids)).any(1)
        out["density_centre"] = float(np.median(dens[near]))
    return out
