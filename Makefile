# gdnbench: every target creates or reuses the local virtualenv by itself.
#   make sweep            run the default sweep (decode on a GPU, smoke-cpu on a CPU)
#   make test             run the tests (CPU; GPU tests are skipped without a GPU)
# On a GPU machine (nvidia-smi lists a GPU; force with GPU=1 / GPU=0) the venv sees the site-packages
# of the python3 that made it (system ones, or its own venv's: scripts/parent_site_pth.py), so it
# reuses the CUDA torch already installed instead of pulling a CPU one, and gets the GPU extras it
# lacks (FlashInfer, CuTe DSL, fla-core, nvtx). pip honours PIP_FIND_LINKS / PIP_NO_INDEX,
# or set WHEELS=dir to install from a local wheel folder only (no network).
# On the GPU host (no network, no venv): make gpu-* use the host's python3 (README: "GPU host targets").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch, installed before gdnbench so its unpinned requirement pulls nothing more.
TORCH_SPEC ?= torch==2.13.0
GPU ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo 1)
WHEELS ?=
PIP_OFFLINE := $(if $(WHEELS),--no-index --find-links $(WHEELS))
VENV_FLAGS := $(if $(filter 1,$(GPU)),--system-site-packages)
# What the commands need: the GPU extras on a GPU machine; on a CPU the dev extra (its Triton and
# fla-core run under Triton's interpreter there, and CI's tests need the rest of it).
EXTRAS := $(if $(filter 1,$(GPU)),gpu,dev)
CKSUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(if $(filter 1,$(GPU)),gpu,cpu)-$(CKSUM)
# make test on a GPU machine adds the dev extra (pytest, hypothesis, nbclient, Ray) to that venv
DEV_STAMP := $(if $(filter 1,$(GPU)),$(VENV)/.installed-gpu-dev-$(CKSUM))
CONFIG ?=
ARGS ?=
HOST_PY := PYTHONPATH=$(CURDIR) python3

.PHONY: venv sweep test smoke plan check list env plots trace gpu-test gpu-sweep gpu-check gpu-roofline \
	gpu-trace gpu-tune gpu-tune-cute gpu-sanitize gpu-prefill gpu-ncu clean

venv: $(STAMP)

# GPU: a venv over the system site-packages, whose torch must see the GPU (never a CPU torch here).
# CPU: torch from TORCH_SPEC unless the venv already has one.
# GPU: install only the requirements (main ones or extras: $(1)) that the machine lacks, then gdnbench
# with --no-deps (scripts/missing_requirements.py says why: asking pip for packages already installed
# re-checks all that they declare, which fails offline where an image left some out)
define install_missing
	@$(PY) scripts/missing_requirements.py $(1) > $(VENV)/.missing
	@if [ -s $(VENV)/.missing ]; then echo "installing what this machine lacks ($(1)):" \
	$$(cat $(VENV)/.missing); $(PY) -m pip install -q $(PIP_OFFLINE) -r $(VENV)/.missing; \
	else echo "$(1): every requirement already installed"; fi
endef

$(STAMP): pyproject.toml
ifeq ($(GPU),1)
	@test -x $(PY) || { $(PYTHON) -m venv $(VENV_FLAGS) $(VENV) && $(PYTHON) scripts/parent_site_pth.py $(VENV); }
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || { echo "error: GPU=1 \
	but $(PY) has no torch that sees the GPU: install the CUDA build of torch for $(PYTHON) (the venv reuses \
	it through --system-site-packages), or remove $(VENV) if it was created without them" >&2; exit 2; }
	$(call install_missing,dependencies $(EXTRAS))
	$(PY) -m pip install -q $(PIP_OFFLINE) --no-deps -e .
else
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(PIP_OFFLINE) "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(PIP_OFFLINE) -e ".[$(EXTRAS)]"
endif
	@rm -f $(VENV)/.installed-* && touch $@

ifeq ($(GPU),1)
$(DEV_STAMP): $(STAMP)
	$(call install_missing,dev)
	@touch $@
endif

sweep: venv
	@$(PY) -m gdnbench list
	$(PY) -m gdnbench sweep $(CONFIG) $(ARGS)

test: venv $(DEV_STAMP)
	$(PY) -m pytest -q $(ARGS)

smoke: venv
	$(PY) -m gdnbench sweep smoke-cpu $(ARGS)

plan check: venv
	$(PY) -m gdnbench $@ $(or $(CONFIG),decode) $(ARGS)

# Figures for the curated sweep baselines (or RESULTS="dir1 dir2") into results/plots/: with no run
# named, `gdnbench plot` takes the ones git tracks under results/<device>/<config>/ (outpaths.py).
RESULTS ?=
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

# Measurement targets for the GPU host (the host's python3, no venv). Each writes a fresh run directory
# results/<date>_<device>_<config>/ (OUT=... to choose it); a curated baseline is such a run moved to
# results/<device-slug>/<config>/ (results/README.md).
OUT ?=

# the decode and MTP roofline sweeps (triton, triton_pdl, cute, flashinfer, fla)
gpu-roofline:
	$(HOST_PY) -m gdnbench sweep roofline-decode --no-progress $(if $(OUT),--out $(OUT)-decode) $(ARGS)
	$(HOST_PY) -m gdnbench sweep roofline-mtp --no-progress $(if $(OUT),--out $(OUT)-mtp) $(ARGS)

# Nsight Systems trace of trace-decode (CONFIG=... for another), rows timed plainly and traced
gpu-trace:
	$(HOST_PY) -m gdnbench trace $(or $(CONFIG),trace-decode) $(if $(OUT),--out $(OUT)) $(ARGS)

# re-tune the shipped triton tile table of this GPU (gdnbench/backends/triton/tables/) over the roofline
# configs' cases (CONFIG=decode for another), then its GPU gate tests; resumable: rerun to go on;
# ARGS="--budget 60" bounds each config's session (docs/tuning.md)
TUNE_CONFIGS ?= roofline-decode roofline-mtp
gpu-tune:
	@for c in $(or $(CONFIG),$(TUNE_CONFIGS)); do \
		$(HOST_PY) -m gdnbench tune $$c --backend triton --ship --no-progress $(ARGS) || exit $$?; done
	$(HOST_PY) -m pytest -q -m gpu -p no:cacheprovider tests/test_triton_gdn.py tests/test_gpu_backends.py -k triton

# the same for the cute kernel (gdnbench/backends/cute/tables/), over roofline-decode
gpu-tune-cute:
	$(HOST_PY) -m gdnbench tune $(or $(CONFIG),roofline-decode) --backend cute --ship --no-progress $(ARGS)
	$(HOST_PY) -m pytest -q -m gpu -p no:cacheprovider tests/test_cute.py tests/test_gpu_backends.py -k cute

# the gate of gdnbench's own kernels on gpu-smoke, each row again under compute-sanitizer memcheck
gpu-sanitize:
	$(HOST_PY) -m gdnbench check gpu-smoke --sanitize -b triton -b triton_pdl -b cute --no-progress \
		$(if $(OUT),--out $(OUT)) $(ARGS)

# the prefill config with FlashInfer's serving call and kernel, and fla's pooled and kernel-only calls
gpu-prefill:
	$(HOST_PY) -m gdnbench sweep prefill -b flashinfer -b flashinfer_kernel -b fla -b fla_kernel --no-progress \
		$(if $(OUT),--out $(OUT)) $(ARGS)

# Nsight Compute on one gated launch (ARGS: scripts/profile_kernel.py's, e.g. "--backend triton --batch 64")
NCU_SECTIONS := --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
gpu-ncu:
	ncu --profile-from-start off --csv --page details $(NCU_SECTIONS) \
		env PYTHONPATH=$(CURDIR) python3 scripts/profile_kernel.py $(or $(ARGS),--backend triton --batch 64)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
