# async-amp: every target installs what it needs. `make check` is exactly what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
AZURITE := tools/node_modules/.bin/azurite-blob
PYTEST_ARGS ?=

.PHONY: install azurite test lint typecheck check demo demo-azure bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(AZURITE): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

azurite: $(AZURITE)

test: install azurite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check async_amp tests benchmarks
	$(BIN)/ruff check async_amp tests benchmarks

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

demo: install
	$(BIN)/async-amp demo

demo-azure: install azurite
	$(BIN)/python -m async_amp.cli.demo_azure

bench: install azurite
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

docs: install
	$(BIN)/python -m async_amp.cli.docgen

clean:
	rm -rf $(VENV) tools/node_modules data logs bench-data .pytest_cache .mypy_cache .ruff_cache
