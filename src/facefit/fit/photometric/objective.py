"""The objective of a photometric refinement: parameters to rendered pixels, landmark
positions and loss terms, in torch (autograd gives the gradients).

Per photo: a pose (rotation, log-scale, translation in crop pixels; a perspective photo's
camera keeps its focal length, its scale is focal length over distance, `PhotoState.crop_px`),
second-order SH light (Ramamoorthi & Hanrahan, SIGGRAPH 2001) and, for FLAME, the rotations
of the free joints (neck, jaw); shared by the photos: the shape coefficients and the albedo.
The mesh is the model's kind (`facefit.model.kinds.face_model`): FLAME vertices are posed by
linear blend skinning with pose correctives (Li et al., SIGGRAPH Asia 2017) so the jaw and
neck stay articulated; every other kind uses its linear part ``mean + basis @ coeffs``.

Visibility is not differentiated: `PhotoState.rasterise` rasterises the mesh every few
steps (`facefit.render.differentiable.pixel_samples`) and keeps the active vertices (those of
visible triangles, plus their normal neighbours); `PhotoState.render` evaluates only those.
For a linear mesh with stencil normals the raster goes one step further: the position and
the two stencil tangents of each vertex under a sampled pixel are linear in the coefficients,
so their (9 N, K) matrix is formed once per raster (`LinearMesh.stencil_operator`) and a step
is one matrix-vector product, with no gathers of stencil neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse

from facefit.fit.core.camera import CameraPose, PerspectiveCamera, camera_pose
from facefit.fit.core.rotation import axis_angle, rodrigues
from facefit.fit.photometric.data import PhotoData, PyramidLevel
from facefit.fit.result import FitResult
from facefit.model.flame import FlameFaceModel
from facefit.model.morphable_model import MorphableModel
from facefit.render import differentiable as dr


def unique_ids(num: int, *ids: np.ndarray) -> np.ndarray:
    """Sorted unique values of integer arrays ``ids`` in [0, ``num``), by a boolean mask
    (numpy's hash-based ``np.unique`` took ~7 ms on the ~24k ids of a raster)."""
    seen = np.zeros(num, bool)
    for a in ids:
        seen[np.asarray(a).ravel()] = True
    return np.flatnonzero(seen)


def orthonormal(rot: torch.Tensor) -> torch.Tensor:
    """The rotations nearest to (..., 3, 3) matrices (SVD)."""
    u, _, vt = torch.linalg.svd(rot)
    return u @ vt


# --- the mesh as a torch function of the parameters ------------------------------------------

class VertexSubset:
    """A vertex subset of a mesh; calling it with the coefficients (M,) and the joint
    rotations (J, 3, 3) (None for unarticulated meshes) gives its (N, 3) model-frame mm."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        self.mean = mean
        self.basis = basis

    def __call__(self, coeffs: torch.Tensor, rotations: torch.Tensor | None) -> torch.Tensor:
        # one matrix-vector product (a (N, 3, K) @ (K,) product runs as N small ones)
        return torch.addmv(self.mean.reshape(-1), self.basis.reshape(-1, self.basis.shape[-1]),
                           coeffs).reshape(-1, 3)


class LinearMesh:
    """``mean + basis @ coeffs`` of a `MorphableModel`; ``basis`` (V, 3, Ks + Ke) float32 is
    its shape then expression basis."""

    linear = True
    """Whether the vertices are linear in the coefficients (`stencil_operator` applies)."""

    def __init__(self, model: MorphableModel, basis: np.ndarray, f32: dict,
                 basis_by_coeff: np.ndarray | None = None) -> None:
        """``basis_by_coeff``: ``basis`` as (K, V, 3) float32 (made here when None; a
        refinement passes a per-model copy)."""
        self.mean = torch.as_tensor(model.mean, **f32)
        self.basis = torch.as_tensor(basis, **f32)
        self.free_joints: list[int] = []
        self.joint_sigmas = np.zeros(0)
        if self.linear:  # CPU copies for the sparse products of `stencil_operator`
            self.mean_np = np.ascontiguousarray(model.mean, dtype=np.float32)
            self.basis_by_coeff = (np.ascontiguousarray(np.moveaxis(basis, 2, 0),
                                                        dtype=np.float32)
                                   if basis_by_coeff is None else basis_by_coeff)
            self.basis_rows = np.ascontiguousarray(basis, dtype=np.float32).reshape(
                len(self.mean_np), -1)  # (V, 3 K)
            self.by_coeff = torch.as_tensor(self.basis_by_coeff, device=f32["device"]).reshape(
                len(self.basis_by_coeff), -1)  # (K, 3 V)

    def stencil_operator(self, ids: np.ndarray, stencil: np.ndarray, device: torch.device
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset (9 N,), matrix (9 N, K)) float32 such that ``offset + matrix @ coeffs``
        reshaped to (3, N, 3) holds the model-frame positions of the vertices ``ids`` (N,)
        and their two stencil tangents ``x_a - x_b`` and ``x_c - x_d`` (``stencil`` (V, 4),
        `facefit.render.differentiable.normal_stencil`), mm: the stencil normal is their
        cross product."""
        n = len(ids)
        st = stencil[ids]
        pm = np.tile(np.array([1.0, -1.0], np.float32), n)
        cols = np.concatenate([ids, st[:, :2].ravel(), st[:, 2:].ravel()])
        vals = np.concatenate([np.ones(n, np.float32), pm, pm])
        # rows in order: one entry per position row, two per tangent row
        indptr = np.concatenate([np.arange(n), n + np.arange(0, 4 * n + 1, 2)])
        return self._applied(vals, cols, indptr, device)

    def pixel_operator(self, vertex_ids: np.ndarray, bary: np.ndarray, stencil: np.ndarray,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset (9 P,), matrix (9 P, K)) float32 such that ``offset + matrix @ coeffs``
        reshaped to (3, P, 3) holds, at P pixels with triangle corners ``vertex_ids`` (P, 3)
        and barycentrics ``bary`` (P, 3), the interpolated model-frame position and the two
        interpolated stencil tangents ``x_a - x_b`` and ``x_c - x_d`` (``stencil`` (V, 4),
        `facefit.render.differentiable.normal_stencil`), mm. The normal is their cross
        product (``normals="tangents"``): the tangents, not the unit normals, are
        interpolated."""
        p = len(vertex_ids)
        b = np.asarray(bary, np.float32)
        st = stencil[vertex_ids]  # (P, 3, 4)
        pm = np.array([1.0, -1.0], np.float32)
        cols = np.concatenate([np.asarray(vertex_ids).ravel(), st[:, :, :2].ravel(),
                               st[:, :, 2:].ravel()])
        vals = np.concatenate([b.ravel(), (b[:, :, None] * pm).ravel(),
                               (b[:, :, None] * pm).ravel()])
        # rows in order, 3 entries per position row and 6 per tangent row (a column that
        # repeats within a row is summed by the product)
        indptr = np.concatenate([np.arange(0, 3 * p, 3), 3 * p + np.arange(0, 12 * p + 1, 6)])
        return self._applied(vals, cols, indptr, device)

    def _applied(self, vals: np.ndarray, cols: np.ndarray, indptr: np.ndarray,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset (3 R,), matrix (3 R, K)) of the sparse (R, V) vertex-combination operator
        in CSR form applied to the mean and the basis: rows of xyz triplets flattened. The
        matrix is stored by coefficient (the transpose of a contiguous (K, 3 R) array): a
        product with it, or with its transpose, streams K long rows (2-3x faster on one core
        than the K-wide rows of a row-major (3 R, K) matrix)."""
        op = sparse.csr_matrix((vals, cols, indptr), shape=(len(indptr) - 1, len(self.mean_np)))
        offset = torch.as_tensor((op @ self.mean_np).reshape(-1), device=device)
        k = len(self.basis_by_coeff)
        # small operators (coarse levels): one product, then (R, 3, K) -> (K, R, 3); large
        # ones: a product per coefficient, no transpose of a large array (one core, 4,500
        # rows: 7 vs 12 ms; 39,000 rows: 20 vs 31 ms; the same numbers either way)
        if op.shape[0] <= 30000:
            by_coeff = np.ascontiguousarray(
                (op @ self.basis_rows).reshape(op.shape[0], 3, k).transpose(2, 0, 1))
        else:  # one product per coefficient (no transpose of a large array)
            by_coeff = np.empty((k, op.shape[0], 3), np.float32)
            for i, b in enumerate(self.basis_by_coeff):
                by_coeff[i] = op @ b
        matrix = torch.as_tensor(by_coeff.reshape(len(by_coeff), -1), device=device).T
        return offset, matrix

    def all_vertices(self, coeffs: torch.Tensor, rotations: torch.Tensor | None
                     ) -> torch.Tensor:
        """(V, 3) model-frame mm of every vertex (no gradient): on a linear mesh one
        product with the basis stored by coefficient (``basis_by_coeff``, as in
        `_applied`)."""
        if not self.linear:
            return self.every()(coeffs, rotations)
        return torch.addmv(self.mean.reshape(-1), self.by_coeff.T, coeffs).reshape(-1, 3)

    @property
    def num_vertices(self) -> int:
        return int(self.mean.shape[0])

    def subset(self, ids: torch.Tensor) -> VertexSubset:
        """The vertices ``ids`` (N,)."""
        return VertexSubset(self.mean.index_select(0, ids), self.basis.index_select(0, ids))

    def every(self) -> VertexSubset:
        """All vertices (no copies)."""
        return VertexSubset(self.mean, self.basis)


class SkinnedSubset(VertexSubset):
    """A vertex subset of a FLAME mesh: linear rest shape, pose correctives and linear blend
    skinning (as `facefit.model.flame.FlameSkinner.points`)."""

    def __init__(self, mesh: FlameMesh, ids: torch.Tensor | None) -> None:
        pick = (lambda t: t) if ids is None else (lambda t: t.index_select(0, ids))
        super().__init__(pick(mesh.mean), pick(mesh.basis))
        self.mesh = mesh
        self.posedirs = pick(mesh.posedirs)
        self.weights = pick(mesh.weights)

    def __call__(self, coeffs: torch.Tensor, rotations: torch.Tensor | None) -> torch.Tensor:
        m = self.mesh
        assert rotations is not None
        eye = torch.eye(3, dtype=coeffs.dtype, device=coeffs.device)
        x = (self.mean + self.basis @ coeffs
             + self.posedirs @ (rotations[1:] - eye).reshape(-1))
        joints = m.j_mean + m.j_basis @ coeffs  # (J, 3) rest joints
        world: list[torch.Tensor] = []
        world_t: list[torch.Tensor] = []
        for j, par in enumerate(m.parents):  # the kinematic chain (a handful of joints)
            if par < 0:
                world.append(rotations[j])
                world_t.append(joints[j])
            else:
                world.append(world[par] @ rotations[j])
                world_t.append(world_t[par] + world[par] @ (joints[j] - joints[par]))
        w_rot = torch.stack(world)
        rel_t = torch.stack(world_t) - torch.einsum("jab,jb->ja", w_rot, joints)
        blend = (self.weights @ w_rot.reshape(len(world), 9)).reshape(-1, 3, 3)
        return torch.einsum("vab,vb->va", blend, x) + self.weights @ rel_t


class FlameMesh(LinearMesh):
    """A FLAME model (`facefit.model.flame.FlameFaceModel`) in torch: its free joints'
    rotations are parameters (prior sigmas ``joint_sigmas``, rad)."""

    linear = False

    def __init__(self, kind: FlameFaceModel, basis: np.ndarray, f32: dict) -> None:
        flame = kind.flame
        super().__init__(flame.model, basis, f32)
        jreg = torch.as_tensor(np.asarray(flame.j_regressor, np.float32), **f32)
        self.j_mean = jreg @ self.mean
        self.j_basis = torch.einsum("jv,vdm->jdm", jreg, self.basis)
        self.posedirs = torch.as_tensor(np.asarray(flame.posedirs, np.float32), **f32)
        self.weights = torch.as_tensor(np.asarray(flame.weights, np.float32), **f32)
        self.parents = [int(p) for p in np.asarray(flame.parents)]
        self.free_joints = list(kind.joints)
        self.joint_sigmas = np.asarray(kind.joint_sigmas, np.float64)

    def subset(self, ids: torch.Tensor) -> VertexSubset:
        return SkinnedSubset(self, ids)

    def every(self) -> VertexSubset:
        return SkinnedSubset(self, None)


# --- one photo ---------------------------------------------------------------------------------

@dataclass(eq=False)
class Raster:
    """A photo's current raster at one pyramid level.

    Attributes:
        level: the pyramid level.
        samp: the skin pixels (`facefit.render.differentiable.PixelSamples`).
        local: (Va,) active vertex ids (visible triangles' vertices and normal neighbours).
        lut: (V,) index of each vertex in ``local``, -1 elsewhere.
        ids: ``local`` as a tensor; vertices: their `VertexSubset` (None with
            ``stencil_basis`` or ``pixel_basis``).
        ring: (T, 3) triangles around the visible vertices (local indices; vertex normals).
        stencil: (Va, 4) normal stencil rows (local indices; stencil normals), or None.
        pix_vids: (P, 3) local vertex ids of each pixel's triangle.
        weight: (P,) pixel weights (0: rejected as an outlier).
        stencil_basis: (offset, matrix, pixel corners (P, 3)) of the visible vertices
            (`LinearMesh.stencil_operator`; the corners index its N vertices) for a linear
            mesh with stencil normals, else None.
        pixel_basis: `LinearMesh.pixel_operator` of the pixels (linear mesh,
            ``normals="tangents"``), else None.
        held_albedo: (albedo (Va, 3), its (P, 3) pixel values) of an albedo that is not
            optimised (`PhotoState.render` interpolates it once per raster), else None.
        cache: arrays made from this raster once (`facefit.fit.photometric.gradient`).
    """

    level: PyramidLevel
    samp: dr.PixelSamples
    local: np.ndarray
    lut: np.ndarray
    ids: torch.Tensor
    vertices: VertexSubset | None
    ring: torch.Tensor
    stencil: torch.Tensor | None
    pix_vids: torch.Tensor
    weight: torch.Tensor
    stencil_basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    pixel_basis: tuple[torch.Tensor, torch.Tensor] | None = None
    held_albedo: tuple[torch.Tensor, torch.Tensor] | None = None
    cache: dict = field(default_factory=dict)


class PhotoState:
    """The parameters of one photo and its current raster: the pose (crop pixels at the
    finest level), the SH light, the expression coefficients and the free joints' rotations
    (each a small update of a reference rotation, folded in at every raster refresh)."""

    def __init__(self, data: PhotoData, mesh: LinearMesh, joints: np.ndarray | None,
                 stencil: np.ndarray | None, triangles: np.ndarray, f32: dict) -> None:
        fit = data.fit
        self.data = data
        self.mesh = mesh
        self.triangles = triangles
        self.triangles32 = np.ascontiguousarray(triangles, dtype=np.int32)  # the raster's
        self.stencil_table = stencil
        self.rot0 = torch.as_tensor(fit.rotation, **f32)
        scale, origin_px, persp = _camera_in_crop(fit, data)
        # a perspective photo's (cx, cy, f), crop pixels at the finest level; else None
        self.persp = None if persp is None else torch.as_tensor(persp, **f32)
        self.s0 = scale * data.k
        self.omega = torch.zeros(3, **f32, requires_grad=True)
        self.log_s = torch.zeros(1, **f32, requires_grad=True)
        self.trans = torch.as_tensor(data.to_crop(origin_px[None])[0],
                                     **f32).clone().requires_grad_(True)
        self.sh = torch.zeros(9, 3, **f32)
        self.expr = torch.as_tensor(fit.expression_coeffs, **f32).clone().requires_grad_(True)
        # joints: reference rotations (J, 3, 3), their axis-angles and the whitened updates
        self.joints_aa: np.ndarray | None = None
        self.joint_rot0: torch.Tensor | None = None
        n_free = len(mesh.free_joints)
        self.joint_u = torch.zeros(n_free, 3, **f32, requires_grad=True)
        self.joint_sigma = torch.as_tensor(np.repeat(mesh.joint_sigmas[:, None], 3, 1), **f32)
        if joints is not None:
            self.joints_aa = np.asarray(joints, np.float64).copy()
            self.joint_rot0 = torch.as_tensor(rodrigues(self.joints_aa), **f32)
        corners = torch.as_tensor(data.landmark_corners.reshape(-1), device=f32["device"])
        self.lm_points = mesh.subset(corners)
        self.lm_bary = torch.as_tensor(data.landmark_bary, **f32)
        self.lm_target = torch.as_tensor(data.landmark_target, **f32)
        # one vertex per landmark (weight 1): no barycentric sum
        self.lm_single = bool(np.all(np.asarray(data.landmark_bary) == 1.0)
                              and np.asarray(data.landmark_bary).shape[1] == 1)
        self.flip_y = torch.tensor([1.0, -1.0], **f32)  # image y runs down
        self.act: Raster | None = None

    @property
    def num_landmarks(self) -> int:
        return len(self.lm_target)

    # parameters -----------------------------------------------------------------------------
    def pose_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotation, scale): rot0 times the second-order exponential
        (`facefit.render.differentiable.small_rotation`) of the small axis-angle update omega
        (units of 0.01 rad) and s0 times exp(0.01 log_s)."""
        rot = dr.small_rotation(self.omega * 0.01) @ self.rot0
        return rot, self.s0 * torch.exp(0.01 * self.log_s)

    def joint_rotations(self) -> torch.Tensor | None:
        """(J, 3, 3) joint rotations (free joints: their update applied), or None."""
        if self.joint_rot0 is None:
            return None
        rots = list(self.joint_rot0.unbind(0))
        for i, j in enumerate(self.mesh.free_joints):
            rots[j] = dr.small_rotation(self.joint_u[i] * self.joint_sigma[i]) @ rots[j]
        return torch.stack(rots)

    def joint_vector(self) -> torch.Tensor:
        """(3 F,) the free joints' axis-angles (reference plus update, to first order), rad:
        what the joints' Gaussian prior sees."""
        assert self.joints_aa is not None
        ref = torch.as_tensor(self.joints_aa[self.mesh.free_joints], dtype=self.joint_u.dtype,
                              device=self.joint_u.device)
        return (ref + self.joint_u * self.joint_sigma).reshape(-1)

    def fold(self) -> None:
        """Fold the rotation updates (camera, joints) into their references."""
        with torch.no_grad():
            rot, _ = self.pose_parts()
            self.rot0 = orthonormal(rot)
            self.omega.zero_()
            rots = self.joint_rotations()
            if rots is not None and len(self.mesh.free_joints):
                self.joint_rot0 = orthonormal(rots)
                self.joints_aa = np.array([axis_angle(r) for r in
                                           self.joint_rot0.cpu().numpy().astype(np.float64)])
                self.joint_u.zero_()

    def joints(self) -> np.ndarray | None:
        """(J, 3) float64 joint axis-angles (rad) with the current updates, or None."""
        if self.joint_rot0 is None:
            return None
        with torch.no_grad():
            rots = orthonormal(self.joint_rotations().double()).cpu().numpy()
        return np.array([axis_angle(r) for r in rots])

    def crop_projection(self, view: torch.Tensor, scale: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(N, 2) crop pixels (finest level) of (N, 3) view-frame points (rotated model
        points, mm, about the model origin), and for a perspective photo what the closed-form
        gradient needs: the (N, 2) offsets ``q`` from the principal point and the (N, 1)
        depth ratios ``w`` (else None, None). Scaled orthographic: ``s (X, -Y) + t``; a
        perspective photo divides that by ``w = 1 - s Z / f`` about the principal point
        (``s = f / distance`` of the model origin,
        `facefit.fit.core.camera.PerspectiveCamera.at_scale`)."""
        p = view[:, :2] * (scale * self.flip_y) + self.trans
        if self.persp is None:
            return p, None, None
        centre, focal = self.persp[:2], self.persp[2]
        q = p - centre
        w = 1.0 - view[:, 2:3] * (scale / focal)
        return centre + q / w, q, w

    def crop_px(self, view: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """(N, 2) crop pixels of (N, 3) view-frame points (`crop_projection`)."""
        return self.crop_projection(view, scale)[0]

    def project(self, x: torch.Tensor, rot: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """(N, 3) crop pixels (x, y) and depth (``-s Z``) of model-frame points (N, 3)."""
        view = x @ rot.T
        if self.persp is None:
            return dr.scaled_orthographic(view, scale, self.trans)
        return torch.cat([self.crop_px(view, scale), -scale * view[:, 2:]], 1)

    def landmarks(self, coeffs: torch.Tensor, rot: torch.Tensor, scale: torch.Tensor
                  ) -> torch.Tensor:
        """(K, 2) projected landmarks, crop pixels at the finest level."""
        pts = self.lm_points(coeffs, self.joint_rotations())
        if not self.lm_single:
            k, c = self.lm_bary.shape
            pts = (pts.reshape(k, c, 3) * self.lm_bary[:, :, None]).sum(1)
        if self.persp is None:
            return (pts @ rot[:2].T) * (scale * self.flip_y) + self.trans
        return self.crop_px(pts @ rot.T, scale)

    # raster ---------------------------------------------------------------------------------
    def rasterise(self, level: PyramidLevel, coeffs: torch.Tensor, max_pixels: int | None,
                  rng: np.random.Generator, operator: bool = True) -> Raster:
        """Fold the updates, rasterise the mesh at ``level`` and make it the current raster
        ``act``: the skin pixels (at most ``max_pixels``, a random subset), the active
        vertices (visible, plus their normal neighbours). ``operator=False``: no (9 N, K)
        matrix (`LinearMesh.stencil_operator`; ~20 ms at the finest level) for a raster
        that is only evaluated, not optimised on: its vertices are gathered instead (the
        same normals)."""
        self.fold()
        dev = self.sh.device
        nv = self.mesh.num_vertices
        with torch.no_grad():
            rot, scale = self.pose_parts()
            vc = self.project(self.mesh.all_vertices(coeffs, self.joint_rotations()), rot,
                              scale).cpu().numpy()
        vl = vc.copy()
        vl[:, :2] = vc[:, :2] * level.a + level.b
        vl[:, 2] *= level.a
        hh, ww = level.mask.shape
        tri = self.triangles
        samp = dr.pixel_samples(vl, self.triangles32, hh, ww, level.mask, device=dev)
        if max_pixels is not None and len(samp.pixel) > max_pixels:  # random subset
            pick = torch.as_tensor(np.sort(rng.choice(len(samp.pixel), max_pixels,
                                                      replace=False)), device=dev)
            samp = dr.PixelSamples(samp.pixel[pick], samp.vertex_ids[pick], samp.bary[pick],
                                   samp.height, samp.width)
        pix = samp.vertex_ids.cpu().numpy()
        vis = unique_ids(nv, pix)
        in_vis = np.zeros(nv, bool)
        in_vis[vis] = True
        nrm = level.normals
        ring = tri[in_vis[tri].any(1)] if nrm == "vertex" else tri[:0]
        stencils = nrm in ("stencil", "tangents")
        extra = self.stencil_table[vis].ravel() if stencils else vis[:0]
        local = unique_ids(nv, vis, ring, extra)
        lut = np.full(nv, -1, np.int64)
        lut[local] = np.arange(len(local))
        stencil, stencil_basis, pixel_basis, vertices = None, None, None, None
        ids = torch.as_tensor(local, device=dev)
        if nrm == "tangents" and self.mesh.linear and operator:
            pixel_basis = self.mesh.pixel_operator(pix, samp.bary.cpu().numpy(),
                                                   self.stencil_table, dev)
        elif stencils and self.mesh.linear and operator:
            offset, matrix = self.mesh.stencil_operator(vis, self.stencil_table, dev)
            stencil_basis = (offset, matrix,
                             torch.as_tensor(np.searchsorted(vis, pix), device=dev))
        else:
            vertices = self.mesh.subset(ids)
            if stencils:  # stencil rows for every local vertex (unused ones: self)
                st = np.where(in_vis[local][:, None], lut[self.stencil_table[local]],
                              np.arange(len(local))[:, None])
                stencil = torch.as_tensor(st, device=dev)
        self.act = Raster(level, samp, local, lut, ids, vertices,
                          torch.as_tensor(lut[ring], device=dev), stencil,
                          torch.as_tensor(lut[pix], device=dev),
                          torch.ones(len(samp.pixel), dtype=self.sh.dtype, device=dev),
                          stencil_basis, pixel_basis)
        return self.act

    def render(self, coeffs: torch.Tensor, albedo: torch.Tensor,
               spec: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The current raster's observed and rendered colours, normals (view frame) and
        albedo per pixel, and the projected landmarks (crop pixels); ``albedo`` (Va, 3) of
        the active vertices."""
        act = self.act
        assert act is not None
        rot, scale = self.pose_parts()
        bary = act.samp.bary
        if act.pixel_basis is not None:  # position and stencil tangents per pixel
            offset, matrix = act.pixel_basis
            y = torch.addmv(offset, matrix, coeffs).reshape(3, -1, 3) @ rot.T  # view frame
            pv = y[0]
            n = torch.linalg.cross(y[1], y[2], dim=1)
        elif act.stencil_basis is not None:  # visible vertices and their stencil tangents
            offset, matrix, corners = act.stencil_basis
            y = torch.addmv(offset, matrix, coeffs).reshape(3, -1, 3)  # model frame
            nv = torch.linalg.cross(y[1], y[2], dim=1)
            nv = nv / torch.clamp(torch.linalg.vector_norm(nv, dim=1, keepdim=True), min=1e-12)
            # position and unit normal interpolated together, rotated per pixel (a rotation
            # commutes with the cross product and the interpolation)
            both = dr.interpolate(torch.cat([y[0], nv], 1), corners, bary).reshape(-1, 2, 3)
            both = both @ rot.T  # view frame
            pv, n = both[:, 0], both[:, 1]
        else:
            assert act.vertices is not None
            v = act.vertices(coeffs, self.joint_rotations()) @ rot.T  # (Va, 3) view frame
            if act.level.normals == "vertex":
                n = dr.interpolate(dr.vertex_normals(v, act.ring), act.pix_vids, bary)
                pv = dr.interpolate(v, act.pix_vids, bary)
            elif act.level.normals in ("stencil", "tangents"):
                n = dr.interpolate(dr.stencil_normals(v, act.stencil), act.pix_vids, bary)
                pv = dr.interpolate(v, act.pix_vids, bary)
            else:  # the flat normal of each pixel's triangle (sub-pixel triangles at 224 px)
                corners = v.index_select(0, act.pix_vids.reshape(-1)).reshape(-1, 3, 3)
                pv = (corners * bary[:, :, None]).sum(1)
                n = torch.linalg.cross(corners[:, 1] - corners[:, 0],
                                       corners[:, 2] - corners[:, 0], dim=1)
        n = n / torch.clamp(torch.linalg.vector_norm(n, dim=1, keepdim=True), min=1e-12)
        if albedo.requires_grad:
            alb = dr.interpolate(albedo, act.pix_vids, bary)
        else:  # a held albedo: interpolated once per raster
            if act.held_albedo is None or act.held_albedo[0] is not albedo:
                act.held_albedo = (albedo, dr.interpolate(albedo, act.pix_vids, bary))
            alb = act.held_albedo[1]
        lv = act.level
        # the camera at the level's resolution: crop pixels x a + b
        if self.persp is None:
            p = pv[:, :2] * (scale * lv.a * self.flip_y) + (self.trans * lv.a + lv.b)
        else:
            p = self.crop_px(pv, scale) * lv.a + lv.b
        observed = dr.sample_image(lv.image, p)
        rendered = dr.shade(n, alb, self.sh, spec)
        lm = self.landmarks(coeffs, rot, scale)
        return {"observed": observed, "rendered": rendered, "n": n, "lm": lm, "alb": alb}

    # light and outliers on the current raster ------------------------------------------------
    def solve_light(self, render: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Closed-form SH (weighted least squares per channel) for the current albedo."""
        assert self.act is not None
        with torch.no_grad():
            out = render()
            w = self.act.weight
            b = dr.sh_basis(out["n"]) * w[:, None]
            for ch in range(3):
                a = b * out["alb"][:, ch:ch + 1]
                lhs = a.T @ a + 1e-3 * len(a) * torch.diag(
                    self.sh.new_tensor([0.0] + [0.01] * 3 + [1.0] * 5))
                self.sh[:, ch] = torch.linalg.solve(lhs, a.T @ (out["observed"][:, ch] * w))

    def reject_outliers(self, render: Callable[[], dict[str, torch.Tensor]],
                        outlier_sigmas: float) -> float:
        """Reweight the current raster (pixels beyond ``outlier_sigmas`` robust sigmas and
        0.1 get weight 0); return the RMS colour residual over the others."""
        assert self.act is not None
        with torch.no_grad():
            out = render()
            r = torch.linalg.vector_norm(out["observed"] - out["rendered"], dim=1)
            sigma = 1.4826 * torch.median(r) + 1e-6
            self.act.weight = (r <= torch.clamp(outlier_sigmas * sigma, min=0.1)).to(r.dtype)
            return float(torch.sqrt((r * r * self.act.weight).sum() / self.act.weight.sum()))

    def init_light(self, render: Callable[[], dict[str, torch.Tensor]],
                   outlier_sigmas: float) -> None:
        """Initial light on the current raster: ambient, solved, outliers, solved again."""
        self.sh[0] = dr.AMBIENT_L00 * 0.8
        self.solve_light(render)
        self.reject_outliers(render, outlier_sigmas)
        self.solve_light(render)

    def image_camera(self, coeffs: torch.Tensor) -> tuple[CameraPose, float]:
        """The refined camera in input-image pixels (the fit's kind; a perspective one keeps
        its focal length and principal point) and the RMS landmark error (input pixels)."""
        with torch.no_grad():
            rot, scale = self.pose_parts()
            lm = self.landmarks(coeffs, rot, scale)
            lm_err = float(torch.sqrt(((lm - self.lm_target) ** 2).sum(1).mean())) / self.data.k
            origin = self.data.from_crop(self.trans.detach().cpu().numpy().astype(np.float64))
        rot_np, s = rot.cpu().numpy().astype(np.float64), float(scale) / self.data.k
        cam = self.data.fit.camera
        if cam.kind != "perspective":
            return camera_pose(rot_np, s, origin), lm_err
        return PerspectiveCamera.at_scale(rot_np, s, origin, float(cam.focal_px),
                                          np.asarray(cam.principal_point_px)), lm_err


def _camera_in_crop(fit: FitResult, data: PhotoData
                    ) -> tuple[float, np.ndarray, np.ndarray | None]:
    """A fit's camera as the refinement holds it: (scale px/mm, image position of the model
    origin (2,) px, and for a perspective camera (cx, cy, f) in crop pixels, else None;
    `facefit.fit.core.camera.PerspectiveCamera.origin_scale`)."""
    cam = fit.camera
    if cam.kind != "perspective":
        return float(fit.scale), np.asarray(fit.translation, np.float64)[:2], None
    centre = np.asarray(cam.principal_point_px, np.float64)
    pinhole = PerspectiveCamera(np.asarray(fit.rotation, np.float64),
                                np.asarray(fit.translation, np.float64), float(cam.focal_px),
                                centre)
    scale, origin = pinhole.origin_scale()
    return scale, origin, np.r_[data.to_crop(centre[None])[0], pinhole.focal * data.k]


# --- loss terms ----------------------------------------------------------------------------------

def pixel_loss(out: dict[str, torch.Tensor], act: Raster, image_loss: str,
               pixel_sigma: float) -> torch.Tensor:
    """The robust pixel term over the raster's unrejected pixels (``act.weight``): L2, Huber
    (delta 2 sigma) or 1 - gradient correlation (Sariyanidi et al., ECCV 2020) per channel,
    scaled like the L2 term."""
    r = out["observed"] - out["rendered"]
    w = act.weight
    if image_loss == "l2":
        return (w[:, None] * r * r).sum() / (w.sum() * 3 * pixel_sigma**2)
    if image_loss == "huber":
        hub = torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none",
                                             delta=2 * pixel_sigma)
        return (w[:, None] * hub).sum() / (w.sum() * 3 * pixel_sigma**2)
    o = dr.scatter_image(out["observed"] * w[:, None], act.samp)
    c = dr.scatter_image(out["rendered"] * w[:, None], act.samp)
    valid = dr.scatter_image(w[:, None], act.samp)[..., 0] > 0
    vx = (valid[:, 1:] & valid[:, :-1])[..., None]
    vy = (valid[1:] & valid[:-1])[..., None]
    ox, cx = (o[:, 1:] - o[:, :-1]) * vx, (c[:, 1:] - c[:, :-1]) * vx
    oy, cy = (o[1:] - o[:-1]) * vy, (c[1:] - c[:-1]) * vy
    num = (ox * cx).sum((0, 1)) + (oy * cy).sum((0, 1))
    den = torch.sqrt(((ox * ox).sum((0, 1)) + (oy * oy).sum((0, 1)))
                     * ((cx * cx).sum((0, 1)) + (cy * cy).sum((0, 1))) + 1e-12)
    return (1.0 - num / den).mean() / (0.5 * pixel_sigma)


def landmark_loss(landmarks: torch.Tensor, target: torch.Tensor, weight: float,
                  sigma_px: float) -> torch.Tensor:
    """``weight`` times the mean squared landmark distance over ``sigma_px``²."""
    d = landmarks - target
    return weight * (d * d).sum(1).mean() / sigma_px**2


__all__ = ["FlameMesh", "LinearMesh", "PhotoState", "Raster", "SkinnedSubset", "VertexSubset",
           "landmark_loss", "orthonormal", "pixel_loss", "unique_ids"]
