# The front door. `make demo` and `make test` are all a newcomer needs.
# The interpreter: Debian's own CPython 3.11 where the machine has it (built with profile-guided and link-time
# optimisation, libpython linked in statically: the engine runs 10–15 % faster on it than on a default source
# build such as pyenv's; bench/results/README.md), else the first python3 on PATH. `make PY=…` overrides.
PY      ?= $(shell for p in /usr/bin/python3.11 python3; do \
             $$p -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 \
             && { echo $$p; break; }; done)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test

.PHONY: install install-test demo test quick soak lint bench clean servers

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(TSTAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test]'
	touch $(TSTAMP)

install: $(STAMP)

install-test: $(TSTAMP)

# Servers the integration tests start as processes (no Docker here): ClickHouse server, Prometheus.
servers:
	bash scripts/install-servers.sh

demo: install
	$(BIN)/esup demo

test: install-test servers
	$(BIN)/ruff check .
	$(BIN)/pytest

quick: install-test
	$(BIN)/pytest -m "not slow and not server"

# The full-size fault-injection runs (tests/test_reliability_live.py): 20 SIGKILLs over 100,000 events,
# ClickHouse down for a minute. `make test` runs the same tests at a bounded size.
soak: install-test servers
	$(BIN)/pytest -m soak -rA

lint: install-test
	$(BIN)/ruff check .

bench: install-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data out .pytest_cache
