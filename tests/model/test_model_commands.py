"""``facefit model info|list|convert|build`` through an argparse parser of our own."""

from __future__ import annotations

import argparse

import numpy as np
from _model_formats import make_model, write_bfm2009

from facefit.cli.model import register
from facefit.model import load_model
from facefit.model.build import synthetic_face_grid, synthetic_linear_samples
from facefit.model.io_facescape import read_bilinear


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facefit")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def write_obj(path, verts, tri) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in tri]
    path.write_text("\n".join(lines) + "\n")


def test_info_convert_list(tmp_path, capsys, monkeypatch):
    write_bfm2009(tmp_path, make_model())
    assert run(["model", "info", str(tmp_path / "01_MorphableModel.mat")]) == 0
    out = capsys.readouterr().out
    assert "vertices:    144" in out and "shape:       6 components" in out
    assert "expression:  4 components" in out and "ibug68 (68)" in out
    assert "licence:     Basel Face Model 2009" in out and "UVs:" in out
    assert run(["model", "convert", str(tmp_path / "01_MorphableModel.mat"),
                str(tmp_path / "models" / "bfm.npz")]) == 0
    m = load_model(tmp_path / "models" / "bfm.npz")
    assert m.num_expression == 4
    monkeypatch.setenv("FACEFIT_MODEL_DIR", str(tmp_path / "models"))
    assert run(["model", "list"]) == 0
    assert "bfm.npz" in capsys.readouterr().out
    assert run(["model", "info", str(tmp_path / "missing.npz")]) == 4  # model not loaded
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file not found" in err


def test_build_pca_with_expressions_and_report(tmp_path, capsys):
    mean, tri = synthetic_face_grid(12, 10)
    sig = np.array([6.0, 4.0, 2.0])
    meshes, _ = synthetic_linear_samples(mean, sig, n=12, seed=1, rigid_deg=5, rigid_mm=5)
    (tmp_path / "ids").mkdir()
    for i, m in enumerate(meshes):
        write_obj(tmp_path / "ids" / f"s{i:02d}.obj", m, tri)
    _, exp_basis = synthetic_linear_samples(mean, np.array([3.0, 1.0]), n=2, seed=2)
    rng = np.random.default_rng(0)
    for s in range(3):
        d = tmp_path / "exps" / f"subj{s}"
        d.mkdir(parents=True)
        write_obj(d / "neutral.obj", meshes[s], tri)
        for e in range(3):
            off = (exp_basis @ (rng.standard_normal(2) * [3.0, 1.0])).reshape(-1, 3)
            write_obj(d / f"e{e}.obj", meshes[s] + off, tri)
    out = tmp_path / "built.npz"
    code = run(["model", "build", "--meshes", str(tmp_path / "ids"), "-o", str(out),
                "--components", "3", "--expressions", str(tmp_path / "exps"),
                "--exp-components", "2", "--report", str(tmp_path / "rep")])
    assert code == 0
    text = capsys.readouterr().out
    assert "3 shape components" in text and "k\teigenvalue_mm2" in text
    m = load_model(out)
    assert (m.num_shape, m.num_expression, m.num_vertices) == (3, 2, 120)
    assert (tmp_path / "rep" / "variance.png").is_file()
    assert (tmp_path / "rep" / "expression" / "variance.tsv").is_file()
    # --variance instead of --components
    assert run(["model", "build", "--meshes", str(tmp_path / "ids"), "-o", str(out),
                "--variance", "0.5"]) == 0
    assert load_model(out).num_shape == 1
    assert run(["model", "build", "--meshes", str(tmp_path / "nothing"), "-o", str(out)]) == 1


def test_build_grid_bilinear(tmp_path, capsys):
    mean, tri = synthetic_face_grid(8, 8)
    rng = np.random.default_rng(1)
    core = rng.standard_normal((mean.size, 3, 2))
    core[:, 0, 0] += mean.ravel()
    for s in range(4):
        w = np.r_[1.0, rng.standard_normal(2) * 0.5]
        for j, name in enumerate(["neutral", "smile"]):
            e = np.r_[1.0, float(j)]
            verts = np.einsum("dab,a,b->d", core, w, e).reshape(-1, 3)
            d = tmp_path / "grid" / f"p{s}"
            d.mkdir(parents=True, exist_ok=True)
            write_obj(d / f"{name}.obj", verts, tri)
    out = tmp_path / "bl.npz"
    assert run(["model", "build", "--grid", str(tmp_path / "grid"), "-o", str(out),
                "--report", str(tmp_path / "rep"), "--no-align", "--components", "3"]) == 0
    assert "bilinear model: 4 subjects x 2 expressions" in capsys.readouterr().out
    bm = read_bilinear(out)
    np.testing.assert_allclose(
        bm.vertices(bm.extras["id_weights"][2], bm.extras["exp_weights"][1]),
        np.loadtxt(tmp_path / "grid" / "p2" / "smile.obj", usecols=(1, 2, 3),
                   max_rows=64), atol=1e-3)
    m = load_model(out)  # linearised at the neutral expression
    assert m.num_vertices == 64
    assert (tmp_path / "rep" / "identity" / "variance.png").is_file()
