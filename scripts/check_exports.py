#!/usr/bin/env python3
"""Open exported meshes in real clients: assimp, the Khronos glTF validator and Blender.

Usage: python scripts/check_exports.py OUT_DIR [--validator DIR] [--no-blender]

For every ``*.obj``, ``*.ply`` and ``*.glb`` in OUT_DIR it checks that
  * ``assimp info FILE`` reads it with the file's own vertex and face counts (assimp may
    split vertices at seams, so only ``>=`` is required for vertices);
  * the glTF validator (``npm install gltf-validator@2.0.0-dev.3.10`` in DIR, default
    /tmp/gv) reports ``numErrors == 0`` for each GLB;
  * Blender (``blender -b --factory-startup``) imports each OBJ and GLB with the expected
    vertex and triangle counts.
Clients (Debian): ``apt-get install -y --no-install-recommends assimp-utils blender
python3-numpy``. Not part of the test suite: CI does not have these clients. Standard library
only; exit status 1 when a check fails, 2 when a client is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path


def counts(path: Path) -> tuple[int, int]:
    """(vertices, triangles) as written in the file itself."""
    if path.suffix == ".obj":
        v = f = 0
        with open(path, encoding="ascii") as fh:
            for line in fh:
                v += line.startswith("v ")
                f += line.startswith("f ")
        return v, f
    if path.suffix == ".ply":
        header = path.read_bytes()[:4096].split(b"end_header")[0].decode("ascii")
        v = int(re.search(r"element vertex (\d+)", header).group(1))
        f = int(re.search(r"element face (\d+)", header).group(1))
        return v, f
    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + n])
    v = f = 0
    for mesh in gltf["meshes"]:
        for prim in mesh["primitives"]:
            v += gltf["accessors"][prim["attributes"]["POSITION"]]["count"]
            f += gltf["accessors"][prim["indices"]]["count"] // 3
    return v, f


def check_assimp(path: Path, want: tuple[int, int]) -> bool:
    res = subprocess.run(["assimp", "info", str(path)], capture_output=True, text=True)
    got_v = re.search(r"Vertices:\s+(\d+)", res.stdout)
    got_f = re.search(r"Faces:\s+(\d+)", res.stdout)
    ok = res.returncode == 0 and got_v and got_f
    ok = bool(ok and int(got_v.group(1)) >= want[0] and int(got_f.group(1)) == want[1])
    if res.returncode == 0:
        detail = (f"vertices {got_v.group(1) if got_v else '?'}"
                  f" faces {got_f.group(1) if got_f else '?'}")
    else:
        detail = res.stderr.strip()[-300:]
    print(f"{'ok  ' if ok else 'FAIL'} assimp info {path.name}: {detail}"
          f" (file: {want[0]} / {want[1]})")
    return ok


def check_gltf_validator(path: Path, validator_dir: Path) -> bool:
    script = (
        "const v = require('gltf-validator'); const fs = require('fs');"
        "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])))"
        ".then(r => { console.log(JSON.stringify({errors: r.issues.numErrors,"
        " warnings: r.issues.numWarnings, infos: r.issues.numInfos,"
        " messages: r.issues.messages.slice(0, 5).map(m => m.code + ': ' + m.message)})); })"
        ".catch(e => { console.log(JSON.stringify({errors: -1, messages: [String(e)]})); });"
    )
    res = subprocess.run(["node", "-e", script, str(path.resolve())], capture_output=True,
                         text=True, cwd=validator_dir)
    try:
        report = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"errors": -1, "messages": [res.stderr.strip()[-300:]]}
    ok = report["errors"] == 0
    print(f"{'ok  ' if ok else 'FAIL'} gltf-validator {path.name}: numErrors {report['errors']}"
          f" numWarnings {report.get('warnings')} numInfos {report.get('infos')}"
          + "".join(f"\n       {m}" for m in report.get("messages", [])))
    return ok


BLENDER_EXPR = """
import numpy as np; np.bool = bool  # Blender 3.4's glTF importer uses the removed np.bool
import bpy, json, sys
path = sys.argv[sys.argv.index('--') + 1]
bpy.ops.wm.read_factory_settings(use_empty=True)
if path.endswith('.obj'):
    bpy.ops.wm.obj_import(filepath=path)
else:
    bpy.ops.import_scene.gltf(filepath=path)
meshes = [o.data for o in bpy.context.scene.objects if o.type == 'MESH']
print('RESULT', json.dumps({'vertices': sum(len(m.vertices) for m in meshes),
      'triangles': sum(len(p.vertices) - 2 for m in meshes for p in m.polygons),
      'uv_layers': sum(len(m.uv_layers) for m in meshes),
      'images': [i.name for i in bpy.data.images if i.size[0] > 0]}))
"""


def check_blender(path: Path, want: tuple[int, int]) -> bool:
    res = subprocess.run(["blender", "-b", "--factory-startup", "--python-expr", BLENDER_EXPR,
                          "--", str(path.resolve())], capture_output=True, text=True)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(f"FAIL blender import {path.name}: {(res.stdout + res.stderr)[-500:]}")
        return False
    got = json.loads(line[7:])
    ok = got["vertices"] == want[0] and got["triangles"] == want[1]
    print(f"{'ok  ' if ok else 'FAIL'} blender import {path.name}: vertices {got['vertices']}"
          f" triangles {got['triangles']} uv layers {got['uv_layers']} images {got['images']}"
          f" (file: {want[0]} / {want[1]})")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--validator", type=Path, default=Path("/tmp/gv"),
                    help="folder where gltf-validator was npm-installed")
    ap.add_argument("--no-blender", action="store_true")
    args = ap.parse_args(argv)
    files = sorted(p for p in args.out_dir.iterdir() if p.suffix in (".obj", ".ply", ".glb"))
    if not files:
        print(f"no .obj/.ply/.glb files in {args.out_dir}")
        return 1
    tools = ["assimp", "node"] + ([] if args.no_blender else ["blender"])
    missing = [t for t in tools if shutil.which(t) is None]
    if not (args.validator / "node_modules" / "gltf-validator").is_dir():
        missing.append(f"gltf-validator in {args.validator}")
    if missing:
        print("missing clients: " + ", ".join(missing))
        return 2
    ok = True
    for path in files:
        want = counts(path)
        ok &= check_assimp(path, want)
        if path.suffix == ".glb":
            ok &= check_gltf_validator(path, args.validator)
        if path.suffix in (".obj", ".glb") and not args.no_blender:
            ok &= check_blender(path, want)
    print("all checks passed" if ok else "some checks FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
