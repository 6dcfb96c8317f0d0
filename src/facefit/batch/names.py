"""Output base names for a batch: one distinct name per input, readable where possible."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import PurePosixPath


def _parts(source: str) -> list[str]:
    """Path components of a local path or URL (scheme and host kept as leading parts)."""
    text = source.replace("\\", "/")
    if "://" in text:
        scheme, rest = text.split("://", 1)
        return [scheme, *[p for p in rest.split("/") if p]]
    return [p for p in PurePosixPath(text).parts if p not in ("/", ".")]


def output_names(sources: Sequence[str]) -> list[str]:
    """A distinct output base name for each input path or URL (compared case-insensitively,
    for case-insensitive file systems).

    The name is the file's stem when no other input has the same stem; inputs that share a
    stem are told apart by their parent folders (``a/x.png``, ``b/x.png`` → ``a__x``,
    ``b__x``), and then by their suffix (``x.png``, ``x.jpg`` → ``x_png``, ``x_jpg``); where
    that is still ambiguous, by a hash of the whole path. Names depend only on the input list,
    so a re-run of the same command gets the same names.
    """
    parts = [_parts(s) for s in sources]
    stems = [PurePosixPath(p[-1]).stem if p else "image" for p in parts]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, stem in enumerate(stems):
        groups[stem.lower()].append(i)
    names = list(stems)
    for members in groups.values():
        if len(members) == 1:
            continue
        chosen = _disambiguate([parts[i] for i in members], [stems[i] for i in members])
        for i, name in zip(members, chosen, strict=True):
            names[i] = name
    taken: dict[str, int] = {}
    for i, name in enumerate(names):  # a disambiguated name may equal another input's stem
        if name.lower() in taken:
            names[i] = f"{name}-{_hash(sources[i])}"
        taken[names[i].lower()] = i
    return names


def _disambiguate(parts: list[list[str]], stems: list[str]) -> list[str]:
    depth = max(len(p) for p in parts)
    for k in range(1, depth):
        cand = ["__".join([*p[-1 - k:-1], s]) for p, s in zip(parts, stems, strict=True)]
        if len({c.lower() for c in cand}) == len(cand):
            return cand
    suffixed = [f"{s}_{PurePosixPath(p[-1]).suffix.lstrip('.')}" if p else s
                for p, s in zip(parts, stems, strict=True)]
    if len({c.lower() for c in suffixed}) == len(suffixed):
        return suffixed
    return [f"{s}-{_hash('/'.join(p))}" for p, s in zip(parts, stems, strict=True)]


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
