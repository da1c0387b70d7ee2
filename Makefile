# `make run` and `make test` create .venv on first use, install into it, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BUILD_STAMP := $(VENV)/.installed-build
# Optional extras that `make test` installs and tests too.
EXTRAS := gui,dev,cluster,napari

.PHONY: run test test-quick lint venv clean demo-data demo-model bundle test-bundle system-deps

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

# System packages (Xvfb, Qt's X11/OpenGL libraries, binutils, desktop-file-utils): a cheap
# check, and scripts/install_system_deps.sh (apt-get on Debian/Ubuntu, sudo when not root)
# when one is missing. Where they cannot be installed the GUI tests skip and say why.
system-deps:
	@scripts/install_system_deps.sh --check >/dev/null 2>&1 || scripts/install_system_deps.sh || \
		echo "make: some system packages are missing (see above); GUI tests will be skipped"

run: system-deps $(STAMP)
	$(BIN)/cellpol-gui

# GUI tests that run torch jobs in worker threads go in a second process with
# a time limit and one retry of the failures: under load they rarely stall
# (a worker never finishing); see the note in tests/gui_wait.py.
# Every test: the engine and GUI tests, then the standalone app (built first).
# Without binutils (objdump) PyInstaller cannot build the app: then it says so and stops there.
test: system-deps test-quick
	@if command -v objdump >/dev/null 2>&1; then $(MAKE) --no-print-directory test-bundle; \
	else echo "make test: standalone app not built or tested: objdump (binutils) is missing" \
		"(scripts/install_system_deps.sh)"; fi

# Static checks: ruff (bug-finding rules) and the import-linter layer contracts
# (the engine never imports Qt; io at the bottom; analysis apart from detection).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The static checks, then the engine and GUI tests (no PyInstaller build). The GUI tests that
# run engine jobs in worker threads go in a second process with a time limit (no retry: a
# stall is a bug to fix, see app/jobs.py).
test-quick: lint
	$(BIN)/python -m pytest -q -m "not gui_jobs and not bundle"
	timeout 900 $(BIN)/python -m pytest -q -m gui_jobs

$(BUILD_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS),build]"
	touch $(BUILD_STAMP)

# The standalone app (PyInstaller, about 3 minutes): dist/CellPol/ and
# dist/CellPol-<version>-linux-x86_64.tar.gz; sizes and time in dist/bundle_report.json.
bundle: $(BUILD_STAMP)
	$(BIN)/python build_spec/make_bundle.py

# Tests of the frozen app: self-test, screenshot under Xvfb, install/uninstall.
test-bundle: bundle
	$(BIN)/python -m pytest -q -m bundle

demo-data: $(STAMP)
	$(BIN)/python scripts/make_demo_data.py

# Stage 1 of the bundled 3D model (build/demo_model, about an hour on the CPU); CI does not run it.
demo-model: $(STAMP)
	$(BIN)/python scripts/train_demo_model.py

clean:
	rm -rf $(VENV) build dist *.egg-info
