# The two commands a newcomer types: `make demo` and `make test`. Both bootstrap .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_WS ?= .demo/workspace

.PHONY: install lock audit-deps demo test check lint format bench clean system-deps

# The install is the lock: exact versions with hashes (requirements.lock, made by `make lock`),
# so a fresh machine installs what CI tested. torch stays on the CUDA build that also runs on CPU.
LOCK := requirements.lock
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
UV ?= $(firstword $(wildcard $(BIN)/uv) uv)
LOCK_FLAGS ?=

$(STAMP): pyproject.toml $(LOCK) Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	# the project itself (no hash to check): nothing else comes in, the build uses the locked setuptools
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# Re-resolve pyproject.toml for Linux x86_64 CPython 3.11 (torch's nvidia-* wheels included),
# keeping the versions already locked; `make lock LOCK_FLAGS=--upgrade` moves them all forward.
lock:
	printf '%s\n' $(TORCH_PINS) | $(UV) pip compile pyproject.toml --extra dev --constraint - \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" --quiet $(LOCK_FLAGS) -o $(LOCK)

# The locked versions against the advisory service; says plainly when it cannot be reached.
audit-deps: install
	$(PY) .ci/audit_deps.py $(LOCK)

# Debian's chromium (the browser tests) and postgresql (the tests' throwaway PostgreSQL server,
# tests/_postgres.py); needs root or sudo; nothing is installed when both are present.
system-deps:
	@MISSING=$$(command -v chromium >/dev/null 2>&1 || echo chromium; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	    || echo postgresql); \
	[ -z "$$MISSING" ] || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  echo "system-deps: installing" $$MISSING; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$MISSING >/dev/null; }

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
