"""Snakemake wiring helpers for workflow/rules/teacher.smk (input functions, params, targets).

Kept in the package so the rule file stays wiring only (and `snakemake --lint` clean). The spec
passed to the CLI is the teacher's config entry: it names the key's environment variable and
never holds a key, so nothing secret reaches Snakemake's metadata.
"""
from __future__ import annotations

import json

from .local import PACKAGED, packaged_model_path
from .spec import DEFAULT_CACHE, DEFAULT_SEED, IN_JOB_PROVIDERS, teacher_names

LABEL_FILES = ["gate.json", "labels_validation.parquet", "labels_test.parquet",
               "labels_train.parquet"]
OUT = "results/{task}/teacher/{teacher}"


class TeacherWiring:
    def __init__(self, config: dict, tasks: list[str]):
        self.section = config.get("teachers") or {"models": {}}
        self.teachers = teacher_names(config)
        self.tasks = list(tasks)
        self.cache_dir = self.section.get("cache_dir", DEFAULT_CACHE)
        self.packaged_files = "|".join(f for _, f in PACKAGED.values())

    def names(self) -> list[str]:
        return list(self.teachers)

    def teacher_constraint(self) -> str:
        return "|".join(self.teachers) or "[A-Za-z0-9-]+"

    def entry(self, wildcards) -> dict:
        return self.section["models"][wildcards.teacher]

    def spec_json(self, wildcards) -> str:
        entry = dict(self.entry(wildcards))
        entry["name"] = wildcards.teacher
        entry.setdefault("seed", self.section.get("seed", DEFAULT_SEED))
        return json.dumps(entry, sort_keys=True)

    def model_input(self, wildcards) -> list[str]:
        entry = self.entry(wildcards)
        if entry.get("provider") != "llama_cpp_local":
            return []
        packaged = packaged_model_path(entry["model_file"])
        return [str(packaged)] if packaged else [entry["model_file"]]

    def threads(self, wildcards) -> int:
        entry = self.entry(wildcards)
        if entry.get("provider") in IN_JOB_PROVIDERS:
            return int((entry.get("server") or {}).get("threads", 2))
        return 1

    # resources of a labelling job: the teacher's `resources:` (operational), doubled on retry
    def _resources(self, wildcards) -> dict:
        return self.entry(wildcards).get("resources") or {}

    def mem_mb(self, wildcards, attempt) -> int:
        return int(self._resources(wildcards).get("mem_mb", 16000)) * attempt

    def runtime(self, wildcards, attempt) -> int:
        default = 480 if getattr(wildcards, "teacher_split", "train") == "train" else 240
        return int(self._resources(wildcards).get("runtime", default)) * attempt

    def gpu(self, wildcards) -> int:
        return int(self._resources(wildcards).get("gpu", 0))

    @staticmethod
    def packaged_name(wildcards) -> str:
        return next(n for n, (_, f) in PACKAGED.items() if f == wildcards.gguf)

    def _expand(self, files: list[str]) -> list[str]:
        return [f"results/{t}/teacher/{n}/{f}" for t in self.tasks for n in self.teachers
                for f in files]

    def targets(self) -> list[str]:
        return self._expand(LABEL_FILES)

    def estimates(self) -> list[str]:
        return self._expand(["estimate.json"])
