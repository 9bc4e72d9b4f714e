# Two commands matter: `make demo` and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## the reference apps' suites on the embedded SQLite default, with a short report
	$(PY) scripts/demo.py

# its phases run SQLSANDBOX_TEST_JOBS at a time (default 2), with progress and a summary table
test: $(STAMP)  ## the whole suite: the plugin's own tests and the reference apps, on every reachable database
	$(PY) scripts/test_matrix.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts examples/recipes

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/run.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/testclient.py

clean:
	rm -rf $(VENV) .venv-compat .venv-recipes build *.egg-info .pytest_cache .mypy_cache .ruff_cache
