# dotagent — developer entry points. `make` alone prepares .venv/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all venv demo test bench lint clean

all: venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: venv
	bash examples/demo.sh

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

bench: venv
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache
