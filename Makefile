# gdnbench: every target creates or reuses the local virtualenv by itself.
#   make sweep            run the default sweep (decode on a GPU, smoke-cpu on a CPU)
#   make test             run the tests (CPU; GPU tests are skipped without a GPU)
# On a GPU machine (nvidia-smi lists a GPU; force with GPU=1 / GPU=0) the venv sees the system
# site-packages, so it reuses the CUDA torch already installed instead of pulling a CPU one, and gets
# the GPU extras (FlashInfer, CuTe DSL, fla-core, nvtx). pip honours PIP_FIND_LINKS / PIP_NO_INDEX,
# or set WHEELS=dir to install from a local wheel folder only (no network).
# On the GPU host (no network, no venv): make gpu-test / gpu-sweep use the host's python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch, installed before gdnbench so its unpinned requirement pulls nothing more.
TORCH_SPEC ?= torch==2.13.0
GPU ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo 1)
WHEELS ?=
PIP_OFFLINE := $(if $(WHEELS),--no-index --find-links $(WHEELS))
VENV_FLAGS := $(if $(filter 1,$(GPU)),--system-site-packages)
comma := ,
EXTRAS := $(if $(filter 1,$(GPU)),dev$(comma)gpu,dev)
STAMP := $(VENV)/.installed-$(if $(filter 1,$(GPU)),gpu,cpu)-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?=
ARGS ?=
HOST_PY := PYTHONPATH=$(CURDIR) python3

.PHONY: venv sweep test smoke plan check list env plots trace gpu-test gpu-sweep clean

venv: $(STAMP)

# GPU: a venv over the system site-packages, whose torch must see the GPU (never a CPU torch here).
# CPU: torch from TORCH_SPEC unless the venv already has one.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
ifeq ($(GPU),1)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || { echo "error: GPU=1 \
	but $(PY) has no torch that sees the GPU: install the CUDA build of torch for $(PYTHON) (the venv reuses \
	it through --system-site-packages), or remove $(VENV) if it was created without them" >&2; exit 2; }
	$(PY) -m pip install -q $(PIP_OFFLINE) -e ".[$(EXTRAS)]"
else
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(PIP_OFFLINE) "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(PIP_OFFLINE) -e ".[$(EXTRAS)]"
endif
	@rm -f $(VENV)/.installed-* && touch $@

sweep: venv
	@$(PY) -m gdnbench list
	$(PY) -m gdnbench sweep $(CONFIG) $(ARGS)

test: venv
	$(PY) -m pytest -q $(ARGS)

smoke: venv
	$(PY) -m gdnbench sweep smoke-cpu $(ARGS)

plan check: venv
	$(PY) -m gdnbench $@ $(or $(CONFIG),decode) $(ARGS)

# Figures for every committed run (or RESULTS="dir1 dir2"), written to results/plots/; a run with an
# EXCLUDED_FROM_PLOTS file (superseded, or a duplicate of cases another run holds) is left out, and so
# are runs git does not track (local runs, e.g. a CPU smoke sweep). Outside a git checkout: every run.
IN_GIT := $(shell git rev-parse --is-inside-work-tree 2>/dev/null)
TOP_RUNS := $(wildcard results/*_*/rows.csv)
RUNS := $(patsubst %/rows.csv,%,$(if $(IN_GIT),$(filter $(TOP_RUNS),$(shell git ls-files 'results/*_*/rows.csv')),$(TOP_RUNS)))
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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
