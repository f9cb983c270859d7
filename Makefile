# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MFC := $(VENV)/bin/mfc

.PHONY: demo test llama install install-test registry-tools lint fmt fixtures registry-cache bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# llama-cpp-python is compiled for this CPU's OS-enabled features (never AMX unless the kernel
# enables it); your CMAKE_ARGS are added after them (e.g. CMAKE_ARGS="-DGGML_CUDA=on"). The wheel is
# cached per (version, flags, Python), and the venv reinstalls whenever the effective flags change.
llama: | $(PY)
	$(PY) tools/install_llama.py

$(VENV)/.mfc-installed: pyproject.toml | $(PY) llama
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.mfc-test-installed: pyproject.toml $(VENV)/.mfc-installed
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

# The smoke check runs a Q8_0 fixture through a multi-token batch: a llama.cpp built with
# kernels the OS cannot run (the AMX trap) fails here, at install time, not on a user's first model.
install: llama $(VENV)/.mfc-installed
	$(PY) -m mfc.testing.smoke
# The registry tests need docker-registry and skopeo (apt; see the script for when they skip).
registry-tools:
	tools/install_registry_tools.sh

install-test: install registry-tools $(VENV)/.mfc-test-installed

# Build the bundled example (its base model comes from registry_cache/, offline) and run a prompt.
demo: install
	$(MFC) build -t counter examples/counter
	$(MFC) run counter "abc"

test: install-test
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

fmt: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Regenerate the committed registry_cache/ from the fixture models (byte-identical when unchanged).
fixtures: install
	$(PY) -m mfc.testing.fixtures build/fixtures

registry-cache: install
	$(PY) -m mfc.testing.registry_cache registry_cache

bench: install-test
	$(PY) bench/parse.py
	$(PY) bench/build.py
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
