# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each creates .venv on first use. TORCH pins the build installed before the rest: 2.13.0 is the
# CPU build available on the project's machines; pass e.g. TORCH='torch>=2.4' for another one.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: both backends' throughput against the blog's recipe and the Adam floor.
# ARGS passes options, e.g. make run ARGS=--quick (under a minute) or ARGS='--device gpu'.
run: $(STAMP)
	$(BIN)/python benchmarks/run.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest tests parity_tests

clean:
	rm -rf $(VENV) benchmark-results mtl-runs .pytest_cache .hypothesis
