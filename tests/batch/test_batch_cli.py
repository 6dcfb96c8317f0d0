"""``facefit reconstruct`` as a batch, with the fake pipeline (`fakes`): distinct names,
no-face JSON, manifest and resume, retries, the process pool, and ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import fakes
import pytest

from facefit import cli
from facefit.batch.manifest import MANIFEST_NAME, Manifest, ManifestLocked

HERE = Path(__file__).parent


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.DELAY = 0.0
    fakes.install(monkeypatch.setattr, monkeypatch.setitem)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / MANIFEST_NAME).read_text().splitlines() if x]


def outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != MANIFEST_NAME)


def test_equal_stems_in_different_folders_get_distinct_results(tmp_path, fake, capsys):
    a, b = fakes.make_images(tmp_path, [10, 20], ["a/x.png", "b/x.png"])
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(a), str(b), "-o", str(out), "--formats", "glb,json",
                     "-q"]) == 0
    assert outputs(out) == ["a__x.json", "a__x_face0.glb", "b__x.json", "b__x_face0.glb"]
    assert json.loads((out / "a__x.json").read_text())["image"] == str(a)
    assert json.loads((out / "b__x.json").read_text())["image"] == str(b)
    assert (out / "b__x_face0.glb").read_text() == f"{b}\n"


def test_no_face_json_resume_and_retry_failed(tmp_path, fake, capsys):
    paths = fakes.make_images(tmp_path / "in", [10, 0, 13, 30])  # ok, no face, error, ok
    out = tmp_path / "out"
    argv = ["reconstruct", str(tmp_path / "in"), "-o", str(out), "--formats", "glb,json"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"{paths[1]}: no face found" in err
    assert f"{paths[2]}: reconstruction failed (boom)" in err
    assert json.loads((out / "img0001.json").read_text())["faces"] == []
    assert not (out / "img0002.json").exists()
    states = {Path(r["input"]).name: r["state"] for r in records(out)}
    assert states == {"img0000.png": "done", "img0001.png": "no_face", "img0002.png": "failed",
                      "img0003.png": "done"}
    assert records(out)[0]["files"] == ["img0000_face0.glb", "img0000.json"]

    # the same command again: nothing is redone; the earlier failure is still reported
    assert cli.main(argv) == 1
    assert len(records(out)) == 4
    assert "3 done before, 1 failed before (--retry-failed to redo)" in capsys.readouterr().err

    # asking for a format that was not written redoes the processed images (not the failed)
    assert cli.main(argv[:-1] + ["glb,json,ply", "-q"]) == 1
    assert {r["input"] for r in records(out)[4:]} == {str(paths[i]) for i in (0, 1, 3)}
    n = len(records(out))

    # --retry-failed redoes only the failed image (now fixed), and a deleted output is redone
    fakes.make_images(tmp_path / "in", [40], ["img0002.png"])
    (out / "img0003.json").unlink()
    assert cli.main(argv[:-1] + ["glb,json,ply", "--retry-failed", "-q"]) == 1  # no face: 1
    redone = records(out)[n:]
    assert sorted((Path(r["input"]).name, r["state"]) for r in redone) == [
        ("img0002.png", "done"), ("img0003.png", "done")]


def test_process_pool_streams_every_image_once(tmp_path, fake, capsys):
    paths = fakes.make_images(tmp_path / "in", [14] + list(range(20, 60)))
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(tmp_path / "in"), "-o", str(out), "--jobs", "2",
                     "--formats", "glb,json"]) == 1
    err = capsys.readouterr().err
    assert f"{paths[0]}: reconstruction failed (unpicklable)" in err  # reported, batch went on
    assert "41 images, 40 faces, 1 failed" in err
    assert len(outputs(out)) == 80
    assert Counter(r["state"] for r in records(out)) == {"done": 40, "failed": 1}
    for i in range(1, 41):
        assert json.loads((out / f"img{i:04d}.json").read_text())["faces"][0]["mean"] == 19 + i


def test_second_run_on_the_same_output_is_refused(tmp_path, fake, capsys):
    fakes.make_images(tmp_path / "in", [10])
    out = tmp_path / "out"
    with Manifest(out / MANIFEST_NAME):
        assert cli.main(["reconstruct", str(tmp_path / "in"), "-o", str(out)]) == cli.EXIT_OUTPUT
    assert "another facefit run is using this output folder" in capsys.readouterr().err
    with Manifest(out / MANIFEST_NAME), pytest.raises(ManifestLocked):
        Manifest(out / MANIFEST_NAME)


def test_torn_manifest_line_is_ignored(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text('{"input":"a","name":"a","state":"done","files":[],"formats":["json"],'
                    '"fingerprint":"f","faces":1}\n{"input":"b","na')
    with Manifest(path) as m:
        assert set(m.entries) == {"a"}
        assert m.is_finished("a", "a", ["json"], "f", None)
        assert not m.is_finished("a", "a", ["json"], "other options", None)
        assert not m.is_finished("a", "a", ["json", "glb"], "f", None)
    assert path.read_text().endswith('"na\n')  # the torn line is terminated, not rewritten


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_kill_worker_then_driver_then_resume(tmp_path):
    """kill -9 a worker, then the driver, mid-run; the re-run completes the batch: every
    image done exactly once, no partial or duplicated files, the manifest consistent."""
    n = 60
    fakes.make_images(tmp_path / "in", list(range(20, 20 + n)))
    out = tmp_path / "out"
    argv = [sys.executable, str(HERE / "_driver.py"), "0.05", "reconstruct",
            str(tmp_path / "in"), "-o", str(out), "--jobs", "2", "--formats", "glb,ply,json",
            "-q"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]))
    driver = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)

    def manifest_lines() -> int:
        p = out / MANIFEST_NAME
        return len(p.read_text().splitlines()) if p.exists() else 0

    deadline = time.monotonic() + 30
    while manifest_lines() < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = _children(driver.pid)
    assert workers, "no worker processes"
    os.kill(workers[0], signal.SIGKILL)
    while manifest_lines() < 25 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(10)
    for w in _children(driver.pid) + workers[1:]:
        try:  # orphaned workers of the killed pool exit on their own; do not leave them
            os.kill(w, signal.SIGKILL)
        except ProcessLookupError:
            pass
    first = manifest_lines()
    assert 25 <= first < n
    assert "a worker process died" in driver.stderr.read()  # and the pool carried on

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rec = records(out)
    finished = Counter(r["input"] for r in rec if r["state"] == "done")
    assert len(finished) == n and set(finished.values()) == {1}  # each image once
    assert len(rec) == n
    names = outputs(out)
    assert names == sorted(f"img{i:04d}{s}" for i in range(n)
                           for s in (".json", "_face0.glb", "_face0.ply"))
    for r in rec:
        assert set(r["files"]) <= set(names)
        for f in r["files"]:
            assert (out / f).read_text().startswith(r["input"]) or f.endswith(".json")
