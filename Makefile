# Everyday commands. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_PORT ?= 18080

.PHONY: help venv install dev demo test lint bench

help:  ## List the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv:
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip

install: venv  ## Build the wheel (release) and install it with the test tools
	$(PY) -m pip install -q '.[test]'

dev: venv  ## Fast debug build into the venv while iterating
	$(PY) -m pip install -q maturin pytest pytest-timeout pyzmq msgpack playwright
	$(VENV)/bin/maturin develop

demo: install  ## The main job: a 20 s load test of the example against the demo target
	@$(VENV)/bin/aiotest demo-target --port $(DEMO_PORT) & target=$$!; \
	trap 'kill $$target' EXIT; sleep 1; \
	$(VENV)/bin/aiotest -f examples/aiotestfile.py --headless -u 100 -r 50 -t 20s -H http://127.0.0.1:$(DEMO_PORT)

test: install  ## Rust unit tests, then the Python suite against real servers
	cargo test --quiet
	$(PY) -m pytest -q

lint:  ## cargo fmt, clippy and ruff
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check python tests examples bench

bench: install  ## Benchmarks against wrk (and Locust, oha) on this machine; see bench/README.md
	PATH=$(VENV)/bin:$$PATH $(PY) bench/run.py
