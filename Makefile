# Two commands do all the set-up on a fresh machine:
#   make demo   creates/refreshes .venv, installs prm-jax, runs the main job (the arithmetic-task demo)
#   make test   creates/refreshes .venv, installs prm-jax[test], runs the test suite (CI's; `make test-all` adds the slow tier)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
DEMO_ARGS ?=

.PHONY: venv install install-run demo test test-all notebooks clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

venv: $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip

install: venv
	$(PY) -m pip install -q -e '.[test]'

install-run: venv
	$(PY) -m pip install -q -e .

demo: install-run
	$(VENV)/bin/prm-jax demo --workdir $(WORKDIR) $(DEMO_ARGS)

test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n 2 -m "not slow" --durations=15 -q tests

# Also the slow end-to-end tests (demo quick, notebooks, experiment smoke runs, real sweeps).
test-all: install
	$(PY) -m pytest -n 2 --durations=25 -q tests

# Regenerates colab/*.ipynb from colab/make_notebooks.py and saves each with its outputs (TINY mode, this CPU).
notebooks: install
	$(PY) colab/make_notebooks.py --execute

clean:
	rm -rf $(VENV) runs
