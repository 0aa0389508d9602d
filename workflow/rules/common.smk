# Shared wiring: config validation, task list, wildcard constraints, target lists.
# Everything here is a plain function or constant; no logic of the study lives here.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from snakemake.settings.types import DeploymentMethod

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from annodistill.config import SECTION_SCHEMAS, load_task  # noqa: E402
from annodistill.preflight import preflight  # noqa: E402
from annodistill import runsettings  # noqa: E402
from annodistill.config import SECTION_SCHEMAS, load_task, task_part_json  # noqa: E402
from annodistill.students.spec import run_settings as student_run_settings  # noqa: E402
from annodistill.teacher.spec import run_settings as teacher_run_settings  # noqa: E402

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
# Rules call the package as `python -m annodistill.cli ...`; the shell prefix below decides what
# that runs and what it gets, without touching what Snakemake records of a rule (its shell text,
# params, inputs), so none of it ever triggers a rerun:
# - `python` is the interpreter that runs Snakemake (`.venv/bin/snakemake` works without an
#   activated venv; inside a Slurm job Snakemake is re-run by that same interpreter), except under
#   `--sdm conda`, where it is the rule's env's own python.
# - the package comes from workflow/ through PYTHONPATH (conda jobs drop an inherited PYTHONPATH).
# - ANNODISTILL_RUN_SETTINGS carries the operational settings (concurrency, limits, budgets,
#   devices, cache folder: annodistill.runsettings), which must reach the job but not its params.
PACKAGE_DIR = str(Path(workflow.basedir) / "workflow")
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON_FUNCTION = "" if USE_CONDA else f"python() {{{{ {shlex.quote(sys.executable)} \"$@\"; }}}}; "
RUN_SETTINGS = {"teachers": teacher_run_settings(config), "students": student_run_settings(config)}
shell.prefix(
    'set -euo pipefail; export PYTHONPATH="{PACKAGE_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"; '
    + PYTHON_FUNCTION
    + runsettings.export_line(RUN_SETTINGS)
)
# Rules spell the command out (`python -m annodistill.cli <stage> ...`) so `snakemake --lint` stays
# clean; this name remains for older rule files.
ANNODISTILL = "python -m annodistill.cli"


wildcard_constraints:
    task="|".join(TASKS),


def task_yaml(wildcards):
    return f"{TASK_DIR}/{wildcards.task}.yaml"


def codebook_data(wildcards):
    # the part of the codebook the data stage's results depend on (a param, not the file as an
    # input: editing the prompt must not re-split the task; config.CODEBOOK_PARTS)
    return task_part_json(wildcards.task, TASK_DIR, "data")


def raw_source(wildcards):
    return CODEBOOKS[wildcards.task].source["path"]


VADER_CORPORA = ["tweets", "nytEditorialSnippets", "movieReviewSnippets", "amazonReviewSnippets"]


def ingest_inputs(wildcards):
    src = raw_source(wildcards)
    out = {"raw": src}
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


# --- the teacher gate (a checkpoint, teacher.smk) and what depends on it ---------------------
def gate_allows(task, teacher):
    # False where the teacher's gate stopped the task (gate.on_fail: stop): its training-set
    # labels are not bought and the students on them not scheduled. Reads the gate's output, so
    # an input function calling this waits for the gate before it is resolved.
    allowed = workflow.dag_settings.allowed_rules
    if allowed and "teacher_gate" not in allowed:
        # --allowed-rules without the gate: it cannot run now, so the gate on disk decides (and
        # without one, the teacher's files are expected as they are)
        gate = f"results/{task}/teacher/{teacher}/gate.json"
        return not os.path.exists(gate) or TEACHER_WIRING.gate_allows_file(gate)
    gate = checkpoints.teacher_gate.get(task=task, teacher=teacher).output[0]
    return TEACHER_WIRING.gate_allows_file(gate)


def all_teacher_targets(wildcards):
    return TEACHER_WIRING.targets(gate_allows)


def student_prediction_files(task):
    # every prediction file of one task that can exist (what the task's metrics read)
    return STUDENT_WIRING.prediction_files(task, gate_allows)


def all_student_targets(wildcards):
    return STUDENT_WIRING.targets(gate_allows=gate_allows)


def prefetch_study(wildcards):
    # what names the models to fetch: the result-defining parts of the students and teachers
    # (a throughput or resource change does not refetch; hpc.smk, prefetch_models)
    from annodistill.students.spec import result_defining as student_part
    from annodistill.teacher.spec import result_defining as teacher_part

    students = (config.get("students") or {}).get("models") or {}
    teachers = config.get("teachers") or {}
    study = {
        "students": {"models": {n: student_part(m or {}) for n, m in students.items()}},
        "teachers": {
            **{k: v for k, v in teachers.items() if k not in ("models", "cache_dir")},
            "models": {n: teacher_part(e or {}) for n, e in (teachers.get("models") or {}).items()},
        },
    }
    return json.dumps(study, sort_keys=True)


# Each stage's .smk adds its own targets to this list (extend, never replace).
STAGE_TARGETS = [data_targets]


def all_targets(include_excluded=False):
    # a task in evaluation.exclude_tasks is left out (the tables list it as missing, with why)
    skip = () if include_excluded else tuple(
        f"results/{t}/" for t in (config.get("evaluation") or {}).get("exclude_tasks") or {})
    out = []
    for f in STAGE_TARGETS:
        out.extend(p for p in f() if not (skip and p.startswith(skip)))
    return out
