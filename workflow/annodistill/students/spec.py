"""The `students:` config section -> one model's resolved spec and its list of conditions.

Study-wide keys (seeds, selection, selection_fraction, save_models, training defaults) are
inherited by every model; a model may override any of them, and may restrict `conditions`.
The rule passes the resolved spec as JSON, so a changed grid or seed list re-runs the job.
"""
from __future__ import annotations

import copy

from ..errors import InputError
from ..contracts import condition_names

# study-wide keys a model inherits (and may override)
INHERITED = {
    "seeds": [1],
    "selection": "same_source",
    "selection_fraction": 0.2,
    "save_models": False,
    "device": "auto",
    "max_length": 128,
    "eval_batch_size": 128,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "share_epochs": False,     # True: the opt-in approximation (docs/students.md)
    "selection_metric": "macro_f1",
    "class_weight": None,
    "bf16": True,
}
DEFAULT_CONDITIONS = {"human": True, "llm": True, "llm_consistency": [], "soft": True}


def model_spec(students: dict, name: str) -> dict:
    models = students.get("models") or {}
    if name not in models:
        raise InputError(f"no student model {name!r} in students.models (have {sorted(models)})",
                         field="students.models")
    m = copy.deepcopy(models[name])
    spec = {k: copy.deepcopy(students.get(k, v)) for k, v in INHERITED.items()}
    spec.update({k: v for k, v in m.items() if k != "conditions"})
    spec.setdefault("kind", "encoder")
    if spec["kind"] != "tfidf":
        if "path" not in spec:
            raise InputError(f"student model {name!r} needs a `path`", field="path")
        grid = spec.get("grid") or {}
        for key in ("learning_rate", "batch_size", "epochs"):
            if not grid.get(key):
                raise InputError(f"student model {name!r}: grid.{key} must list at least one "
                                 f"value", field=f"grid.{key}")
    return spec


def model_conditions(students: dict, name: str, train_sizes: list[int],
                     teachers: list[str]) -> list[str]:
    """The condition names a model runs: the study's `conditions`, overridden by the model's."""
    base = dict(DEFAULT_CONDITIONS)
    base.update(students.get("conditions") or {})
    own = (students.get("models") or {}).get(name, {}).get("conditions")
    base.update(own or {})  # a model's keys override the study's, key by key
    return condition_names(base, train_sizes, teachers)


# --- what defines a student's results and what only runs it ----------------------------------
# One list, used by the rule wiring (students/wiring.py: the spec param) and the training job
# (cli.py): only the result-defining part of a model's spec (kind, path, grid, seeds, selection,
# lengths, optimiser settings, ...) reaches the rule's params. Where it runs (device, resources),
# how fast it scores (eval_batch_size) and whether weights are kept (save_models) are read by the
# job at run time (annodistill.runsettings) and never rerun it. Unlisted keys are result-defining.
OPERATIONAL = frozenset({"resources", "device", "eval_batch_size", "save_models"})


def result_defining(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in OPERATIONAL}


def operational(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k in OPERATIONAL and k != "resources"}


def run_settings(config: dict) -> dict:
    """The student stage's operational settings of a study (annodistill.runsettings)."""
    students = config.get("students") or {}
    return {"models": {name: operational(model_spec(students, name))
                       for name in (students.get("models") or {})}}
