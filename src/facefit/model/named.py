"""Models by name or by path: what ``--model`` and ``facefit model info|convert`` accept.

A name is one ``facefit model list`` prints: the default model's (``bfm2009-3ddfa``, also
``default``), ``ict`` (the packaged ICT-FaceKit head) or the stem of a model file in one of
`facefit.model.info.model_dirs`. An existing path always wins over a name.
"""

from __future__ import annotations

import os
from pathlib import Path

from facefit.model.bfm_3ddfa import NAME, load_default_model
from facefit.model.ict import load_compact_ict
from facefit.model.info import installed_models
from facefit.model.load import ModelFileError, load_model
from facefit.model.morphable_model import MorphableModel

DEFAULT_ALIASES = ("default",)
"""Other names of the default model."""


def load_named_model(name: str | os.PathLike[str]) -> MorphableModel:
    """The model at path ``name`` (`facefit.model.load_model`), else the installed model of
    that name or location (both columns of ``facefit model list``).

    Raises:
        ModelFileError: neither a model file nor an installed model's name, or unreadable.
        facefit.model.bfm_3ddfa.ModelDataMissing: the default model's data is not installed.
    """
    path = Path(name)
    if path.is_dir():  # an installed model's folder (model list's location column)?
        for entry in installed_models():
            if entry.location != "-" and Path(entry.location).resolve() == path.resolve():
                return load_named_model(entry.name)
    if path.exists():
        return load_model(path)
    text = str(name)
    if text == NAME or text in DEFAULT_ALIASES:
        return load_default_model()
    if text == "ict":
        return load_compact_ict()
    for entry in installed_models():
        if entry.name == text and Path(entry.location).is_file():
            return load_model(entry.location)
    if path.suffix or len(path.parts) > 1:  # meant as a file
        raise ModelFileError(path, "file not found")
    raise ModelFileError(path, "no such model file or installed model name (names: "
                               "facefit model list)")
