"""The batch manifest: one JSON line per finished image, appended by the driver only.

Each line records an image's input, output name, state (``done``, ``no_face``, ``failed``),
output files, the formats written and the options' fingerprint. The last line of an input
wins. Lines are appended and flushed one at a time, so a ``kill -9`` loses at most the line
being written; a torn last line is ignored when the manifest is read back. Outputs are
published before their line is written: an image whose line is missing is simply done again
(its files are replaced atomically by identical ones).

An exclusive lock (``flock``) on the manifest keeps two runs from sharing an output folder;
the kernel releases it when the process dies, however it dies.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MANIFEST_NAME = ".facefit-manifest.jsonl"
"""The manifest's file name inside a local output folder."""

FINISHED = ("done", "no_face")

_HELD_FDS: set[int] = set()  # descriptors of the manifests this process holds locked


def close_inherited() -> None:
    """In a forked worker: close the driver's locked manifest descriptors, so that the lock
    dies with the driver (a lock belongs to every process that has the descriptor)."""
    for fd in list(_HELD_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()


class ManifestLocked(RuntimeError):
    """Another run holds the manifest (the same output folder)."""


@dataclass(frozen=True)
class Entry:
    """The latest record of one input."""

    source: str
    name: str
    state: str
    files: tuple[str, ...]
    formats: tuple[str, ...]
    fingerprint: str
    faces: int
    error: str | None


class Manifest:
    """Open (creating it if needed) and lock the manifest at ``path``.

    Raises `ManifestLocked` when another process holds it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _HELD_FDS.add(self._file.fileno())
        except BlockingIOError:
            self._file.close()
            raise ManifestLocked(f"{self.path}: another facefit run is using this output "
                                 "folder") from None
        except ImportError:  # pragma: no cover - not POSIX
            pass
        self.entries = self._read()
        self._ends_clean()

    def _read(self) -> dict[str, Entry]:
        self._file.seek(0)
        out: dict[str, Entry] = {}
        for line in self._file:
            try:
                d = json.loads(line)
                e = Entry(d["input"], d["name"], d["state"], tuple(d.get("files", ())),
                          tuple(d.get("formats", ())), d.get("fingerprint", ""),
                          int(d.get("faces", 0)), d.get("error"))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill, or not ours
            out[e.source] = e
        return out

    def _ends_clean(self) -> None:
        """Terminate a torn last line so that the next record starts on its own line."""
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                self._file.write("\n")
                self._file.flush()

    def is_finished(self, source: str, name: str, formats: Iterable[str], fingerprint: str,
                    out_dir: str | os.PathLike[str] | None, retry_failed: bool = False) -> bool:
        """Whether ``source`` needs no work: finished before (or failed, unless
        ``retry_failed``) under the same name and options, with at least ``formats``
        written and, for a local ``out_dir``, every recorded file still there."""
        e = self.entries.get(source)
        if e is None or e.name != name or e.fingerprint != fingerprint:
            return False
        if e.state == "failed":
            return not retry_failed
        if e.state not in FINISHED or not set(formats) <= set(e.formats):
            return False
        if out_dir is not None:
            return all((Path(out_dir) / f).is_file() for f in e.files)
        return True

    def record(self, result: Any, formats: Iterable[str], fingerprint: str) -> None:
        """Append ``result`` (a `facefit.batch.work.ImageResult`) and flush it."""
        d = {"input": result.source, "name": result.name, "state": result.state,
             "faces": result.faces, "files": list(result.files), "formats": list(formats),
             "fingerprint": fingerprint, "error": result.error,
             "time": round(time.time(), 3)}
        self._file.write(json.dumps(d, separators=(",", ":")) + "\n")
        self._file.flush()
        self.entries[result.source] = Entry(result.source, result.name, result.state,
                                            tuple(result.files), tuple(formats), fingerprint,
                                            result.faces, result.error)

    def close(self) -> None:
        """Sync and unlock."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            _HELD_FDS.discard(self._file.fileno())
            self._file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
