# The two entry points of the README. Both install into ./.venv first (idempotent).
PYTHON ?= python3
VENV ?= .venv
# The reference package (BluePyEModel 1.0.50) lives in its own virtual environment; the
# compatibility tests run it in a subprocess to read and write the same files as ours.
REFERENCE_VENV ?= $(HOME)/.cache/luigi_emodel/ref-venv

.PHONY: install reference test

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

reference: $(REFERENCE_VENV)/.installed

$(REFERENCE_VENV)/.installed:
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/python -m pip install --quiet 'bluepyemodel==1.0.50'
	touch $@

test: install reference
	LUIGI_EMODEL_REFERENCE_PYTHON=$(REFERENCE_VENV)/bin/python $(VENV)/bin/python -m pytest

# The bundled example: simulate its recordings (once), then extract, optimise, validate and
# export with luigi, draw the figures and print the status table.
EXAMPLE_DIR = configs/example
BIN = $(abspath $(VENV))/bin

.PHONY: example
example: install
	$(BIN)/python $(EXAMPLE_DIR)/scripts/make_recordings.py
	cd $(EXAMPLE_DIR) && $(BIN)/luigi --module luigi_emodel.tasks EModelCreation --emodel example --local-scheduler
	cd $(EXAMPLE_DIR) && $(BIN)/luigi --module luigi_emodel.tasks PlotAll --emodel example --local-scheduler
	$(BIN)/luigi-emodel status --emodel-dir $(EXAMPLE_DIR)
