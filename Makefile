# The two commands a newcomer types: `make demo` and `make test`. Both bootstrap .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_WS ?= .demo/workspace

.PHONY: install demo test check lint format bench clean system-deps

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the wheels on this machine's disk (a CUDA build that also runs on CPU)
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser test of the HTML report (needs root or sudo; skipped when present)
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(PY) -m autovision.demo --workspace $(DEMO_WS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

check: lint

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

test: install system-deps lint
	$(BIN)/pytest -q

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .demo build dist .pytest_cache .ruff_cache
