"""Triangulation, UV parametrisation and mirror map for a face-mask point set.

The default model ships vertices only. `build_face_topology` meshes them by unfolding the
face onto the plane and triangulating there: a copy of the points is smoothed with the
umbrella operator on a k-nearest-neighbour graph (Taubin 1995, "A signal processing approach
to fair surface design", lambda|mu) so that pockets and flaps (nostrils, ear folds) flatten
into a fold-free shell; that shell is unfolded in spherical coordinates
(azimuth, elevation, both times the radius) about a point behind the fitted head sphere's
centre, and 2D Delaunay-triangulated. Triangles long or degenerate in 3D (mask concavities)
are dropped unless they fill a hole, and the largest connected piece is kept. Where the
real surface has pockets (nostrils, eye and lip creases, the ear's concha), one sheet over
the unfolding folds back on itself in 3D: the vertices of folded triangles are left out and
the rest re-triangulated until no triangle folds (`folded_triangles`). Optionally the open
border is then cut along a smooth curve of the unfolding. Left-out vertices stay in the point
set, referenced by no triangle (but vertices that must be kept, e.g. landmarks, which are
inserted into a nearby triangle). The mesh is edge-manifold, consistently oriented and free
of UV fold-overs.

Frame: x to the face's left (viewer's right), y up, z out of the face; units are mm.
Everything is vectorised numpy/scipy and deterministic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

__all__ = [
    "boundary_turning",
    "build_face_topology",
    "fit_sphere",
    "folded_triangles",
    "mesh_quality",
    "mirror_vertex_ids",
    "signed_area_2d",
    "symmetry_plane_x",
]

_UV_MARGIN = 0.02  # UV border on the longer side, in [0, 1] units


def symmetry_plane_x(points: np.ndarray, iterations: int = 5) -> float:
    """The x of the face's left/right symmetry plane ``x = c`` (mm).

    Starts at the median x and refines ``c`` by the median offset between each reflected
    vertex ``(2c - x, y, z)`` and its nearest neighbour (a 1-parameter ICP).
    """
    from scipy.spatial import cKDTree
    pts = np.asarray(points, np.float64)
    tree = cKDTree(pts)
    c = float(np.median(pts[:, 0]))
    for _ in range(iterations):
        refl = pts.copy()
        refl[:, 0] = 2.0 * c - refl[:, 0]
        _, nn = tree.query(refl)
        c += 0.5 * float(np.median(pts[nn, 0] - refl[:, 0]))
    return c


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Algebraic least-squares sphere through (N, 3) points: (centre (3,), radius)."""
    pts = np.asarray(points, np.float64)
    a = np.c_[2.0 * pts, np.ones(len(pts))]
    sol = np.linalg.lstsq(a, (pts**2).sum(1), rcond=None)[0]
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def _frame_centre(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Unfolding centre (sphere centre moved onto the symmetry plane) and sphere radius."""
    centre, radius = fit_sphere(points)
    centre[0] = symmetry_plane_x(points)
    return centre, radius


def _unfold(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """(V, 2) spherical unfolding about ``centre``: R * (azimuth, elevation) (mm).

    Azimuth is 0 towards +z and grows towards +x; elevation is positive upwards (+y).
    """
    r = points - centre
    az = np.arctan2(r[:, 0], r[:, 2])
    el = np.arctan2(r[:, 1], np.hypot(r[:, 0], r[:, 2]))
    return np.c_[az, el] * radius


def _edges(triangles: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges (a->b, b->c, c->a) of (F, 3) triangles."""
    return triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def _triangle_geometry(points: np.ndarray, triangles: np.ndarray):
    """Per-triangle (max edge length, area, unnormalised normal)."""
    a, b, c = (points[triangles[:, i]] for i in range(3))
    lengths = np.stack([np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1),
                        np.linalg.norm(a - c, axis=1)], 1)
    normal = np.cross(b - a, c - a)
    return lengths.max(1), 0.5 * np.linalg.norm(normal, axis=1), normal


def signed_area_2d(uv: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F,) signed areas of 2D triangles (positive counter-clockwise in x-right, y-up axes)
    of points ``uv`` (N, 2) and corner ids ``triangles`` (F, 3)."""
    a, b, c = (uv[triangles[:, i]] for i in range(3))
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1])
                  - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _vertex_components(n_vertices: int, triangles: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the vertex graph spanned by triangle edges."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    e = _edges(triangles)
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])),
                            shape=(n_vertices, n_vertices))
    return connected_components(adj, directed=False)


def plane_barycentric(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                      ) -> np.ndarray:
    """(N, 3) barycentric coordinates of the projection of p onto the triangles' planes."""
    v0, v1, v2 = b - a, c - a, p - a
    d00 = (v0 * v0).sum(1)
    d01 = (v0 * v1).sum(1)
    d11 = (v1 * v1).sum(1)
    d20 = (v2 * v0).sum(1)
    d21 = (v2 * v1).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-18)
    w1 = (d11 * d20 - d01 * d21) / den
    w2 = (d00 * d21 - d01 * d20) / den
    return np.stack([1.0 - w1 - w2, w1, w2], 1)


def _insert_stranded(points: np.ndarray, uv: np.ndarray, triangles: np.ndarray,
                     which: np.ndarray | None = None, max_rounds: int = 200
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Insert every vertex (of ``which``, default all) used by no triangle into its nearest
    triangle (1-to-3 split).

    Each round gives every triangle at most one new vertex (the closest candidate, by
    distance to the triangle's centroid); the inserted vertex gets a UV strictly inside the
    host triangle's UV (clamped barycentrics of its 3D projection), so the three children
    keep the host's orientation in 3D and in UV. Returns (triangles, uv).
    """
    from scipy.spatial import cKDTree
    n = len(points)
    uv = uv.copy()
    for _ in range(max_rounds):
        used = np.zeros(n, bool)
        used[triangles.ravel()] = True
        if which is not None:
            mask = np.zeros(n, bool)
            mask[np.asarray(which, np.int64)] = True
            used |= ~mask
        stranded = np.flatnonzero(~used)
        if stranded.size == 0:
            break
        centroids = points[triangles].mean(1)
        k = min(12, len(triangles))
        _, cand = cKDTree(centroids).query(points[stranded], k=k)
        cand = cand.reshape(len(stranded), k)
        corners = points[triangles[cand]]  # (S, k, 3, 3)
        reach = np.linalg.norm(corners - points[stranded][:, None, None], axis=3).max(2)
        bary = plane_barycentric(
            np.repeat(points[stranded], k, 0), *(corners[:, :, i].reshape(-1, 3) for i in range(3))
        ).reshape(len(stranded), k, 3)
        # prefer the triangle whose children are short and whose plane the vertex projects into
        score = reach * (1.0 + 4.0 * np.clip(-bary.min(2), 0.0, None))
        best = np.argmin(score, 1)
        dist = score[np.arange(len(stranded)), best]
        host = cand[np.arange(len(stranded)), best]
        # one insertion per host triangle per round: the closest stranded vertex wins
        order = np.lexsort((stranded, dist, host))
        first = np.r_[True, host[order][1:] != host[order][:-1]]
        sel, hosts = stranded[order][first], host[order][first]
        t = triangles[hosts]
        bary = plane_barycentric(points[sel], *(points[t[:, i]] for i in range(3)))
        bary = np.clip(bary, 0.1, None)
        bary /= bary.sum(1, keepdims=True)
        uv[sel] = np.einsum("nk,nkd->nd", bary, uv[t])
        s = sel[:, None]
        children = np.concatenate([np.c_[t[:, [0, 1]], s], np.c_[t[:, [1, 2]], s],
                                   np.c_[t[:, [2, 0]], s]])
        keep = np.ones(len(triangles), bool)
        keep[hosts] = False
        triangles = np.concatenate([triangles[keep], children])
    return triangles, uv


def _knn_graph(points: np.ndarray, k: int) -> sparse.csr_matrix:
    """Symmetric 0/1 k-nearest-neighbour adjacency (V, V) of a point set."""
    from scipy import sparse
    from scipy.spatial import cKDTree
    n = len(points)
    _, idx = cKDTree(points).query(points, k=k + 1)
    adj = sparse.coo_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), idx[:, 1:].ravel())),
                            shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    return adj.tocsr()


def _smooth(points: np.ndarray, adj: sparse.csr_matrix, iterations: int,
            mu: float = -0.53) -> np.ndarray:
    """Taubin's lambda|mu smoothing on a graph: x <- x + 0.5 L x, then x <- x + mu L x, with
    the umbrella operator L x = mean(neighbours) - x (Taubin 1995).

    Pulls pockets and flaps (nostrils, ear folds) into a fold-free shell without crossing the
    sheets over (a linear diffusion keeps the order of the low-frequency modes); the
    un-shrinking ``mu`` step keeps the border rows where they are (plain diffusion draws the
    outermost rows of the open border inwards over the next ones, which folds the
    unfolding there). ``mu = 0`` is the damped umbrella smoothing x <- (x + mean) / 2.
    """
    from scipy import sparse
    walk = sparse.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj
    q = points.copy()
    for _ in range(iterations):
        q = 0.5 * (q + walk @ q)
        if mu:
            q = q + mu * (walk @ q - q)
    return q


def folded_triangles(points: np.ndarray, triangles: np.ndarray, rings: int = 2
                     ) -> np.ndarray:
    """(F,) bool: triangles folded against the surrounding surface.

    A triangle is folded when its normal has a negative dot with the summed (area-weighted)
    normal of the triangles within ``rings`` edge-rings of its corners: the mesh turns back on
    itself there (a pocket wall or a flap triangulated as part of one sheet), and a renderer
    that culls back faces shows a hole.
    """
    from scipy import sparse
    pts = np.asarray(points, np.float64)
    tri = np.asarray(triangles, np.int64)
    n, f = len(pts), len(tri)
    _, _, normal = _triangle_geometry(pts, tri)
    incidence = sparse.csr_matrix((np.ones(3 * f), (tri.ravel(), np.repeat(np.arange(f), 3))),
                                  shape=(n, f))
    acc = incidence @ normal
    e = _edges(tri)
    adj = sparse.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    adj = ((adj + adj.T + sparse.eye(n, format="csr")) > 0).astype(np.float64)
    for _ in range(rings):
        acc = adj @ acc
    ref = acc[tri].sum(1)
    return np.einsum("ij,ij->i", normal, ref) < 0.0


def boundary_turning(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turning angles of a mesh's open boundary, in the tangent planes of its vertices.

    Each boundary edge is oriented as its triangle traverses it; at each vertex with exactly
    one incoming and one outgoing boundary edge the turn is the signed angle (radians, in the
    plane normal to the area-weighted vertex normal) from the incoming to the outgoing edge.
    A smooth rim turns by a few degrees per vertex; a saw-tooth alternates by more than 90.

    Returns:
        (ids (B,), angles (B,)): the boundary vertices and their turning angles.
    """
    pts = np.asarray(points, np.float64)
    tri = np.asarray(triangles, np.int64)
    n = len(pts)
    directed = _edges(tri)
    und = np.sort(directed, 1)
    _, inverse, counts = np.unique(und[:, 0] * n + und[:, 1], return_inverse=True,
                                   return_counts=True)
    bnd = directed[counts[inverse] == 1]
    n_out = np.bincount(bnd[:, 0], minlength=n)
    n_in = np.bincount(bnd[:, 1], minlength=n)
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    nxt[bnd[:, 0]] = bnd[:, 1]
    prv[bnd[:, 1]] = bnd[:, 0]
    ids = np.flatnonzero((n_out == 1) & (n_in == 1))
    _, _, normal = _triangle_geometry(pts, tri)
    vn = np.stack([np.bincount(tri.ravel(), weights=np.repeat(normal[:, c], 3), minlength=n)
                   for c in range(3)], 1)[ids]
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-18)
    e_in = pts[ids] - pts[prv[ids]]
    e_out = pts[nxt[ids]] - pts[ids]
    e_in -= np.einsum("ij,ij->i", e_in, vn)[:, None] * vn
    e_out -= np.einsum("ij,ij->i", e_out, vn)[:, None] * vn
    sin = np.einsum("ij,ij->i", np.cross(e_in, e_out), vn)
    return ids, np.arctan2(sin, np.einsum("ij,ij->i", e_in, e_out))


def _restore_holes(simplices: np.ndarray, neighbors: np.ndarray, good: np.ndarray
                   ) -> np.ndarray:
    """``good`` with every enclosed region of dropped Delaunay triangles put back.

    Dropped triangles connected (across shared edges, through dropped triangles) to the
    convex hull form the outside of the mesh; the other dropped regions are holes inside it
    (slivers and long triangles between well-meshed parts) and are kept.
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    f = len(simplices)
    bad = np.flatnonzero(~good)
    nb = neighbors[bad]
    rows = np.repeat(bad, 3)
    cols = nb.ravel()
    link = (cols >= 0) & ~good[np.maximum(cols, 0)]
    graph = sparse.coo_matrix((np.ones(link.sum()), (rows[link], cols[link])), shape=(f, f))
    _, labels = connected_components(graph, directed=False)
    on_hull = np.zeros(labels.max() + 1, bool)
    on_hull[labels[bad[(nb < 0).any(1)]]] = True
    out = good.copy()
    out[bad[~on_hull[labels[bad]]]] = True
    return out


def _mesh_active(pts: np.ndarray, flat: np.ndarray, active: np.ndarray, max_edge_scale: float,
                 max_edge_ratio: float, min_angle_deg: float, inside: np.ndarray | None
                 ) -> np.ndarray:
    """Delaunay triangles (global ids, counter-clockwise) of the unfolding of the active
    vertices: long and sliver triangles dropped unless they fill an enclosed hole, triangles
    outside ``inside`` (a per-Delaunay-triangle test, see `_smooth_outline`) dropped, and the
    largest connected piece kept."""
    from scipy.spatial import Delaunay, cKDTree
    ids = np.flatnonzero(active)
    p, fl = pts[ids], flat[ids]
    dl = Delaunay(fl)
    tri = np.ascontiguousarray(dl.simplices, np.int64)
    neg = signed_area_2d(fl, tri) < 0
    tri[neg] = tri[neg][:, ::-1]  # counter-clockwise in the unfolding = outward in 3D
    spacing = cKDTree(p).query(p, k=7)[0][:, 6]
    e = _edges(tri)
    length = np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1)
    rel = (length / np.maximum(spacing[e[:, 0]], spacing[e[:, 1]])).reshape(-1, 3).max(1)
    rel_global = length.reshape(-1, 3).max(1) / np.median(length)
    _, area, _ = _triangle_geometry(p, tri)
    a, b, c = (p[tri[:, i]] for i in range(3))
    sq = np.stack([((b - c) ** 2).sum(1), ((c - a) ** 2).sum(1), ((a - b) ** 2).sum(1)], 1)
    # smallest angle: sin(min angle) = 2 * area / (product of its two adjacent edges)
    sin_min = 2.0 * area / np.sqrt(np.sort(sq, 1)[:, 1:].prod(1)).clip(1e-18)
    good = ((rel <= max_edge_scale) & (rel_global <= max_edge_ratio)
            & (sin_min >= np.sin(np.radians(min_angle_deg))))
    good = _restore_holes(tri, dl.neighbors, good)
    if inside is not None:
        good &= inside(fl[tri].mean(1))
    tri = ids[tri[good]]
    _, labels = _vertex_components(len(pts), tri)
    counts = np.bincount(labels[tri[:, 0]], minlength=labels.max() + 1)
    return tri[labels[tri[:, 0]] == np.argmax(counts)]


def _smooth_outline(flat: np.ndarray, triangles: np.ndarray, radius: float, pixel: float,
                    erode: float = 0.0):
    """A test ``inside(q) -> bool`` for points ``q`` (N, 2) of the unfolding: inside the region
    the triangles cover, with notches and teeth narrower than about ``2 radius`` (mm) removed
    and the outline smoothed (a morphological closing and opening with a disk, then a
    Gaussian of ``radius / 2`` thresholded at one half, on a raster of ``pixel`` mm)."""
    from scipy import ndimage

    from facefit.render.raster import rasterize

    lo = flat.min(0) - 3.0 * radius
    hi = flat.max(0) + 3.0 * radius
    shape = np.ceil((hi - lo) / pixel).astype(np.int64)[::-1] + 1  # (rows = v, cols = u)
    px = np.c_[(flat - lo) / pixel, np.zeros(len(flat))].astype(np.float32)
    mask = rasterize(px, triangles, int(shape[0]), int(shape[1])).triangle_id >= 0
    r = max(int(round(radius / pixel)), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = xx**2 + yy**2 <= r * r
    mask = ndimage.binary_fill_holes(mask)
    mask = ndimage.binary_closing(mask, disk, border_value=0)
    mask = ndimage.binary_opening(mask, disk, border_value=0)
    if erode > 0:
        mask = ndimage.distance_transform_edt(mask) > erode / pixel
    smooth = ndimage.gaussian_filter(mask.astype(np.float64), 0.5 * r) >= 0.5
    lab, n_lab = ndimage.label(smooth)
    if n_lab > 1:
        smooth = lab == 1 + np.argmax(np.bincount(lab.ravel())[1:])

    def inside(q: np.ndarray) -> np.ndarray:
        ij = np.rint((np.asarray(q) - lo) / pixel).astype(np.int64)
        ok = (ij[:, 0] >= 0) & (ij[:, 1] >= 0) & (ij[:, 0] < shape[1]) & (ij[:, 1] < shape[0])
        out = np.zeros(len(ij), bool)
        out[ok] = smooth[ij[ok, 1], ij[ok, 0]]
        return out

    return inside


def _prune_tips(triangles: np.ndarray, max_rounds: int = 100) -> np.ndarray:
    """Remove, round by round, the triangles with two or three open edges (the tips of teeth
    and one-triangle-wide strips sticking out of the border)."""
    tri = triangles
    for _ in range(max_rounds):
        und = np.sort(_edges(tri), 1)
        key = und[:, 0] * (int(tri.max()) + 1) + und[:, 1]
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        tip = (counts[inverse] == 1).reshape(-1, 3).sum(1) >= 2
        if not tip.any():
            break
        tri = tri[~tip]
    return tri


def _boundary_links(n: int, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(next, prev) (V,) along the open boundary, edges oriented as their triangle traverses
    them; -1 off the boundary and at vertices with more than one boundary edge either way."""
    directed = _edges(tri)
    und = np.sort(directed, 1)
    _, inverse, counts = np.unique(und[:, 0] * n + und[:, 1], return_inverse=True,
                                   return_counts=True)
    bnd = directed[counts[inverse] == 1]
    ok = (np.bincount(bnd[:, 0], minlength=n)[bnd[:, 0]] == 1) & (
        np.bincount(bnd[:, 1], minlength=n)[bnd[:, 1]] == 1)
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    nxt[bnd[ok, 0]] = bnd[ok, 1]
    prv[bnd[ok, 1]] = bnd[ok, 0]
    return nxt, prv


def _fill_notches(pts: np.ndarray, flat: np.ndarray, tri: np.ndarray, max_angle_deg: float,
                  variants: np.ndarray | None, rounds: int = 20) -> np.ndarray:
    """Close the concave corners of the open border: where the border turns inwards at a
    vertex b (edges a -> b -> c) with an outside angle below ``max_angle_deg`` (in the
    unfolding), add the triangle (a, c, b), unless it folds (on ``pts`` or ``variants``) or
    the edge a-c already exists. The staircase of a border cut across a triangle grid
    becomes straight edges; notches one triangle deep close."""
    n = len(pts)
    blocked = np.zeros(n, bool)
    for _ in range(rounds):
        nxt, prv = _boundary_links(n, tri)
        b = np.flatnonzero((nxt >= 0) & (prv >= 0) & ~blocked)
        a, c = prv[b], nxt[b]
        u, v = flat[a] - flat[b], flat[c] - flat[b]
        cross = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]  # (a, c, b) counter-clockwise: > 0
        cos = (u * v).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1),
                                          1e-18)
        angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        cand = (a != c) & (cross > 0) & (angle < max_angle_deg)
        b, a, c, angle = b[cand], a[cand], c[cand], angle[cand]
        und = np.sort(_edges(tri), 1)
        existing = np.unique(und[:, 0] * n + und[:, 1])
        lo, hi = np.minimum(a, c), np.maximum(a, c)
        fresh = ~np.isin(lo * n + hi, existing)
        b, a, c, angle = b[fresh], a[fresh], c[fresh], angle[fresh]
        if b.size == 0:
            break
        # neighbouring corners share an edge: per round, only the sharpest of adjacent ones
        rank = np.full(n, np.inf)
        rank[b] = angle + 1e-9 * b
        pick = (rank[b] < rank[a]) & (rank[b] < rank[c])
        b, a, c = b[pick], a[pick], c[pick]
        new = np.c_[a, c, b]
        trial = np.concatenate([tri, new])
        folded = folded_triangles(pts, trial)
        for other in () if variants is None else variants:
            folded |= folded_triangles(other, trial)
        bad = folded[len(tri):]
        blocked[b[bad]] = True
        tri = np.concatenate([tri, new[~bad]])
    return tri


def build_face_topology(points: np.ndarray, smooth_iterations: int = 300,
                        max_edge_scale: float = 2.0, min_angle_deg: float = 2.0,
                        centre_back: float = 0.37,
                        max_edge_ratio: float = 5.0,
                        keep_ids: np.ndarray | None = None,
                        outline_radius: float = 0.0,
                        variants: np.ndarray | None = None,
                        max_rounds: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a face-mask point set and give it a UV map.

    Args:
        points: (V, 3) vertices (mm), model frame (x to the face's left, y up, z forward),
            roughly symmetric about a plane ``x = c``.
        smooth_iterations: umbrella-smoothing steps applied to a copy of the points before
            the unfolding (removes the folds of the projection at nostrils and ears).
        max_edge_scale: Delaunay triangles with a 3D edge longer than this times the larger
            of its end points' 6th-nearest-neighbour distance are dropped (mask concavities,
            residual folds); relative to the local spacing as the sampling is not uniform.
        max_edge_ratio: and dropped too with an edge over this times the median Delaunay edge.
        min_angle_deg: Delaunay triangles with a smaller 3D angle (slivers) are dropped
            (unless they fill a hole enclosed by kept triangles).
        centre_back: the unfolding centre sits this many sphere radii behind the fitted
            sphere's centre (sees the ears and neck less obliquely).
        keep_ids: vertices that must stay referenced (e.g. landmark vertices); they are
            never left out and, where the filters strand them, inserted into a triangle.
        outline_radius: with a positive value (mm), the open border is cut along a smooth
            curve of the unfolding: teeth and notches narrower than about twice this are
            removed (`_smooth_outline`), and the vertices outside are left unreferenced.
        variants: optional (K, V, 3) other shapes of the same points (e.g. model instances)
            on which the mesh must not fold either.
        max_rounds: fold-removal rounds (see below).

    The Delaunay mesh of the unfolding is fold-free in the plane, but not always in 3D: where
    the real surface has pockets (nostrils, eye and lip creases, the ear's concha) the walls
    project onto each other, and one sheet triangulated across them turns back on itself.
    Each round finds the folded triangles (`folded_triangles`), leaves their vertices out
    (but ``keep_ids``) and re-triangulates the rest, until no triangle is folded; the left-out
    vertices stay in the point set (for fitting and landmarks), referenced by no triangle.

    Returns:
        triangles: (F, 3) int32, counter-clockwise seen from outside the face (normal
            pointing away from the head); vertices left out are referenced by none.
        uv: (V, 2) float32 in [0, 1], v up; the unfolding scaled uniformly (aspect kept)
            so that the symmetry plane maps to u = 0.5 (mirror: u -> 1 - u); vertices left
            out get their unfolding clamped to the used vertices' bounding box.
    """
    from scipy.spatial import cKDTree
    pts = np.asarray(points, np.float64)
    n = len(pts)
    keep = np.zeros(n, bool)
    if keep_ids is not None:
        keep[np.asarray(keep_ids, np.int64)] = True
    centre, radius = _frame_centre(pts)
    centre[2] -= centre_back * radius
    adj = _knn_graph(pts, 8)
    flat = _unfold(_smooth(pts, adj, smooth_iterations), centre, radius)
    median_edge = float(np.median(cKDTree(pts).query(pts, k=2)[0][:, 1]))
    active = np.ones(n, bool)
    inside = None
    passes = 2 if outline_radius > 0 else 1
    for pass_ in range(passes):
        for _ in range(max_rounds):
            tri = _mesh_active(pts, flat, active, max_edge_scale, max_edge_ratio,
                               min_angle_deg, inside)
            folded = folded_triangles(pts, tri)
            for other in () if variants is None else variants:
                folded |= folded_triangles(other, tri)
            out = np.unique(tri[folded])
            out = out[~keep[out]]
            if out.size == 0:
                break
            active[out] = False
        if pass_ + 1 < passes:
            inside = _smooth_outline(flat, tri, outline_radius, 0.5 * median_edge)
            active &= inside(flat) | keep
    if outline_radius > 0:  # cut the teeth the fold removal left; a subset stays fold-free
        trim = _smooth_outline(flat, tri, outline_radius, 0.5 * median_edge,
                               erode=outline_radius)
        tri = _prune_tips(tri[trim(flat[tri].mean(1))])
        tri = _prune_tips(_fill_notches(pts, flat, tri, 150.0, variants))
        _, labels = _vertex_components(n, tri)
        counts = np.bincount(labels[tri[:, 0]], minlength=labels.max() + 1)
        tri = tri[labels[tri[:, 0]] == np.argmax(counts)]
    # vertices the filters stranded (not those left out for folds or outside the border)
    # go into a nearby triangle, unless that folds the mesh (``keep_ids`` always go in)
    used = np.zeros(n, bool)
    used[tri.ravel()] = True
    insert = (active | keep) & ~used
    for attempt in range(4):
        if attempt == 3:  # still folding: only the vertices that must be kept
            insert &= keep
        if not insert.any():
            break
        tri_in, flat_in = _insert_stranded(pts, flat, tri, np.flatnonzero(insert))
        folded = folded_triangles(pts, tri_in)
        for other in () if variants is None else variants:
            folded |= folded_triangles(other, tri_in)
        bad = np.zeros(n, bool)
        bad[tri_in[folded].ravel()] = True
        bad &= insert & ~keep
        if not bad.any() or attempt == 3:
            tri, flat = tri_in, flat_in
            break
        insert &= ~bad
    used[tri.ravel()] = True

    # uv: centre u on the symmetry plane (azimuth 0), scale both axes by the same factor
    half_u = np.abs(flat[used, 0]).max()
    v_lo, v_hi = flat[used, 1].min(), flat[used, 1].max()
    flat = np.c_[np.clip(flat[:, 0], -half_u, half_u), np.clip(flat[:, 1], v_lo, v_hi)]
    span = max(2.0 * half_u, v_hi - v_lo)
    scale = (1.0 - 2.0 * _UV_MARGIN) / span
    uv = np.c_[0.5 + flat[:, 0] * scale, 0.5 + (flat[:, 1] - 0.5 * (v_lo + v_hi)) * scale]
    return np.ascontiguousarray(tri, np.int32), np.clip(uv, 0.0, 1.0).astype(np.float32)


def mirror_vertex_ids(points: np.ndarray) -> np.ndarray:
    """(V,) int64: for each vertex, the vertex nearest to its mirror image about x = c.

    ``c`` is `symmetry_plane_x`; the image of (x, y, z) is (2c - x, y, z).
    """
    from scipy.spatial import cKDTree
    pts = np.asarray(points, np.float64)
    refl = pts.copy()
    refl[:, 0] = 2.0 * symmetry_plane_x(pts) - refl[:, 0]
    _, nn = cKDTree(pts).query(refl)
    return nn.astype(np.int64)


def mesh_quality(points: np.ndarray, triangles: np.ndarray) -> dict[str, float]:
    """Diagnostics of a triangle mesh over a face-mask point set.

    Keys: ``vertices``, ``triangles``, ``unused_vertices``, ``nonmanifold_edges`` (edges in
    more than two triangles), ``nonmanifold_vertices`` (vertices whose triangle fan is not
    a single disk or half-disk, i.e. more than two boundary edges), ``boundary_edges``,
    ``components`` (over vertex adjacency), ``outward_fraction`` (triangles whose normal has
    a positive dot with the direction from the fitted head sphere's centre),
    ``max_edge_ratio`` (longest / median edge), ``inconsistent_edge_fraction`` (interior
    edges not traversed in opposite directions by their two triangles),
    ``folded_triangles`` (`folded_triangles`) and ``min_area`` (mm^2).
    """
    pts = np.asarray(points, np.float64)
    tri = np.asarray(triangles, np.int64)
    n = len(pts)
    used = np.zeros(n, bool)
    used[tri.ravel()] = True

    directed = _edges(tri)
    undirected = np.sort(directed, 1)
    key = undirected[:, 0] * n + undirected[:, 1]
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    interior = counts == 2
    # orientation: among each interior edge's two copies, exactly one goes low -> high
    forward = (directed[:, 0] < directed[:, 1]).astype(np.int64)
    n_forward = np.bincount(inverse, weights=forward, minlength=len(uniq))
    inconsistent = interior & (n_forward != 1)

    boundary = counts == 1
    bnd_edges = undirected[boundary[inverse]]
    per_vertex = np.bincount(bnd_edges.ravel(), minlength=n)

    n_comp, labels = _vertex_components(n, tri)
    n_comp = len(np.unique(labels[used])) if used.any() else 0

    lengths = np.linalg.norm(pts[uniq // n] - pts[uniq % n], axis=1)
    _, area, normal = _triangle_geometry(pts, tri)
    centre, _ = fit_sphere(pts)
    radial = pts[tri].mean(1) - centre
    return {
        "vertices": float(n),
        "triangles": float(len(tri)),
        "unused_vertices": float((~used).sum()),
        "nonmanifold_edges": float((counts > 2).sum()),
        "nonmanifold_vertices": float((per_vertex > 2).sum()),
        "boundary_edges": float(boundary.sum()),
        "components": float(n_comp),
        "outward_fraction": float(((normal * radial).sum(1) > 0).mean()),
        "max_edge_ratio": float(lengths.max() / np.median(lengths)),
        "inconsistent_edge_fraction": float(inconsistent.sum() / max(interior.sum(), 1)),
        "folded_triangles": float(folded_triangles(pts, tri).sum()),
        "min_area": float(area.min()),
    }
