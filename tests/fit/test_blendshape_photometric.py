"""Photometric refinement of a blendshape (ICT) fit (`facefit.fit.photometric`): the weights
stay in their box [0, 1] under the landmark fit's sparsity prior, and renders of faces with
known sparse ARKit weights come back with them (packaged ``--model ict``, no shared data)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facefit.detect.base import FaceLandmarks
from facefit.fit.blendshape import fit_blendshape_face
from facefit.fit.core.rotation import rotation_from_euler
from facefit.fit.photometric import PhotometricConfig, refine_photometric
from facefit.model.face_model import FaceParams
from facefit.model.kinds import face_model
from facefit.model.named import load_named_model
from facefit.render import differentiable as dr
from facefit.synthetic.photos import frame_face, random_light

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_blendshape_fit import _antagonists  # noqa: E402

SIZE = 160


@pytest.fixture(scope="module")
def ict():
    return face_model(load_named_model("ict"))


def _render(fm, params: FaceParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, (V, 3) image-space vertices) of a skin-coloured head under random SH
    light, turned up to 20 degrees, with 1 % pixel noise."""
    x = fm.vertices(params).astype(np.float64)
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    verts = frame_face(x, lm, rotation_from_euler(*rng.uniform(-20, 20, 3)), SIZE, 0.6,
                       rng).image_points(x)
    sh, _ = random_light(rng)
    albedo = np.tile(np.array([0.72, 0.53, 0.44], np.float32), (len(x), 1))
    colour, cover = dr.render(torch.as_tensor(verts, dtype=torch.float32), fm.base.triangles,
                              SIZE, SIZE, torch.as_tensor(albedo), torch.as_tensor(sh))
    img = np.where(cover.numpy()[..., None], colour.numpy(), 0.3)
    img = img + rng.normal(0, 0.01, img.shape)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), verts


def test_photometric_refinement_recovers_bounded_weights(ict):
    fm = ict
    names = fm.expression_names
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    motion = np.sqrt((fm.base.expression_basis[lm] ** 2).sum(1).mean(0))
    arkit = np.array([n[0].islower() and not n.startswith("cheekRaiser") for n in names])
    candidates = np.flatnonzero(arkit & (motion >= 1.0))
    rng = np.random.default_rng(7)
    config = PhotometricConfig(size=SIZE, iterations=60)
    rows = []
    for _ in range(3):
        a = np.r_[0.8 * rng.standard_normal(10), np.zeros(fm.num_shape - 10)]
        active = rng.choice(candidates, 3, replace=False)
        while _antagonists({names[i] for i in active}):
            active = rng.choice(candidates, 3, replace=False)
        w = np.zeros(fm.num_expression)
        w[active] = rng.uniform(0.4, 1.0, 3)
        img, verts = _render(fm, FaceParams(a, w), rng)
        pts = verts[lm, :2] + rng.normal(0, 0.5, (68, 2))  # 0.5 px landmark noise
        face = FaceLandmarks(np.r_[pts.min(0), pts.max(0)].astype(np.float32), 1.0,
                             pts.astype(np.float32), None, "ibug68")
        start = fit_blendshape_face(fm, face, (SIZE, SIZE))
        res = refine_photometric(fm.base, start, img, landmarks_px=pts,
                                 landmark_vertex_ids=lm, config=config)
        got = res.fit.expression_coeffs
        np.testing.assert_array_equal(res.fit.extras["blendshape_weights"], got)
        assert got.min() >= 0.0 and got.max() <= 1.0
        mae0 = float(np.abs(start.extras["blendshape_weights"] - w).mean())
        mae = float(np.abs(got - w).mean())
        rows.append((mae0, mae))
        assert mae <= 0.1
        assert set(np.argsort(-got)[:3]) == set(active), [names[i] for i in active]
        assert res.photometric_error <= res.initial_photometric_error
    print("ICT photometric (3 renders): weight MAE landmarks -> photometric "
          + ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in rows))
