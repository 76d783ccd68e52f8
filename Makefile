# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each creates .venv on first use. TORCH pins the build installed before the rest: 2.13.0 is the
# CPU build available on the project's machines; pass e.g. TORCH='torch>=2.4' for another one.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test gpu-check clean

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

# On a machine whose python already has the packages (e.g. a GPU machine with nothing to fetch): no
# .venv, the repository on PYTHONPATH. The quick GPU benchmark, the parity suite on the GPU (and the checks
# that the GPU's jaxlib copies no carry in fit's scan and that torch's fit copies batches without a host
# sync), and both backends training the embedded experiment on the GPU (--device gpu fails when there is none).
gpu-check:
	PYTHONPATH=. $(PYTHON) benchmarks/run.py --device gpu --quick --out benchmark-results/gpu-quick
	PYTHONPATH=. $(PYTHON) -m pytest -q parity_tests tests/test_jax_fit.py::test_the_scanned_run_copies_no_first_layer_sized_array \
		tests/test_torch_fit.py::test_the_fits_batches_reach_a_cuda_device_without_a_host_sync
	PYTHONPATH=. $(PYTHON) -m mtl_cli experiment --device gpu --backend both --epochs 2 --out mtl-runs/gpu-check --overwrite

clean:
	rm -rf $(VENV) benchmark-results mtl-runs .pytest_cache .hypothesis
