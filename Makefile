# Quick start: `make run` (flagship experiment on the CPU, writes under out/) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast durations bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/difftransport run configs/quickstart.toml --out out/quickstart

test: $(VENV)/.installed
	$(PY) -m pytest

# For iteration, under 3 minutes on 2 cores: everything but the tests marked slow, i.e. the statistical physics
# checks and every test measured above the limit in tests/durations.json (tests/conftest.py).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

# Re-measure every test's time into tests/durations.json (a full run), which decides the fast tier.
durations: $(VENV)/.installed
	DIFFTRANSPORT_RECORD_DURATIONS=1 $(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_rgf.py

clean:
	rm -rf out .pytest_cache
