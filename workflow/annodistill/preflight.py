"""Checks run at DAG build, before any job (and before any paid request).

`preflight(config, codebooks, config_path)` raises `InputError` with one line naming the file and
field for anything that would otherwise fail only when a stage runs: a student model spec that does
not resolve, a selection split that the configured sizes cannot hold, a codebook a configured stage
cannot handle, an evaluation headline naming a model or teacher the study lacks. Called from
workflow/rules/common.smk after schema validation; every stage's own checks stay in place (a CLI
call outside Snakemake still fails with the same message).
"""
from __future__ import annotations

from .contracts import parse_condition, teacher_names
from .errors import InputError


def _students(config: dict, where: str) -> None:
    from .students.selection import METRICS, SOURCES, carve_ids
    from .students.spec import model_conditions, model_spec

    students = config.get("students") or {}
    split = config["split"]
    teachers = teacher_names(config)
    for name in students.get("models") or {}:
        field = f"students.models.{name}"
        try:
            spec = model_spec(students, name)
        except InputError as exc:
            raise InputError(exc.message, path=where, field=exc.field or field) from None
        if spec.get("selection") not in SOURCES:
            raise InputError(f"selection must be one of {SOURCES}", path=where,
                             field=f"{field}.selection")
        if spec.get("selection_metric", "macro_f1") not in METRICS:
            raise InputError(f"selection_metric must be one of {METRICS}", path=where,
                             field=f"{field}.selection_metric")
        conds = model_conditions(students, name, split["train_sizes"], teachers)
        if spec["selection"] != "same_source":
            continue
        for cond in map(parse_condition, conds):
            n = cond.n if cond.kind == "human" else split["llm_train_size"]
            try:
                carve_ids([str(i) for i in range(n)], fraction=spec["selection_fraction"], seed=0)
            except InputError as exc:
                raise InputError(f"{cond.name}: {exc.message}", path=where,
                                 field=f"{field}.selection_fraction") from None


def _codebooks(config: dict, codebooks: dict) -> None:
    for task, cb in codebooks.items():
        k = len(cb.label_names)
        if k < 2:
            raise InputError(f"a codebook needs at least 2 labels, {task!r} has {k}",
                             path=cb.path, field="labels")
        if k == 2 and not getattr(cb, "positive", None):
            raise InputError("a binary codebook names its `positive` label", path=cb.path,
                             field="positive")


def _evaluation(config: dict, where: str) -> None:
    head = (config.get("evaluation") or {}).get("headline") or {}
    models = list((config.get("students") or {}).get("models") or {})
    if head.get("model") is not None and head["model"] not in models:
        raise InputError(f"headline model {head['model']!r} is not in students.models "
                         f"{models}", path=where, field="evaluation.headline.model")
    teachers = teacher_names(config)
    if head.get("teacher") is not None and head["teacher"] not in teachers:
        raise InputError(f"headline teacher {head['teacher']!r} is not an active teacher "
                         f"{teachers}", path=where, field="evaluation.headline.teacher")
    eq = head.get("equal_size")
    sizes = config["split"]["train_sizes"]
    if eq is not None and eq not in sizes:
        raise InputError(f"headline equal_size {eq} is not in split.train_sizes {sizes}",
                         path=where, field="evaluation.headline.equal_size")


def preflight(config: dict, codebooks: dict, where: str = "config") -> None:
    _codebooks(config, codebooks)
    _students(config, where)
    _evaluation(config, where)
