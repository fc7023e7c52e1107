# dotagent — developer entry points. `make` alone prepares .venv/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all venv demo test bench soak lint clean

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

# The benchmarks' own extra (the APScheduler baseline), on top of the test tools.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) bench/run.py

# 10 minutes of 200 agents under a real daemon (SOAK_SECONDS to change it); not in bench.
SOAK_SECONDS ?= 600
soak: $(BENCH_STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) bench/soak.py

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache
