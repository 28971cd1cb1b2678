# Quick start: `make run` (flagship experiment on the CPU, writes under out/) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/difftransport run configs/quickstart.toml --out out/quickstart

test: $(VENV)/.installed
	$(PY) -m pytest

# Everything but the statistical physics checks (marked slow): under 3 minutes on 2 cores, for iteration.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_rgf.py

clean:
	rm -rf out .pytest_cache
