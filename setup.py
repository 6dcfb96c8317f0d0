"""Build the optional compiled rasteriser (`facefit.render._craster`); everything else is in
pyproject.toml. The extension is plain C loaded with ctypes: when no compiler is present the
build goes on without it and facefit uses its numpy rasteriser."""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-fno-fast-math",
                                               "-fno-math-errno"]
LIBS = [] if sys.platform == "win32" else ["m"]

setup(ext_modules=[Extension("facefit.render._craster", ["src/facefit/render/_craster.c"],
                             extra_compile_args=FLAGS, libraries=LIBS, optional=True)])
