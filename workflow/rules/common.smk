# Shared wiring: config validation, task list, wildcard constraints, target lists.
# Everything here is a plain function or constant; no logic of the study lives here.
import os
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from annodistill.config import SECTION_SCHEMAS, load_task  # noqa: E402
from annodistill.preflight import preflight  # noqa: E402

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"

validate(config, schema=str(SCHEMAS / "config.schema.yaml"))
for _section, _schema in SECTION_SCHEMAS.items():
    if _section in config and (SCHEMAS / _schema).exists():
        validate(config[_section], schema=str(SCHEMAS / _schema))

TASKS = list(config["tasks"])
TASK_DIR = config.get("task_dir", "config/tasks")
# Loading every codebook here turns an unknown task or a bad codebook into a DAG-build error.
CODEBOOKS = {t: load_task(t, TASK_DIR) for t in TASKS}
# Everything else checkable before a job runs (sizes, model specs, codebook shape, headline).
CONFIG_FILES = ", ".join(map(str, getattr(workflow, "configfiles", None) or ["config"]))
preflight(config, CODEBOOKS, where=CONFIG_FILES)
SPLIT = config["split"]
# Rules call the package as `python -m annodistill.cli ...`. `python` is the job's interpreter (the
# venv's, or the rule's conda env under --sdm conda); the package comes from workflow/ through
# PYTHONPATH, set here so that every job (local, or re-evaluated inside a Slurm job) inherits it.
PACKAGE_DIR = str(Path(workflow.basedir) / "workflow")
shell.prefix(
    'set -euo pipefail; export PYTHONPATH="{PACKAGE_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"; '
)
# Rules spell the command out (`python -m annodistill.cli <stage> ...`) so `snakemake --lint` stays
# clean; this name remains for older rule files.
ANNODISTILL = "python -m annodistill.cli"


wildcard_constraints:
    task="|".join(TASKS),


def task_yaml(wildcards):
    return f"{TASK_DIR}/{wildcards.task}.yaml"


def raw_source(wildcards):
    return CODEBOOKS[wildcards.task].source["path"]


VADER_CORPORA = ["tweets", "nytEditorialSnippets", "movieReviewSnippets", "amazonReviewSnippets"]


def ingest_inputs(wildcards):
    src = raw_source(wildcards)
    out = {"codebook": task_yaml(wildcards), "raw": src}
    if src.startswith("resources/vader/"):
        out["vader"] = "resources/vader/SOURCE.json"
    return out


def coders_inputs(wildcards):
    # the per-coder ratings of a codebook with `source.coders` (human-human agreement)
    coders = CODEBOOKS[wildcards.task].coders
    out = {
        "codebook": task_yaml(wildcards),
        "clean": f"results/{wildcards.task}/data/clean.parquet",
        "raw": coders["path"],
    }
    if coders["path"].startswith("resources/vader/"):
        out["vader"] = "resources/vader/SOURCE.json"
    return out


def coders_file(task):
    """results/{task}/data/coders.parquet for a task whose codebook has coders, else None."""
    if CODEBOOKS[task].coders is None:
        return None
    return f"results/{task}/data/coders.parquet"


TASKS_WITH_CODERS = [t for t in TASKS if CODEBOOKS[t].coders is not None]


def data_targets():
    return expand("results/{task}/splits/manifest.json", task=TASKS) + [
        coders_file(t) for t in TASKS_WITH_CODERS
    ]


# Each stage's .smk adds its own targets to this list (extend, never replace).
STAGE_TARGETS = [data_targets]


def all_targets():
    out = []
    for f in STAGE_TARGETS:
        out.extend(f())
    return out
