# The two commands of the README: `make demo` and `make test` (ruff, then the tests in two
# pytest-xdist workers: on 2 cores half the wall time of one process). Both build
# .venv from scratch when it is missing or out of date.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIN    := -c constraints.txt
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

.PHONY: demo test install install-test clean

$(VENV)/.installed: pyproject.toml constraints.txt $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned, so no other requirement can pull a different build
	$(PIP) install -q $(PIN) torch torchvision
	$(PIP) install -q $(PIN) -e ".[export,tensorboard]" $(addprefix -e ,$(PLUGIN_DIRS))
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q $(PIN) -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/transferkit finetune recipes/quickstart.toml

test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2

clean:
	rm -rf $(VENV) runs .pytest_cache
