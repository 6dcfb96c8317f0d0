"""Live Link Face-style CSV of ARKit weights per video frame (`facefit.io.arkit_export`)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from facefit.io.arkit_export import (
    LIVE_LINK_ORDER,
    csv_header,
    timecode,
    write_live_link_csv,
)
from facefit.model.arkit import ARKIT_52


def test_columns_and_timecode():
    assert sorted(LIVE_LINK_ORDER) == sorted(ARKIT_52) and len(LIVE_LINK_ORDER) == 52
    cols = csv_header().split(",")
    assert len(cols) == 2 + 52 + 9 and cols[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"]
    assert cols[-9:-6] == ["HeadYaw", "HeadPitch", "HeadRoll"] and "TongueOut" in cols
    assert timecode(0, 30) == "00:00:00:00.000"
    assert timecode(59, 30) == "00:00:01:29.000"
    assert timecode(30 * 3661 + 7, 29.97) == "01:01:01:07.000"


def test_csv_one_row_per_frame(tmp_path):
    head = {"model": "m", "fps": 25.0, "shape_coeffs": [], "identity": "clip"}
    frames = [{"frame": 0, "time_s": 0.0, "face": False},
              {"frame": 1, "time_s": 0.04, "face": True, "yaw_deg": 30.0, "pitch_deg": -10.0,
               "roll_deg": 0.0, "arkit_blendshapes": {"jawOpen": 0.75, "eyeBlinkRight": 1.0}},
              {"frame": 2, "time_s": 0.08, "face": True, "yaw_deg": 0.0, "pitch_deg": 0.0,
               "roll_deg": 5.0}]
    src = tmp_path / "clip.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [head, *frames]) + "\n")
    out = write_live_link_csv(src)
    assert out == tmp_path / "clip.csv"
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    assert [r["Timecode"] for r in rows] == ["00:00:00:00.000", "00:00:00:01.000",
                                             "00:00:00:02.000"]
    assert all(r["BlendShapeCount"] == "61" for r in rows)
    assert float(rows[1]["JawOpen"]) == 0.75 and float(rows[1]["EyeBlinkRight"]) == 1.0
    assert float(rows[1]["HeadYaw"]) == pytest.approx(math.radians(30), abs=1e-4)
    assert float(rows[1]["HeadPitch"]) == pytest.approx(math.radians(-10), abs=1e-4)
    assert float(rows[0]["JawOpen"]) == 0.0 and float(rows[0]["HeadYaw"]) == 0.0
    assert float(rows[2]["HeadRoll"]) == pytest.approx(math.radians(5), abs=1e-4)
    assert float(rows[2]["JawOpen"]) == 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"frame": 0}\n')
    with pytest.raises(ValueError, match="bad.jsonl: not a facefit video"):
        write_live_link_csv(bad)
    assert not (tmp_path / "bad.csv").exists()
