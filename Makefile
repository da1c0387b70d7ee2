# `make run` and `make test` create .venv on first use, install into it, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv clean demo-data demo-model

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[gui,dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/cellpol-gui

# GUI tests that run torch jobs in worker threads go in a second process with
# a time limit and one retry of the failures: under load they rarely stall
# (a worker never finishing); see the note in tests/gui_wait.py.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gui_jobs"
	timeout 600 $(BIN)/python -m pytest -q -m gui_jobs || \
		timeout 600 $(BIN)/python -m pytest -q -m gui_jobs --lf

demo-data: $(STAMP)
	$(BIN)/python scripts/make_demo_data.py

# Retrains resources/models/demo on the CPU (about an hour); CI does not run it.
demo-model: $(STAMP)
	$(BIN)/python scripts/train_demo_model.py

clean:
	rm -rf $(VENV) build dist *.egg-info
