# One place for the commands people and CI run. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := data/sample

.PHONY: run test lint bench clean-store setup llama lock

PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2


# Create .venv: pip, then the project's own llama.cpp build (rag/llama_build.py: explicit flags,
# CUDA when this machine can run it, a wheelhouse keyed by the flags, never pip's cache), then
# exactly the versions in requirements.lock (llama-cpp-python only as that wheel, never built
# by pip with other flags), then the project itself.
$(VENV)/.installed: pyproject.toml requirements.lock rag/llama_build.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python rag/llama_build.py
	$(BIN)/pip install --quiet --only-binary=llama-cpp-python -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

## setup: .venv as the lock file and this machine want it (rebuilds llama.cpp if the GPU changed)
setup: llama
llama: $(VENV)/.installed
	$(BIN)/python rag/llama_build.py

## lock: resolve requirements.lock anew from pyproject.toml (newest versions), then run make test
lock:
	test -d .lock-venv || $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	.lock-venv/bin/pip-compile --quiet --upgrade --strip-extras --extra=dev --constraint=constraints.txt \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
		--output-file=requirements.lock pyproject.toml
	# A local CPU wheel of torch resolves as 2.x.y+cpu; pin the release so registries serve it too.
	sed -i 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' requirements.lock

## run: set up, check the machine, ingest the samples, answer an example question, start the app
run: setup
	$(BIN)/rag doctor
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
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## test: set up, then lint, types and the whole test suite
test: lint $(CHROMIUM)
	$(BIN)/python -m pytest

## bench: the ingestion and answering figures on the shared pydoc set, answering on the R
## manuals (real PDFs) and on a real documentation folder, PDF extraction and OCR, then the
## chat app's
bench: setup $(CHROMIUM)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_answer.py
	$(BIN)/python bench/bench_answer.py --eval ../shared/eval/rmanuals --no-overhead
	$(BIN)/python bench/bench_realfolder.py
	$(BIN)/python bench/bench_followups.py
	$(BIN)/python bench/bench_pdf.py
	$(BIN)/python bench/bench_ui.py

## clean-store: delete the embedded store under data/
clean-store:
	rm -rf data/chroma data/chroma.lock
