"""Snakemake wiring helpers for workflow/rules/students.smk (input functions, resources, targets).

Kept in the package so the rule file stays wiring only (and `snakemake --lint` clean) and the
helpers are unit-testable without Snakemake.
"""
from __future__ import annotations

import json
from typing import Callable

from ..config import task_part_json
from ..contracts import CONDITION_PATTERN, NAME_PATTERN, teacher_names, teacher_of
from .spec import model_conditions, model_spec, result_defining

class StudentWiring:
    def __init__(self, config: dict, tasks: list[str], task_dir: str):
        self.config, self.tasks, self.task_dir = config, list(tasks), task_dir
        self.students = config.get("students") or {}
        self.models = list(self.students.get("models") or {})

    def conditions(self, model: str) -> list[str]:
        return model_conditions(self.students, model, self.config["split"]["train_sizes"],
                                teacher_names(self.config))

    @staticmethod
    def model_constraint() -> str:
        return NAME_PATTERN

    @staticmethod
    def condition_constraint() -> str:
        return CONDITION_PATTERN

    def inputs(self, wildcards) -> dict:
        split_dir = f"results/{wildcards.task}/splits"
        out = {"train_pool": f"{split_dir}/train_pool.parquet",
               "test": f"{split_dir}/test.parquet"}
        if model_spec(self.students, wildcards.model)["selection"] == "human_validation":
            out["validation"] = f"{split_dir}/validation.parquet"
        teacher = teacher_of(wildcards.condition)
        if teacher is not None:
            out["labels"] = f"results/{wildcards.task}/teacher/{teacher}/labels_train.parquet"
        return out

    def spec_json(self, wildcards) -> str:
        """The result-defining part of the model's spec (a param: a change retrains)."""
        spec = result_defining(model_spec(self.students, wildcards.model))
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))

    def codebook(self, wildcards) -> str:
        """The codebook's path: the job reads it, but it is not an input (a prompt edit must
        not retrain); `codebook_labels` is the part that defines the students' results."""
        return f"{self.task_dir}/{wildcards.task}.yaml"

    def codebook_labels(self, wildcards) -> str:
        return task_part_json(wildcards.task, self.task_dir, "labels")

    @staticmethod
    def teacher_arg(wildcards, input) -> str:
        return f"--teacher-labels {input.labels}" if "labels" in input.keys() else ""

    def _resources(self, model: str) -> dict:
        return ((self.students.get("models") or {}).get(model) or {}).get("resources") or {}

    def threads(self, wildcards) -> int:
        return self._resources(wildcards.model).get("threads", 2)

    def mem_mb(self, wildcards, attempt) -> int:
        return self._resources(wildcards.model).get("mem_mb", 4000) * attempt

    def runtime(self, wildcards, attempt) -> int:
        return self._resources(wildcards.model).get("runtime", 60) * attempt

    def gpu(self, wildcards) -> int:
        return self._resources(wildcards.model).get("gpu", 0)

    def targets(self, tasks: list[str] | None = None,
                gate_allows: Callable[[str, str], bool] | None = None) -> list[str]:
        """Every student run of `tasks` (default: all). A run on a teacher's labels is listed
        only where `gate_allows(task, teacher)` (without it: none, since whether the teacher's
        training labels exist is known only once its gate has run)."""
        out = []
        for model in self.models:
            for cond in self.conditions(model):
                teacher = teacher_of(cond)
                for task in self.tasks if tasks is None else tasks:
                    if teacher is not None and (gate_allows is None
                                                or not gate_allows(task, teacher)):
                        continue
                    base = f"results/{task}/students/{model}/{cond}"
                    out += [f"{base}/predictions.parquet", f"{base}/run.json"]
        return out

    def prediction_files(self, task: str,
                         gate_allows: Callable[[str, str], bool] | None = None) -> list[str]:
        return [p for p in self.targets([task], gate_allows) if p.endswith("predictions.parquet")]
