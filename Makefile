# One place for every entry point. `make eval` and `make test` do all the set-up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HARNESS := $(BIN)/harness

FILTER ?= hype10+dfn
SCALE ?= tiny
SEED ?= 0
SEEDS ?= 1
FILTERS ?= no_filter random30 clip_l14_30
WORLD ?= .cache/world-seed0
RUNS ?= runs
PYTEST_ARGS ?=
GPU_CHECK_ARGS ?=

.PHONY: setup dev eval compare report test lint bench world clean-runs browser gpu-check

# Idempotent: the stamp is rebuilt only when the pinned dependencies change.
# `setup` installs what `make eval` needs (requirements.lock); `dev` adds the test and lint tools,
# clip_benchmark and Ray (requirements-dev.lock), for `make test`, `make lint` and `make bench`.
setup: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# gcld3 (laion2b) builds against the protobuf compiler and headers, text_based reads WordNet 3.0:
# scripts/install-filter-deps.sh installs them (Debian packages) first, or says what is missing.
$(VENV)/.installed: requirements.lock pyproject.toml scripts/install-filter-deps.sh
	bash scripts/install-filter-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.2
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -c "from harness import langid, wordnet; langid.detector(); langid.detector(kind='gcld3'); wordnet.reader(); wordnet.imagenet21k_offsets()"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(BIN)/pip install -q -r requirements-dev.lock
	touch $@

world: setup
	$(HARNESS) world --seed 0 --out $(WORLD)

eval: setup
	$(HARNESS) run --filter '$(FILTER)' --scale $(SCALE) --seed $(SEED) --world $(WORLD) --runs $(RUNS)

compare: setup
	$(HARNESS) compare --filters '$(FILTERS)' --seeds $(SEEDS) --scale $(SCALE) --world $(WORLD) --runs $(RUNS) --out $(RUNS)/report

report: setup
	$(HARNESS) report $(RUNS) --out $(RUNS)/report

# Headless Chromium for the HTML report test (Debian package).
browser:
	@command -v chromium >/dev/null || bash scripts/install-chromium.sh

test: dev browser
	$(BIN)/ruff check harness baselines tests examples
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check harness baselines tests examples

bench: dev
	$(BIN)/python -m harness.benchmarks --out BENCHMARKS.generated.md

# First training steps of the small recipe (ViT-B-32, batch 4096 on one GPU), the DFN, HYPE and T-MARS
# scorers and the evaluator on CUDA, with throughput and peak memory; tiny configs on a CPU-only machine.
gpu-check: setup
	$(BIN)/python -m harness.benchmarks.gpu_check $(GPU_CHECK_ARGS)

clean-runs:
	rm -rf $(RUNS)
