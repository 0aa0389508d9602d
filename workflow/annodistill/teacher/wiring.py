"""Snakemake wiring helpers for workflow/rules/teacher.smk (input functions, params, targets).

Kept in the package so the rule file stays wiring only (and `snakemake --lint` clean). The spec
passed to the CLI is the result-defining part of the teacher's config entry (spec.py:
`result_defining`); the job reads the operational part (concurrency, limits, budget, price, the
API key's variable name, server threads) from annodistill.runsettings, so changing those never
reruns a labelling job. No key is ever in a spec: nothing secret reaches Snakemake's metadata.
"""
from __future__ import annotations

import json
from typing import Callable

from ..config import task_part_json
from .local import PACKAGED, packaged_model_path
from .spec import (DEFAULT_CACHE, DEFAULT_SEED, IN_JOB_PROVIDERS, gate_stops, result_defining,
                   teacher_names)

LABEL_FILES = ["gate.json", "labels_validation.parquet", "labels_test.parquet"]
# bought only where the gate lets them (gate_allows)
GATED_FILES = ["labels_train.parquet", "cost_train.json"]
OUT = "results/{task}/teacher/{teacher}"


class TeacherWiring:
    def __init__(self, config: dict, tasks: list[str], task_dir: str = "config/tasks"):
        self.section = config.get("teachers") or {"models": {}}
        self.teachers = teacher_names(config)
        self.tasks = list(tasks)
        self.task_dir = task_dir
        self.cache_dir = self.section.get("cache_dir", DEFAULT_CACHE)
        self.packaged_files = "|".join(f for _, f in PACKAGED.values())

    def names(self) -> list[str]:
        return list(self.teachers)

    def api_key_envs(self) -> list[str]:
        """The environment variables holding the active teachers' API keys (the `envvars:` of
        the workflow: a missing one fails at DAG build, before any job)."""
        return sorted({e["api_key_env"] for e in (self.section["models"][n] for n in self.teachers)
                       if e.get("api_key_env")})

    def teacher_constraint(self) -> str:
        return "|".join(self.teachers) or "[A-Za-z0-9-]+"

    def entry(self, wildcards) -> dict:
        return self.section["models"][wildcards.teacher]

    def _spec(self, wildcards, gate: bool) -> str:
        entry = result_defining(self.entry(wildcards), gate=gate)
        entry["name"] = wildcards.teacher
        entry.setdefault("seed", self.section.get("seed", DEFAULT_SEED))
        return json.dumps(entry, sort_keys=True)

    def spec_json(self, wildcards) -> str:
        """The labelling rules' spec param: what defines the answers (not the gate)."""
        return self._spec(wildcards, gate=False)

    def gate_spec_json(self, wildcards) -> str:
        """The gate rule's spec param: what defines the answers, and the gate."""
        return self._spec(wildcards, gate=True)

    def codebook(self, wildcards) -> str:
        """The codebook's path (read by the job, not an input: see `codebook_prompt`)."""
        return f"{self.task_dir}/{wildcards.task}.yaml"

    def codebook_prompt(self, wildcards) -> str:
        """The part of the codebook the answers depend on (everything but its source)."""
        return task_part_json(wildcards.task, self.task_dir, "prompt")

    def codebook_labels(self, wildcards) -> str:
        return task_part_json(wildcards.task, self.task_dir, "labels")

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

    def targets(self, gate_allows: Callable[[str, str], bool] | None = None) -> list[str]:
        """Every teacher output; the training-set labels only where `gate_allows(task, teacher)`
        (without it: none, since that is known only once the gate has run)."""
        out = self._expand(LABEL_FILES)
        if gate_allows is not None:
            out += [f"results/{t}/teacher/{n}/{f}" for t in self.tasks for n in self.teachers
                    if gate_allows(t, n) for f in GATED_FILES]
        return out

    @staticmethod
    def gate_allows_file(path: str) -> bool:
        """Whether a written gate.json lets the training set be labelled and used."""
        from .. import io

        return not gate_stops(io.read_json(path))

    def estimates(self) -> list[str]:
        return self._expand(["estimate.json"])
