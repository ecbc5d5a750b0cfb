# Two commands do all the set-up on a fresh machine:
#   make demo   creates/refreshes .venv, installs prm-jax, runs the main job (the arithmetic-task demo)
#   make test   creates/refreshes .venv, installs prm-jax[test], runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
DEMO_ARGS ?=

.PHONY: venv install demo test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

venv: $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip

install: venv
	$(PY) -m pip install -q -e '.[test]'

demo: install
	$(VENV)/bin/prm-jax demo --workdir $(WORKDIR) $(DEMO_ARGS)

test: install
	$(PY) -m pytest -n 2 --durations=15 -q tests

clean:
	rm -rf $(VENV) runs
