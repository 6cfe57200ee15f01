# Everything a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml

.PHONY: install install-dev run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/acceptd serve --config $(CONFIG)

lint: install-dev
	$(BIN)/ruff check service webhooks tests bench
	$(BIN)/ruff format --check service webhooks tests bench
	$(BIN)/mypy service webhooks tests

format: install-dev
	$(BIN)/ruff check --fix service webhooks tests bench
	$(BIN)/ruff format service webhooks tests bench

test: lint
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
