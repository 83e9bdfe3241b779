# async-amp: every target installs what it needs. `make check` is exactly what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
AZURITE := tools/node_modules/.bin/azurite-blob
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

KERNEL_VENV  := .venv-delta-kernel
KERNEL_STAMP := $(KERNEL_VENV)/.installed

EXAMPLES_VENV  := .venv-examples
EXAMPLES_STAMP := $(EXAMPLES_VENV)/.installed
AIRFLOW_VENV   := .venv-airflow
AIRFLOW_STAMP  := $(AIRFLOW_VENV)/.installed

.PHONY: install azurite chromium delta-kernel test test-examples lint typecheck check demo demo-azure demo-cloud-export bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(AZURITE): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

azurite: $(AZURITE)

# the report's tests and screenshot run the distribution's Chromium (nothing downloaded by us)
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# DuckDB's delta extension (delta-kernel-rs), a Delta reader independent of delta-rs, comes from
# PyPI built for DuckDB 1.4.4 only: tests/test_delta_kernel.py runs it in a venv of its own.
$(KERNEL_STAMP): tests/delta_kernel/requirements.txt
	$(PYTHON) -m venv $(KERNEL_VENV)
	$(KERNEL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r tests/delta_kernel/requirements.txt
	touch $(KERNEL_STAMP)

delta-kernel: $(KERNEL_STAMP)

# Two workers (pytest-xdist), one per core: most tests wait on servers, subprocesses and
# storage, so two at once take about half the time. A file's tests stay on one worker
# (--dist loadfile), so a module's fixture (an extracted lake, a year of Delta) is built once.
TEST_WORKERS ?= 2

test: install azurite chromium delta-kernel
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The examples run against real Dagster and real Airflow, each in a venv of its own (Airflow
# brings its own pins): ~35 and ~100 packages that the package itself never needs. The two venvs
# are built at once (pip uses one core) and without byte-compiling every file (only what a test
# imports gets compiled, when it is imported). Times measured: examples/README.md.
EXAMPLES_PIP := python -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt

$(EXAMPLES_STAMP): pyproject.toml constraints.txt examples/requirements.txt
	$(PYTHON) -m venv $(EXAMPLES_VENV)
	$(EXAMPLES_VENV)/bin/$(EXAMPLES_PIP) -r examples/requirements.txt -e . pytest
	touch $(EXAMPLES_STAMP)

$(AIRFLOW_STAMP): pyproject.toml constraints.txt examples/requirements-airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/$(EXAMPLES_PIP) -c examples/requirements-airflow.txt apache-airflow -e . pytest
	touch $(AIRFLOW_STAMP)

test-examples:
	$(MAKE) -j2 $(EXAMPLES_STAMP) $(AIRFLOW_STAMP)
	$(EXAMPLES_VENV)/bin/python -m pytest -p no:cacheprovider examples/tests/test_dagster_example.py $(PYTEST_ARGS)
	$(AIRFLOW_VENV)/bin/python -m pytest -p no:cacheprovider examples/tests/test_airflow_example.py $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check async_amp tests tools benchmarks examples
	$(BIN)/ruff check async_amp tests tools benchmarks examples

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

demo: install
	$(BIN)/async-amp demo

demo-azure: install azurite
	$(BIN)/python -m tools.demo_azure

demo-cloud-export: install
	$(BIN)/python -m tools.demo_cloud_export

bench: install azurite
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

docs: install chromium
	$(BIN)/python -m tools.docgen
	$(BIN)/python -m tools.report_shot docs/report-demo.png
	$(BIN)/python -m tools.models_doc

clean:
	rm -rf $(VENV) $(EXAMPLES_VENV) $(KERNEL_VENV) $(AIRFLOW_VENV) tools/node_modules data logs bench-data .pytest_cache .mypy_cache .ruff_cache
