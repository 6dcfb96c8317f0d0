"""Animation exports of ARKit blendshape weights: a Live Link Face-style CSV per video.

The CSV has the layout Epic's Live Link Face app records (and animation tools such as
Unreal's Live Link Face importer and Blender add-ons read): a header ``Timecode,
BlendShapeCount, <52 ARKit names, capitalised, in ARKit's order>, HeadYaw, HeadPitch,
HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll``,
then one row per video frame: timecode ``HH:MM:SS:FF.mmm`` (frame FF of the second at the
clip's rate, mmm the sub-frame fraction, always 000 here), the count 61, the weights in
[0, 1] and the head angles in radians (facefit's convention, `README` "pose"; eye angles are
not estimated and written as 0). Frames without a face get zeros.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from facefit.io.atomic import write_text_atomic

LIVE_LINK_ORDER = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawRight", "jawLeft", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight",
    "mouthLeft", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
"""The 52 ARKit blendshapes in ``ARFaceAnchor`` / Live Link Face column order."""

HEAD_EYE_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                    "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")


def csv_header() -> str:
    """The CSV's header line (no newline)."""
    names = [n[0].upper() + n[1:] for n in LIVE_LINK_ORDER]
    return ",".join(["Timecode", "BlendShapeCount", *names, *HEAD_EYE_COLUMNS])


def timecode(frame: int, fps: float) -> str:
    """SMPTE-style ``HH:MM:SS:FF.mmm`` of frame ``frame`` (0-based) of a clip at ``fps``."""
    rate = max(int(round(fps)), 1)
    seconds, ff = divmod(int(frame), rate)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.000"


def live_link_rows(records: list[dict], fps: float) -> list[str]:
    """One CSV row per frame record of a video's JSON lines (`facefit.video.pipeline`)."""
    count = len(LIVE_LINK_ORDER) + len(HEAD_EYE_COLUMNS)
    rows = []
    for rec in records:
        weights = rec.get("arkit_blendshapes") or {}
        values = [float(weights.get(n, 0.0)) for n in LIVE_LINK_ORDER]
        head = [math.radians(float(rec.get(k, 0.0)))
                for k in ("yaw_deg", "pitch_deg", "roll_deg")] if rec.get("face") else [0.0] * 3
        cells = [timecode(int(rec["frame"]), fps), str(count)]
        cells += [f"{v:.4f}" for v in values + head + [0.0] * 6]
        rows.append(",".join(cells))
    return rows


def write_live_link_csv(jsonl_path: str | os.PathLike[str],
                        csv_path: str | os.PathLike[str] | None = None) -> Path:
    """Write the Live Link Face-style CSV of a video's JSON lines (default: same stem,
    ``.csv``), atomically; returns its path."""
    src = Path(jsonl_path)
    lines = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line]
    if not lines or "fps" not in lines[0]:
        raise ValueError(f"{src}: not a facefit video JSON lines file (no header line)")
    frames = [r for r in lines[1:] if "frame" in r]
    out = src.with_suffix(".csv") if csv_path is None else Path(csv_path)
    text = "\n".join([csv_header(), *live_link_rows(frames, float(lines[0]["fps"]))]) + "\n"
    return write_text_atomic(out, text)

