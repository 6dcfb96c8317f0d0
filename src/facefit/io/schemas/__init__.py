"""facefit's output schemas: the version written into every JSON and NPZ, and JSON Schema
(draft 2020-12) files for the image summary (``STEM.json``) and the video JSON lines
(``STEM.jsonl``).

Both outputs describe a face with the same record (``faces[]`` of the image JSON, ``faces[]``
of each video frame line): ``box``, ``score``, ``pose`` (Euler angles, rotation,
translation, scale and the ``camera``), ``landmarks_68_2d``, ``expression_coeffs``,
``residual_px`` and, when the model has them, ``arkit_blendshapes``; each output adds its
own fields (texture files and timings for a photo, smoothing for a clip). The schemas are
``image.schema.json`` and ``video.schema.json`` (frame lines; the header line is
``video_header.schema.json``), sharing ``face.schema.json``.

``SCHEMA_VERSION`` is ``MAJOR.MINOR``: the minor number grows when fields are added, the
major one when a field is renamed, removed or changes meaning.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.0"
"""Version of facefit's JSON and NPZ outputs (the ``schema_version`` field of each)."""

SCHEMAS = ("face", "image", "video", "video_header")
"""The schema files of this folder, ``NAME.schema.json``."""

_BASE_URI = "https://facefit.invalid/schemas/"


def schema_path(name: str) -> Path:
    """The path of the JSON Schema file ``name`` (one of `SCHEMAS`)."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; choose from {SCHEMAS}")
    return Path(__file__).with_name(f"{name}.schema.json")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (one of `SCHEMAS`) as a dict; its ``$id`` is
    ``https://facefit.invalid/schemas/NAME.schema.json`` (``$ref``s between the files use
    those ids)."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


def validator(name: str) -> Any:
    """A ``jsonschema`` draft 2020-12 validator of schema ``name`` (one of `SCHEMAS`) that
    resolves the ``$ref``s between the files; ``validator("image").validate(summary)``.

    Needs the ``jsonschema`` package (facefit's ``dev`` extra; imported here, not at start-up,
    because facefit itself never validates its own output)."""
    import jsonschema
    import referencing

    registry = referencing.Registry().with_resources(
        (load_schema(n)["$id"], referencing.Resource.from_contents(load_schema(n)))
        for n in SCHEMAS)
    return jsonschema.Draft202012Validator(load_schema(name), registry=registry)
