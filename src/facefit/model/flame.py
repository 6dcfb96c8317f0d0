"""The FLAME kind of `facefit.model.face_model.FaceModel` (Li et al., "Learning a model of
facial shape and expression from 4D scans", SIGGRAPH Asia 2017): the linear rest shape
``mean + S a + E b`` posed by linear blend skinning with pose correctives
(as `facefit.model.io_flame.linear_blend_skinning`).

Free parameters: shape, expression and the rotations of the articulated joints (default neck
and jaw; the global rotation is the camera's, the eyes carry no landmark information), with
N(0, 1) coefficient priors and N(0, sigma^2) joint priors. `FlameSkinner` evaluates the
skinning on a vertex subset with its exact coefficient Jacobian.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.rotation import rodrigues
from facefit.model.face_model import FaceParams
from facefit.model.io_flame import FlameModel
from facefit.model.morphable_model import MorphableModel

NECK, JAW = 1, 2


def _rel_translation(world_rot: np.ndarray, parents: np.ndarray, joints: np.ndarray
                     ) -> np.ndarray:
    """Translations of the skinning transforms (world transform times inverse bind): linear in
    ``joints`` (J, 3) or (J, 3, M) for fixed world rotations (J, 3, 3)."""
    world_t = np.zeros_like(joints)
    for j, par in enumerate(parents):
        if par < 0:
            world_t[j] = joints[j]
        else:
            world_t[j] = world_t[par] + np.tensordot(world_rot[par], joints[j] - joints[par], 1)
    return world_t - np.einsum("jab,jb...->ja...", world_rot, joints)


def _world_rotations(pose: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rots = rodrigues(pose)
    world = np.empty_like(rots)
    for j, par in enumerate(parents):
        world[j] = rots[j] if par < 0 else world[par] @ rots[j]
    return rots, world


class FlameSkinner:
    """LBS restricted to the vertices the landmarks need, with coefficient Jacobians."""

    def __init__(self, flame: FlameModel, vertex_ids: np.ndarray) -> None:
        m = flame.model
        self.ids = vertex_ids
        basis = np.concatenate([m.shape_basis, m.expression_basis], axis=2).astype(np.float64)
        jreg = np.asarray(flame.j_regressor, np.float64)
        self.mean = m.mean[vertex_ids].astype(np.float64)
        self.basis = basis[vertex_ids]
        self.j_mean = jreg @ m.mean.astype(np.float64)
        self.j_basis = np.einsum("jv,vdm->jdm", jreg, basis)
        self.posedirs = np.asarray(flame.posedirs, np.float64)[vertex_ids]
        self.weights = np.asarray(flame.weights, np.float64)[vertex_ids]
        self.parents = np.asarray(flame.parents, np.int64)

    def points(self, c: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posed selected vertices (N, 3) and their blended rotations (N, 3, 3)."""
        rots, world = _world_rotations(pose, self.parents)
        x = self.mean + self.basis @ c + self.posedirs @ (rots[1:] - np.eye(3)).ravel()
        rel_t = _rel_translation(world, self.parents, self.j_mean + self.j_basis @ c)
        blend = np.einsum("vj,jab->vab", self.weights, world)
        return np.einsum("vab,vb->va", blend, x) + self.weights @ rel_t, blend

    def joint_jacobian(self, c: np.ndarray, pose: np.ndarray, joints: Sequence[int],
                       eps: float = 1e-6) -> np.ndarray:
        """(N, 3, 3 len(joints)) derivative of `points` with respect to the axis-angle
        components of ``joints`` (central differences: a handful of columns)."""
        out = np.zeros((len(self.ids), 3, 3 * len(joints)))
        for k, (j, a) in enumerate((j, a) for j in joints for a in range(3)):
            hi, lo = pose.copy(), pose.copy()
            hi[j, a] += eps
            lo[j, a] -= eps
            out[:, :, k] = (self.points(c, hi)[0] - self.points(c, lo)[0]) / (2 * eps)
        return out

    def coeff_jacobian(self, pose: np.ndarray, blend: np.ndarray) -> np.ndarray:
        """(N, 3, M) exact derivative of `points` with respect to the coefficients."""
        _, world = _world_rotations(pose, self.parents)
        rel_t = _rel_translation(world, self.parents, self.j_basis)
        return (np.einsum("vab,vbm->vam", blend, self.basis)
                + np.einsum("vj,jam->vam", self.weights, rel_t))


class FlameFaceModel:
    """A `FlameModel` seen through the `FaceModel` protocol.

    Args:
        flame: the FLAME model.
        joints: the free joints (default neck and jaw).
        joint_sigmas: prior standard deviation (rad) of each free joint's components.
    """

    kind = "flame"

    def __init__(self, flame: FlameModel, joints: Sequence[int] = (NECK, JAW),
                 joint_sigmas: Sequence[float] = (0.2, 0.3)) -> None:
        n_j = int(np.asarray(flame.parents).size)
        self.flame = flame
        self.joints = [j for j in joints if j < n_j]
        self.joint_sigmas = np.array([s for j, s in zip(joints, joint_sigmas, strict=True)
                                      if j < n_j])
        self._skinners: dict[tuple[int, bytes], FlameSkinner] = {}

    @property
    def base(self) -> MorphableModel:
        return self.flame.model

    @property
    def num_joints(self) -> int:
        return int(np.asarray(self.flame.parents).size)

    @property
    def num_params(self) -> int:
        m = self.flame.model
        return m.num_shape + m.num_expression + 3 * len(self.joints)

    def zero_params(self) -> FaceParams:
        m = self.flame.model
        return FaceParams(np.zeros(m.num_shape), np.zeros(m.num_expression),
                          np.zeros((self.num_joints, 3)))

    def _joints(self, params: FaceParams) -> np.ndarray:
        return (np.zeros((self.num_joints, 3)) if params.joints is None
                else np.asarray(params.joints, np.float64))

    def vertices(self, params: FaceParams, ids: np.ndarray | None = None) -> np.ndarray:
        """Skinned vertices (float64; the same skinning as `linear_blend_skinning`)."""
        ids = np.arange(self.flame.model.num_vertices) if ids is None else ids
        return self.skinner(ids).points(np.r_[params.shape, params.expression],
                                        self._joints(params))[0]

    def skinner(self, ids: np.ndarray) -> FlameSkinner:
        """`FlameSkinner` of the vertices ``ids`` (a few recent ones are kept)."""
        ids = np.asarray(ids, np.int64)
        key = (len(ids), ids.tobytes())
        skin = self._skinners.pop(key, None) or FlameSkinner(self.flame, ids)
        self._skinners[key] = skin
        while len(self._skinners) > 4:
            self._skinners.pop(next(iter(self._skinners)))
        return skin

    def vertex_jacobian(self, params: FaceParams, ids: np.ndarray) -> np.ndarray:
        skin = self.skinner(ids)
        c = np.r_[params.shape, params.expression]
        pose = self._joints(params)
        _, blend = skin.points(c, pose)
        return np.concatenate([skin.coeff_jacobian(pose, blend),
                               skin.joint_jacobian(c, pose, self.joints)], axis=2)

    def parameter_vector(self, params: FaceParams) -> np.ndarray:
        return np.r_[params.shape, params.expression,
                     self._joints(params)[self.joints].ravel()].astype(np.float64)

    def with_vector(self, params: FaceParams, vector: np.ndarray) -> FaceParams:
        m = self.flame.model
        ks, ke = m.num_shape, m.num_expression
        pose = self._joints(params).copy()
        pose[self.joints] = np.asarray(vector[ks + ke:]).reshape(-1, 3)
        return FaceParams(vector[:ks].copy(), vector[ks:ks + ke].copy(), pose)

    def prior(self) -> GaussianPrior:
        m = self.flame.model
        n_c = m.num_shape + m.num_expression
        return GaussianPrior(np.zeros(self.num_params),
                             np.r_[np.ones(n_c), np.repeat(self.joint_sigmas, 3)])
