"""Seeded corruptions of every model format: a one-line `ModelFileError` or a clean load.

The cases run in one worker process (`_fuzz_worker.py`) under an address-space limit, so
that an unchecked allocation shows up as a ``MemoryError`` (a failure here) instead of
swapping the machine, a crash names its case, and a hang hits the timeout. Per case: at
most `CASE_SECONDS` and `CASE_MB` of traced memory. The summary (cases per format,
outcomes, slowest case, largest memory) is printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_fuzz_worker.py")
FORMATS = ("facefit-npz", "facescape-npz", "bfm2009-mat", "bfm2017-h5", "flame-pkl",
           "flame-embedding-npy", "flame-static-pkl", "flame-dynamic-npy", "ict-obj", "sfm-bin")
CASE_SECONDS = 3.0  # generous: a busy 2-core machine; typical cases take milliseconds
CASE_MB = 200.0  # traced peak per case; the seed models are under 2 MB
ADDRESS_SPACE = 3 << 30  # the worker needs about 0.3 GB of address space
TIMEOUT = 300


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict]:
    out = tmp_path_factory.mktemp("fuzz") / "cases.jsonl"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, str(WORKER), str(out)], env=env,
                              preexec_fn=_limit, capture_output=True, text=True,
                              timeout=TIMEOUT)
        problem = "" if proc.returncode == 0 else (
            f"worker exited {proc.returncode}: {proc.stderr[-2000:]}")
    except subprocess.TimeoutExpired:
        problem = f"worker still running after {TIMEOUT} s (a hang)"
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    if problem:
        last = [x for x in lines if x.get("start")][-1:] or [{}]
        pytest.fail(f"{problem}; last case started: {last[0]}")
    rows = [x for x in lines if "outcome" in x]
    summary = next(x for x in lines if x.get("summary"))
    print(_report(rows, summary))
    return rows, summary


def _report(rows: list[dict], summary: dict) -> str:
    lines = ["", "format                 cases  error  load  slowest s  peak MB"]
    for name in FORMATS:
        r = [x for x in rows if x["format"] == name]
        c = Counter(x["outcome"].split(" ")[0] for x in r)
        lines.append(f"{name:<22} {len(r):5d} {c['error']:6d} {c['load']:5d} "
                     f"{max(x['seconds'] for x in r):10.3f} {max(x['peak_mb'] for x in r):8.1f}")
    slow = max(rows, key=lambda x: x["seconds"])
    big = max(rows, key=lambda x: x["peak_mb"])
    lines += [f"total {len(rows)} cases; slowest {slow['seconds']:.3f} s ({slow['format']} "
              f"{slow['case']}); largest traced peak {big['peak_mb']:.1f} MB ({big['format']} "
              f"{big['case']}); worker peak RSS {summary['rss_peak_mb']:.0f} MB, "
              f"address space {summary['vm_peak_mb']:.0f} MB"]
    return "\n".join(lines)


@pytest.mark.parametrize("name", FORMATS)
def test_corrupted_files_fail_cleanly(fuzz, name):
    rows, _ = fuzz
    mine = [x for x in rows if x["format"] == name]
    assert len(mine) >= 50 + 40 + 1  # truncations, flips, at least one huge header
    bad = [f"{x['case']}: {x['outcome']}" for x in mine if x["outcome"] not in ("error",
                                                                               "load")]
    assert not bad, bad[:5]
    slow = [f"{x['case']}: {x['seconds']:.2f} s" for x in mine if x["seconds"] > CASE_SECONDS]
    assert not slow, slow
    big = [f"{x['case']}: {x['peak_mb']:.0f} MB" for x in mine if x["peak_mb"] > CASE_MB]
    assert not big, big
    # a cut binary file is (nearly always) an error; a text OBJ cut at a line end is a
    # smaller valid mesh
    cut = [x for x in mine if x["case"].startswith("truncate@")]
    if name != "ict-obj":
        assert sum(x["outcome"] == "error" for x in cut) >= 0.9 * len(cut)
    huge = [x for x in mine if x["case"].startswith("huge:")]
    assert huge and all(x["outcome"] == "error" for x in huge), huge


def test_worker_memory_stayed_small(fuzz):
    _, summary = fuzz
    assert summary["rss_peak_mb"] < 1000
