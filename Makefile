# Everyday commands. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_PORT ?= 18080
# The other supported Pythons the suite also runs on (a marked subset);
# pyenv's, when it has them.
PYENV_ROOT ?= $(HOME)/.pyenv
EXTRA_PYTHONS ?= 3.10 3.13
LINT_TOOLS := ruff==0.17.* mypy==2.4.* import-linter==2.*
# The real Locust, in a venv of its own (its pytest plugin and gevent stay
# out of ours): the reference that tests/test_locust_reference.py compares with.
LOCUST_VENV ?= .venv-locust
LOCUST_VERSION ?= 2.47.*

.PHONY: help venv wheel install dev demo test test-pythons lint bench locust

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv:
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip

wheel: venv  ## Build the abi3 wheel (release) into dist/, once for every Python
	PATH="$(abspath $(VENV))/bin:$$PATH" sh deploy/image.sh wheel dist

install: wheel  ## Install the wheel with the test tools into .venv
	$(PY) -m pip install -q --force-reinstall --no-deps dist/aiotest-*.whl
	$(PY) -m pip install -q "$$(ls dist/aiotest-*.whl)[test]"

dev: venv  ## Fast debug build into the venv while iterating
	$(PY) -m pip install -q maturin pytest pytest-timeout pyzmq msgpack playwright $(LINT_TOOLS)
	$(VENV)/bin/maturin develop

demo: install  ## The main job: a 20 s load test of the example against the demo target
	@$(VENV)/bin/aiotest demo-target --port $(DEMO_PORT) & target=$$!; \
	trap 'kill $$target' EXIT; sleep 1; \
	$(VENV)/bin/aiotest -f examples/aiotestfile.py --headless -u 100 -r 50 -t 20s -H http://127.0.0.1:$(DEMO_PORT)

locust:  ## Locust itself, for the suite's comparisons with it
	@test -x $(LOCUST_VENV)/bin/locust || { python3 -m venv $(LOCUST_VENV) && \
	  $(LOCUST_VENV)/bin/python -m pip install -q "locust==$(LOCUST_VERSION)"; }

test: install locust  ## Rust unit tests, then the Python suite against real servers
	cargo test --quiet
	$(PY) -m pytest -q

test-pythons: wheel  ## The suite's `pythons` subset on every other supported Python
	@for v in $(EXTRA_PYTHONS); do \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v*/bin/python3 2>/dev/null | tail -1); \
	  if [ -z "$$py" ]; then echo "test-pythons: no Python $$v under $(PYENV_ROOT)" >&2; exit 1; fi; \
	  env=.venv-$$v; test -x $$env/bin/python || $$py -m venv $$env; \
	  $$env/bin/python -m pip install -q --upgrade pip; \
	  $$env/bin/python -m pip install -q --force-reinstall --no-deps dist/aiotest-*.whl; \
	  $$env/bin/python -m pip install -q "$$(ls dist/aiotest-*.whl)[test]"; \
	  echo "== Python $$v"; $$env/bin/python -m pytest -q -m pythons || exit 1; \
	done

lint: venv  ## cargo fmt and clippy; ruff, mypy --strict, stubtest and the import layers
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(PY) -m pip install -q $(LINT_TOOLS)
	$(VENV)/bin/ruff check python tests examples bench
	$(VENV)/bin/ruff format --check python tests examples bench
	$(VENV)/bin/mypy --strict python/aiotest
	$(PY) -m mypy.stubtest aiotest._core
	$(VENV)/bin/lint-imports

bench: install  ## Benchmarks against wrk (and Locust, oha) on this machine; see bench/README.md
	PATH=$(VENV)/bin:$$PATH $(PY) bench/run.py
