# gdnbench: every target creates or reuses the local virtualenv by itself.
#   make sweep            run the default sweep (decode on a GPU, smoke-cpu on a CPU)
#   make test             run the tests (CPU; GPU tests are skipped without a GPU)
# On the GPU host (no network, no venv): make gpu-test / gpu-sweep use the host's python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch, installed before gdnbench so its unpinned requirement pulls nothing more.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?=
ARGS ?=
HOST_PY := PYTHONPATH=$(CURDIR) python3

.PHONY: venv sweep test smoke plan check list env plots trace gpu-test gpu-sweep gpu-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

sweep: venv
	$(PY) -m gdnbench sweep $(CONFIG) $(ARGS)

test: venv
	$(PY) -m pytest -q $(ARGS)

smoke: venv
	$(PY) -m gdnbench sweep smoke-cpu $(ARGS)

plan check: venv
	$(PY) -m gdnbench $@ $(or $(CONFIG),decode) $(ARGS)

# Figures for every committed run (or RESULTS="dir1 dir2"), written to results/plots/; a run with an
# EXCLUDED_FROM_PLOTS file (superseded, or a duplicate of cases another run holds) is left out.
RUNS := $(patsubst %/rows.csv,%,$(wildcard results/*_*/rows.csv))
RESULTS ?= $(foreach d,$(RUNS),$(if $(wildcard $(d)/EXCLUDED_FROM_PLOTS),,$(d)))
plots: venv
	$(PY) -m gdnbench plot $(RESULTS) -o results/plots $(ARGS)

# Nsight Systems trace of configs/trace-decode.yaml (or CONFIG=...); on a GPU host without a venv too.
RUNPY := $(if $(wildcard $(PY)),$(PY),$(HOST_PY))
trace:
	$(RUNPY) -m gdnbench trace $(or $(CONFIG),trace-decode) $(ARGS)

list env: venv
	$(PY) -m gdnbench $@ $(ARGS)

gpu-test:
	$(HOST_PY) -m pytest -q -m gpu tests $(ARGS)

gpu-sweep:
	$(HOST_PY) -m gdnbench sweep $(or $(CONFIG),decode) $(ARGS)

# The GPU acceptance check (GPU tests, calibrate, short nsys trace, short roofline vs the committed
# baseline): run it on the GPU host before landing a change to gdnbench/, configs/ or the tile tables.
# Writes gpu-check.md and each step's output to $(GPU_CHECK_OUT) ($OUT/gpu-check on the device tool).
GPU_CHECK_OUT ?= $(if $(OUT),$(OUT)/gpu-check,gpu-check)
gpu-check:
	$(HOST_PY) -m gdnbench gpu-check --out $(GPU_CHECK_OUT) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
