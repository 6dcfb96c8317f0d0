"""Self-contained HTML pages for people: one per image, one per video clip, an index per
batch and a report per ``facefit eval`` run.

Every page is a single file with everything inlined (photo, overlay, meshes as binary glTF,
textures, plots, facefit's own small WebGL viewer ``viewer.js``): it opens from disk with
no network. Pages are built from the files facefit already wrote (``STEM.json`` and the
files it lists; ``STEM.jsonl``, ``STEM.glb``, ``STEM_overlay.mp4`` for a clip), so
``facefit view OUT`` can rebuild them at any time.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facefit.io.atomic import write_text_atomic
from facefit.io.records import first_face, read_video_jsonl

__all__ = ["build_pages", "glb_mesh", "write_eval_report", "write_image_page", "write_index",
           "write_video_page"]

PHOTO_MAX_PX = 1280
"""Longest side of the photo and overlay embedded in an image page (pixels)."""

_VIEWER_JS = Path(__file__).with_name("viewer.js")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f2;color:#222}
header{padding:10px 16px;background:#263238;color:#fff}header a{color:#9cf}
main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
.panel{background:#fff;border-radius:6px;padding:10px;box-shadow:0 1px 3px #0002}
.photo{position:relative;display:inline-block}.photo img{display:block;max-width:560px;
max-height:70vh}.photo svg{position:absolute;left:0;top:0;width:100%;height:100%}
canvas.mesh{width:520px;height:520px;display:block;touch-action:none;cursor:grab}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}
.bars{font-family:monospace;font-size:12px}.maps img{max-width:256px;margin:4px}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs a{display:block;width:200px;
text-decoration:none;color:#222}.thumbs img{width:200px;height:150px;object-fit:cover}
.fail{color:#b00}button.on{background:#263238;color:#fff}
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _image_data_uri(path: Path | np.ndarray, max_px: int | None = PHOTO_MAX_PX,
                    quality: int = 85) -> str:
    """The image at ``path`` (or an (H, W, 3) uint8 array) as a JPEG data URI, shrunk to
    ``max_px`` on its longer side."""
    source = Image.fromarray(np.ascontiguousarray(path[..., :3])) if isinstance(
        path, np.ndarray) else Image.open(path)
    with source as im:
        im = im.convert("RGB")
        if max_px and max(im.size) > max_px:
            im.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + _b64(buf.getvalue())


def glb_mesh(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float32 positions and (F, 3) int64 triangles of the first primitive of a
    binary glTF file (facefit's writers: float positions, uint8/16/32 indices).

    Raises ValueError when the bytes are not such a file."""
    try:
        magic, _, _ = struct.unpack_from("<4sII", data, 0)
        n_json = struct.unpack_from("<I", data, 12)[0]
        gltf = json.loads(data[20:20 + n_json])
        n_bin = struct.unpack_from("<I", data, 20 + n_json)[0]
        binary = data[28 + n_json:28 + n_json + n_bin]
        prim = gltf["meshes"][0]["primitives"][0]

        def accessor(i: int, dtype: str, width: int) -> np.ndarray:
            acc = gltf["accessors"][i]
            view = gltf["bufferViews"][acc["bufferView"]]
            start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
            count = acc["count"] * width
            return np.frombuffer(binary, dtype, count, start).reshape(-1, width)

        idx = gltf["accessors"][prim["indices"]]
        kind = {5121: "<u1", 5123: "<u2", 5125: "<u4"}[idx["componentType"]]
        positions = accessor(prim["attributes"]["POSITION"], "<f4", 3)
        triangles = accessor(prim["indices"], kind, 1).reshape(-1, 3).astype(np.int64)
    except (struct.error, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not a binary glTF mesh ({exc})") from None
    if magic != b"glTF":
        raise ValueError("not a binary glTF file")
    return positions, triangles


_RIM_CACHE: dict[bytes, str] = {}


def _rim_b64(glb: bytes) -> str:
    """Base64 uint8 per-vertex rim weights (`facefit.render.rim.rim_weight` x 255) of the
    mesh in ``glb``, computed once per triangulation; "" when there is no mesh."""
    if not glb:
        return ""
    try:
        positions, triangles = glb_mesh(glb)
    except ValueError:
        return ""
    key = hashlib.sha1(triangles.tobytes()).digest() + len(positions).to_bytes(8, "little")
    if key not in _RIM_CACHE:
        from facefit.render.rim import rim_weight

        # vertices split at UV seams (the ICT head) are one surface point: merge them so that
        # a seam is not taken for an open edge
        merged, inverse = np.unique(positions, axis=0, return_inverse=True)
        w = rim_weight(merged, inverse.reshape(-1)[triangles])[inverse.reshape(-1)]
        _RIM_CACHE[key] = _b64(np.round(w * 255).astype(np.uint8).tobytes())
    return _RIM_CACHE[key]


def _page(title: str, body: str, script: str = "", viewer: bool = False) -> str:
    js = _VIEWER_JS.read_text(encoding="utf-8") if viewer else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}<script>{js}\n{script}</script></body></html>\n")


def _json_script(element_id: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _resolve_image(summary: dict[str, Any], json_path: Path) -> Path | None:
    """The input photo recorded in the JSON: as given, or relative to the JSON's folder."""
    given = Path(summary.get("image", ""))
    for p in (given, json_path.parent / given):
        if str(given) and p.is_file():
            return p
    return None


def write_image_page(json_path: str | Path, out_path: str | Path | None = None,
                     summary: dict[str, Any] | None = None,
                     photo_rgb: np.ndarray | None = None) -> Path:
    """``STEM.html`` beside ``STEM.json``: the photo with the overlay (toggle) and the 68
    landmarks, each face's textured mesh in the WebGL viewer (drag to rotate, wheel to
    zoom; texture / shading / wireframe), its pose, fit residual and coefficients, and the
    albedo, comparison, detail or uncertainty maps when they were written.

    Args:
        json_path: the image's ``STEM.json`` (read unless ``summary`` is given; its folder
            holds the files the summary lists).
        out_path: the page (default ``STEM.html`` beside the JSON).
        summary: the JSON's content, when the caller has it in memory.
        photo_rgb: (H, W, 3) uint8 photo; default: read the summary's ``image`` path.

    Raises:
        ValueError: the JSON is not a facefit image summary (the message names the file).
    """
    json_path = Path(json_path)
    try:
        if summary is None:
            summary = json.loads(json_path.read_text(encoding="utf-8"))
        faces = summary["faces"]
        if not isinstance(faces, list):
            raise TypeError("'faces' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{json_path}: not a facefit image summary ({exc})") from None
    folder = json_path.parent
    out = Path(out_path) if out_path is not None else json_path.with_suffix(".html")
    photo: Path | np.ndarray | None = (photo_rgb if photo_rgb is not None
                                       else _resolve_image(summary, json_path))
    overlay = next((folder / f["files"]["overlay"] for f in faces
                    if (folder / f.get("files", {}).get("overlay", "\0")).is_file()), None)
    width, height = summary.get("width", 1), summary.get("height", 1)
    layers = []
    base = photo if photo is not None else overlay
    if base is not None:
        layers.append(f'<img id="photo" alt="photo" src="{_image_data_uri(base)}">')
    if overlay is not None and photo is not None:
        layers.append(f'<img id="overlay" alt="overlay" style="position:absolute;left:0;top:0;'
                      f'width:100%;height:100%" src="{_image_data_uri(overlay)}">')
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{max(width, height) / 300:.1f}"/>'
        for f in faces for x, y in (f.get("landmarks_68_2d") or []))
    layers.append(f'<svg id="landmarks" viewBox="-0.5 -0.5 {width} {height}" '
                  f'preserveAspectRatio="none" style="display:none" fill="#0f0">{dots}</svg>')
    glbs, maps = [], []
    for k, f in enumerate(faces):
        files = f.get("files", {})
        glb = folder / files["glb"] if "glb" in files else None
        data = glb.read_bytes() if glb is not None and glb.is_file() else b""
        glbs.append(f'<script type="application/octet-stream" id="glb-{k}">{_b64(data)}</script>'
                    f'<script type="application/octet-stream" id="rim-{k}">{_rim_b64(data)}'
                    f'</script>')
        for key, name in files.items():  # albedo, comparison, detail, uncertainty, ...
            p = folder / name
            if key != "overlay" and p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file():
                maps.append(f'<figure data-face="{k}"><img alt="{key}" src="'
                            f'{_image_data_uri(p, 768)}"><figcaption>face {k}: {key}'
                            f'</figcaption></figure>')
    buttons = "".join(f'<button data-face="{k}">face {k}</button>' for k in range(len(faces)))
    name = html.escape(json_path.stem)
    body = f"""<header><b>facefit</b> · {name} · {len(faces)} face(s) ·
{html.escape(str(summary.get('model', {}).get('name', '')))}</header><main>
<div class="panel"><div class="photo">{''.join(layers)}</div><div>
<label><input type="checkbox" id="show-overlay" checked> overlay</label>
<label><input type="checkbox" id="show-landmarks"> landmarks</label></div></div>
<div class="panel"><canvas class="mesh" id="mesh"></canvas><div id="modes">
<button data-mode="texture" class="on">texture</button><button data-mode="shading">shading
</button><button data-mode="wireframe">wireframe</button> {buttons}
<label><input type="checkbox" id="soft-edge" checked> soft edge</label></div>
<div id="status"></div></div>
<div class="panel" id="info"></div>
<div class="panel maps">{''.join(maps) or 'no detail, uncertainty or albedo maps'}</div>
</main>{_json_script('facefit-data', summary)}{''.join(glbs)}"""
    script = Path(__file__).with_name("image_page.js").read_text(encoding="utf-8")
    write_text_atomic(out, _page(f"facefit · {json_path.stem}", body, script, viewer=True))
    return out


def _manifest_failures(folder: Path) -> dict[str, str]:
    """Input → one-line reason for the failed inputs of the batch manifest in ``folder``."""
    path = folder / ".facefit-manifest.jsonl"
    last: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                last[str(rec["input"])] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
    return {src: str(rec.get("error") or rec.get("state"))
            for src, rec in last.items() if rec.get("state") == "failed"}


def write_index(folder: str | Path, pages: Iterable[Path] | None = None) -> Path:
    """``index.html`` in ``folder``: a thumbnail per image page (its overlay), the images
    without a face, and the failed inputs with their one-line reason (batch manifest)."""
    folder = Path(folder)
    items, no_face = [], []
    for json_path in sorted(folder.glob("*.json")):
        try:
            summary = json.loads(json_path.read_text(encoding="utf-8"))
            faces = summary["faces"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        page = json_path.with_suffix(".html")
        if not faces:
            no_face.append(f"<li>{html.escape(str(summary.get('image', json_path.stem)))}: "
                           f"no face found</li>")
            continue
        overlay = folder / faces[0].get("files", {}).get("overlay", "\0")
        thumb = _image_data_uri(overlay, 320, 75) if overlay.is_file() else ""
        yaw = faces[0].get("pose", {}).get("yaw_deg")
        items.append(f'<a href="{html.escape(page.name)}"><img alt="" src="{thumb}">'
                     f'<div>{html.escape(json_path.stem)}</div><div>{len(faces)} face(s), '
                     f'yaw {yaw}°</div></a>')
    fails = [f"<li>{html.escape(reason if src in reason else f'{src}: {reason}')}</li>"
             for src, reason in sorted(_manifest_failures(folder).items())]
    body = (f"<header><b>facefit</b> · {html.escape(str(folder))} · {len(items)} image(s)"
            f"</header><main><div class='panel'><div class='thumbs'>{''.join(items)}</div>"
            f"</div><div class='panel fail'><h3>failed ({len(fails) + len(no_face)})</h3>"
            f"<ul>{''.join(no_face + fails)}</ul></div></main>")
    out = folder / "index.html"
    write_text_atomic(out, _page("facefit · index", body))
    return out


def _svg_plot(series: dict[str, list[float]], times: list[float], ident: str,
              height: int = 180, unit: str = "") -> str:
    """An SVG line plot (one polyline per series, one point per frame) with a cursor."""
    w = 760
    t = np.asarray(times, float)
    vals = np.concatenate([np.asarray(v, float) for v in series.values()]) if series else []
    lo, hi = (float(np.min(vals)), float(np.max(vals))) if len(vals) else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    t0, t1 = (float(t.min()), float(t.max())) if len(t) else (0.0, 1.0)
    span = max(t1 - t0, 1e-9)
    colours = ["#d32f2f", "#388e3c", "#1976d2", "#f57c00", "#7b1fa2", "#0097a7", "#5d4037",
               "#c2185b", "#455a64", "#afb42b"]
    lines = []
    for i, (name, v) in enumerate(series.items()):
        xs = 40 + (t - t0) / span * (w - 50)
        ys = 10 + (hi - np.asarray(v, float)) / (hi - lo) * (height - 30)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        lines.append(f'<polyline data-series="{html.escape(name)}" points="{pts}" fill="none" '
                     f'stroke="{colours[i % len(colours)]}" stroke-width="1.2"/>')
    legend = " ".join(f'<tspan fill="{colours[i % len(colours)]}">{html.escape(n)}</tspan>'
                      for i, n in enumerate(series))
    return (f'<svg id="{ident}" class="plot" width="{w}" height="{height}" '
            f'data-t0="{t0}" data-t1="{t1}" viewBox="0 0 {w} {height}">'
            f'<rect x="40" y="10" width="{w - 50}" height="{height - 30}" fill="#fafafa" '
            f'stroke="#ccc"/><text x="2" y="18" font-size="10">{hi:.2f}{unit}</text>'
            f'<text x="2" y="{height - 20}" font-size="10">{lo:.2f}{unit}</text>'
            f'<text x="44" y="{height - 4}" font-size="11">{legend} · time {t0:.2f}-{t1:.2f} s'
            f'</text>{"".join(lines)}<line class="cursor" x1="40" x2="40" y1="10" '
            f'y2="{height - 20}" stroke="#000" stroke-width="1.5"/></svg>')


def write_video_page(jsonl_path: str | Path, out_path: str | Path | None = None) -> Path:
    """``STEM.html`` beside ``STEM.jsonl``: the overlay video, the animated mesh (the clip's
    GLB: identity plus expression morph targets, posed per frame) and plots over time of
    yaw/pitch/roll and of the expression weights, with a cursor that follows playback.

    Raises:
        ValueError: the file is not a facefit video JSON-lines file.
    """
    jsonl_path = Path(jsonl_path)
    head, records = read_video_jsonl(jsonl_path)
    frames = [r | {"face": f} for r in records if (f := first_face(r)) is not None]
    stem = jsonl_path.stem
    folder = jsonl_path.parent
    out = Path(out_path) if out_path is not None else jsonl_path.with_suffix(".html")
    times = [float(r["time_s"]) for r in frames]
    pose = {k: [float(r["face"]["pose"][f"{k}_deg"]) for r in frames]
            for k in ("yaw", "pitch", "roll")}
    n_expr = len(frames[0]["face"]["expression_coeffs"]) if frames else 0
    expr = {f"e{k}": [float(r["face"]["expression_coeffs"][k]) for r in frames]
            for k in range(n_expr)}
    video = folder / f"{stem}_overlay.mp4"
    glb = folder / f"{stem}.glb"
    video_tag = (f'<video id="video" controls muted playsinline width="520" '
                 f'src="data:video/mp4;base64,{_b64(video.read_bytes())}"></video>'
                 if video.is_file() else "<p>no overlay video</p>")
    anim = [{"t": float(r["time_s"]), "R": r["face"]["pose"]["rotation"],
             "w": r["face"]["expression_coeffs"]} for r in frames]
    glb_bytes = glb.read_bytes() if glb.is_file() else b""
    glb_b64, rim_b64 = _b64(glb_bytes), _rim_b64(glb_bytes)
    body = f"""<header><b>facefit</b> · {html.escape(stem)} · {len(records)} frames,
{len(frames)} with a face · {html.escape(str(head['model'].get('name')))}</header><main>
<div class="panel">{video_tag}<div id="time">t = 0.00 s</div></div>
<div class="panel"><canvas class="mesh" id="mesh"></canvas><div id="modes">
<button data-mode="texture">texture</button><button data-mode="shading" class="on">shading
</button><button data-mode="wireframe">wireframe</button>
<label><input type="checkbox" id="soft-edge" checked> soft edge</label></div>
<div id="status"></div></div>
<div class="panel"><h4>head pose (degrees)</h4>{_svg_plot(pose, times, 'plot-pose', unit='°')}
<h4>expression weights (N(0,1) units)</h4>{_svg_plot(expr, times, 'plot-expression')}</div>
</main>{_json_script('facefit-anim', anim)}
<script type="application/octet-stream" id="glb">{glb_b64}</script>
<script type="application/octet-stream" id="rim">{rim_b64}</script>"""
    script = Path(__file__).with_name("video_page.js").read_text(encoding="utf-8")
    write_text_atomic(out, _page(f"facefit · {stem}", body, script, viewer=True))
    return out


def write_eval_report(out_dir: str | Path, title: str = "facefit eval", prefix: str = ""
                      ) -> Path:
    """``PREFIX_report.html`` (``report.html`` without a prefix) in ``out_dir``: every PNG
    figure of the run (files named ``PREFIX*``: CED curves, per-yaw bars, heat maps) inlined,
    with its ``.json``/``.csv``/``.txt`` results shown as text."""
    out_dir = Path(out_dir)
    figs = [f'<figure class="panel"><img alt="{html.escape(p.stem)}" style="max-width:720px" '
            f'src="data:image/png;base64,{_b64(p.read_bytes())}"><figcaption>'
            f'{html.escape(p.name)}</figcaption></figure>'
            for p in sorted(out_dir.glob(f"{prefix}*.png"))]
    texts = []
    for p in sorted(list(out_dir.glob(f"{prefix}*.json")) + list(out_dir.glob(f"{prefix}*.csv"))
                    + list(out_dir.glob(f"{prefix}*.txt"))):
        if p.stat().st_size <= 200_000:
            texts.append(f"<details class='panel'><summary>{html.escape(p.name)}</summary><pre>"
                         f"{html.escape(p.read_text(encoding='utf-8', errors='replace'))}"
                         f"</pre></details>")
    body = (f"<header><b>{html.escape(title)}</b> · {html.escape(str(out_dir))}</header><main>"
            f"{''.join(figs) or '<p>no figures</p>'}{''.join(texts)}</main>")
    out = out_dir / (f"{prefix}_report.html" if prefix else "report.html")
    write_text_atomic(out, _page(title, body))
    return out


def build_pages(out_dir: str | Path) -> list[Path]:
    """(Re)build every page of an output folder from the files in it: one per image
    (``*.json`` summaries), one per clip (``*.jsonl``), and ``index.html``. Returns the
    pages written. Raises FileNotFoundError when the folder does not exist."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such output folder")
    pages = []
    for p in sorted(folder.glob("*.json")):
        try:
            pages.append(write_image_page(p))
        except ValueError:
            continue  # not an image summary (e.g. an eval result)
    for p in sorted(folder.glob("*.jsonl")):
        if p.name.startswith("."):
            continue
        try:
            pages.append(write_video_page(p))
        except ValueError:
            continue
    if list(folder.glob("*.json")):
        pages.append(write_index(folder))
    return pages
