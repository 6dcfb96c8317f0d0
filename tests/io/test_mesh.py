"""`facefit.io.mesh.read_mesh`: OBJ parsed in file order (quads fanned,
negative indices), other formats through trimesh, point clouds without triangles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from facefit.io.mesh import read_mesh


def test_obj_quads_negative_indices_and_uvs_keep_the_file_order(tmp_path: Path) -> None:
    obj = tmp_path / "quad.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\n"
                   "f 1/1 2/2 3/3 4/1\nf -4 -2 -1\n")
    v, f = read_mesh(obj)
    np.testing.assert_array_equal(v, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    assert f.dtype == np.int64


def test_ply_and_point_cloud_through_trimesh(tmp_path: Path) -> None:
    box = trimesh.creation.box()
    box.export(tmp_path / "box.ply")
    v, f = read_mesh(tmp_path / "box.ply")
    np.testing.assert_allclose(v, box.vertices)
    np.testing.assert_array_equal(f, box.faces)
    trimesh.PointCloud(box.vertices).export(tmp_path / "cloud.ply")
    v, f = read_mesh(tmp_path / "cloud.ply")
    assert v.shape == (8, 3) and f.shape == (0, 3)
