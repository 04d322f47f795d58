# One place for the commands people and CI run. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := data/sample

.PHONY: run test lint bench clean-store

# Create .venv and install the project with its test tools; redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

## run: set up, ingest the sample documents, answer an example question, start the chat app
run: $(VENV)/.installed
	$(BIN)/python ingest.py $(SAMPLE)
	$(BIN)/rag sources
	$(BIN)/rag ask "How long does a full charge of the battery take?"
	$(BIN)/rag ui

# Debian's Chromium for the end-to-end browser test (Playwright drives it; it downloads none).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium || \
		(apt-get update && apt-get install -y --no-install-recommends chromium)

## lint: ruff and mypy, as CI runs them
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## test: set up, then lint, types and the whole test suite
test: lint $(CHROMIUM)
	$(BIN)/python -m pytest

## bench: the ingestion and answering figures on the shared pydoc set, then the chat app's
bench: $(VENV)/.installed $(CHROMIUM)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_answer.py
	$(BIN)/python bench/bench_ui.py

## clean-store: delete the embedded store under data/
clean-store:
	rm -rf data/chroma data/chroma.lock
