# Two commands get a newcomer from clone to a running system: `make run` and `make test`.
# Each sets itself up idempotently (virtualenv, Python packages, anvil, Chromium) and is quick
# when everything is already there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test lint format bench chaos devnet setup setup-test tools browser clean

run: setup
	$(PY) -m manager --config $${MANAGER_CONFIG:-config.yaml}

devnet: setup tools
	$(PY) -m manager --config $${MANAGER_CONFIG:-config.yaml} --devnet

# Branch coverage of manager/, healdec/ and workers/ (in the test process), with the floor from
# pyproject.toml's [tool.coverage.report] fail_under; the 25 slowest tests are listed (the suite must stay
# well under 15 minutes).
test: setup-test tools browser lint
	$(PY) -m pytest -q --cov --cov-report=term-missing:skip-covered --durations=25

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy manager healdec workers sql admin

format: setup-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup-test tools
	$(PY) -m bench

# The chaos suite's long run (tests/chaos/chaos.py): ten minutes of SIGKILLs and Postgres restarts
# against the devnet fleet, then the figures. CHAOS_SECONDS=60 make chaos for a shorter one.
chaos: setup-test tools
	$(PY) -m tests.chaos.chaos

setup: $(VENV)/.installed-compat
setup-test: $(VENV)/.installed-test-compat

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Pinned by constraints.txt so that every machine installs the same versions. The editable install
# is a plain path in a .pth file (`compat` mode): setuptools' default installs an import hook that
# every Python start in the venv runs, a fifth of a quick command's time (`python -m manager status`).
# (The stamps are named after the mode so that an older venv is installed again once.)
EDITABLE := --config-settings editable_mode=compat -e
$(VENV)/.installed-compat: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt $(EDITABLE) .
	touch $@

$(VENV)/.installed-test-compat: pyproject.toml constraints.txt $(VENV)/.installed-compat
	$(PIP) install -c constraints.txt $(EDITABLE) '.[test]'
	touch $@

# anvil (the Foundry EVM node) from the npm registry package that ships its Linux binary.
# (solc, for regenerating devnet/contracts, comes with `npm ci --prefix .tools` without --omit=dev.)
tools: .tools/node_modules/.package-lock.json
.tools/node_modules/.package-lock.json: devnet/package.json devnet/package-lock.json
	mkdir -p .tools && cp devnet/package.json devnet/package-lock.json .tools/
	npm ci --prefix .tools --omit=dev --no-audit --no-fund --loglevel=error

# Debian's Chromium for the browser tests (installed only when running as root and missing).
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium package to run the browser tests" >&2; exit 1; fi; \
	fi

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache test-artifacts .coverage .coverage.*
