"""Snakemake wiring helpers for workflow/rules/evaluate.smk (input functions, params, targets).

Kept in the package so the rule file stays wiring only (and `snakemake --lint` clean). The
expected inputs come from the other stages' own functions: `student_prediction_files(task)`
(students.smk) and `teacher_names()` (teacher.smk). Where a stage does not define its function,
the fallbacks are: prediction files from the student stage's target list, teacher names from the
`teachers:` section.
"""
from __future__ import annotations

import os
import shlex
from typing import Callable

COST_SPLITS = ("validation", "test", "train")


class EvaluationWiring:
    def __init__(self, config: dict, tasks: list[str], task_dir: str, basedir: str, *,
                 teacher_names: Callable[[], list[str]] | None = None,
                 student_prediction_files: Callable[[str], list[str]] | None = None,
                 student_targets: Callable[[], list[str]] | None = None,
                 gate_allows: Callable[[str, str], bool] | None = None):
        self.config, self.tasks, self.task_dir = config, list(tasks), task_dir
        self.evaluation = config.get("evaluation") or {}
        self.split = config["split"]
        self._teacher_names = teacher_names
        self._student_files = student_prediction_files
        self._student_targets = student_targets
        # whether a teacher's gate let its training labels be bought (teacher.smk; a checkpoint):
        # where it stopped, the task is scored without that teacher's LLM-label students and the
        # summary lists them as missing with the reason (from gate.json)
        self._gate_allows = gate_allows
        # tasks the user left out (evaluation.exclude_tasks: task -> reason): not in the tables,
        # listed in them as missing with the reason
        self.excluded = dict(self.evaluation.get("exclude_tasks") or {})
        unknown = sorted(set(self.excluded) - set(self.tasks))
        if unknown:
            from ..errors import InputError

            raise InputError(f"evaluation.exclude_tasks names {unknown}, which are not in "
                             f"tasks {self.tasks}", field="evaluation.exclude_tasks")
        self.reported = [t for t in self.tasks if t not in self.excluded]
        ref = self.evaluation.get("reference", "resources/paper_reference.yaml")
        # relative to the working directory, else to the workflow's own folder
        if not os.path.isabs(ref) and not os.path.exists(ref):
            ref = os.path.join(basedir, ref)
        self.reference = ref

    # --- what the other stages produce ---------------------------------------------------------
    def teachers(self) -> list[str]:
        if self._teacher_names is not None:
            return list(self._teacher_names())
        from ..contracts import teacher_names

        return teacher_names(self.config)

    def predictions(self, task: str) -> list[str]:
        if self._student_files is not None:
            return list(self._student_files(task))
        if self._student_targets is None:
            return []
        prefix = f"results/{task}/students/"
        return [p for p in self._student_targets()
                if p.startswith(prefix) and p.endswith("predictions.parquet")]

    def gate_allows(self, task: str, teacher: str) -> bool:
        return True if self._gate_allows is None else bool(self._gate_allows(task, teacher))

    # --- rule metrics --------------------------------------------------------------------------
    # One input function per item: the ones that depend on a teacher gate (a checkpoint) wait for
    # it on their own, so the rule's other inputs stay known in a dry run.
    def task_inputs(self, wildcards) -> dict:
        return {"test": self.test(wildcards), "train_pool": self.train_pool(wildcards),
                "predictions": self.task_predictions(wildcards),
                "teacher_test": self.teacher_test(wildcards),
                "teacher_train": self.teacher_train(wildcards)}

    @staticmethod
    def test(wildcards) -> str:
        return f"results/{wildcards.task}/splits/test.parquet"

    @staticmethod
    def train_pool(wildcards) -> str:
        return f"results/{wildcards.task}/splits/train_pool.parquet"

    def task_predictions(self, wildcards) -> list[str]:
        return self.predictions(wildcards.task)

    def teacher_test(self, wildcards) -> list[str]:
        return [f"results/{wildcards.task}/teacher/{n}/labels_test.parquet"
                for n in self.teachers()]

    def teacher_train(self, wildcards) -> list[str]:
        t = wildcards.task
        return [f"results/{t}/teacher/{n}/labels_train.parquet" for n in self.teachers()
                if self.gate_allows(t, n)]

    def task_coders(self, wildcards) -> list[str]:
        return self.coders(wildcards.task)

    def coders(self, task: str) -> list[str]:
        """[results/{task}/data/coders.parquet] when the codebook has `source.coders`, else []."""
        from ..config import load_task

        if load_task(task, self.task_dir).coders is None:
            return []
        return [f"results/{task}/data/coders.parquet"]

    def codebook(self, wildcards) -> str:
        """The codebook's path (read by the job; not an input, so a prompt edit alone does not
        rescore): `codebook_labels` is the part the metrics depend on."""
        return f"{self.task_dir}/{wildcards.task}.yaml"

    def codebook_labels(self, wildcards) -> str:
        from ..config import task_part_json

        return task_part_json(wildcards.task, self.task_dir, "labels")

    @property
    def equal_size(self) -> int:
        h = self.evaluation.get("headline") or {}
        return int(h.get("equal_size") or self.split["llm_train_size"])

    # --- rule summary --------------------------------------------------------------------------
    def summary_inputs(self, wildcards) -> dict:
        teachers = self.teachers()

        def per_task(name):
            return [f"results/{t}/{name}" for t in self.reported]

        return {
            "metrics": per_task("metrics.csv"),
            "gaps": per_task("metrics_gaps.csv"),
            "consistency": per_task("metrics_consistency.csv"),
            "sweep": per_task("metrics_sweep.csv"),
            "per_class": per_task("metrics_per_class.csv"),
            "gaps_per_class": per_task("metrics_gaps_per_class.csv"),
            "agreement": per_task("metrics_agreement.csv"),
            "gates": [f"results/{t}/teacher/{n}/gate.json" for t in self.reported
                      for n in teachers],
            "reference": self.reference,
        }  # and `costs` (its own input function: it waits for the teacher gates)

    def costs(self, wildcards) -> list[str]:
        return [f"results/{t}/teacher/{n}/cost_{s}.json" for t in self.reported
                for n in self.teachers() for s in COST_SPLITS
                if s != "train" or self.gate_allows(t, n)]

    def headline_args(self, wildcards) -> str:
        h = self.evaluation.get("headline") or {}
        args = []
        if h.get("model"):
            args.append(f"--model {h['model']}")
        if h.get("teacher"):
            args.append(f"--teacher {h['teacher']}")
        args.append(f"--equal-size {self.equal_size}")
        for task, reason in sorted(self.excluded.items()):
            args.append("--excluded " + shlex.quote(f"{task}={reason}"))
        return " ".join(args)

    # --- beyond the paper: prevalence, budget, cost, disagreements -----------------------------
    def paired_inputs(self, wildcards, splits=("validation", "test", "train")) -> dict:
        """Codebooks, the data stage's splits and every teacher's label files of every task:
        the items that carry both a human and a teacher label (annodistill.evaluate.paired)."""
        human = {"validation": "validation", "test": "test", "train": "train_pool"}
        teachers = self.teachers()
        return {
            "codebooks": [f"{self.task_dir}/{t}.yaml" for t in self.reported],
            "splits": [f"results/{t}/splits/{human[s]}.parquet" for t in self.reported
                       for s in splits],
            # training labels only where the teacher's gate let them be bought (a checkpoint)
            "teacher_labels": [f"results/{t}/teacher/{n}/labels_{s}.parquet" for t in self.reported
                               for n in teachers for s in splits
                               if s != "train" or self.gate_allows(t, n)],
        }

    # one input function per item (as for `metrics`): the one that waits for the teacher gates
    # (a checkpoint) does so alone, so the rule's named inputs stay known in a dry run
    def paired_codebooks(self, wildcards) -> list[str]:
        return self.paired_inputs(wildcards, splits=())["codebooks"]

    def paired_splits(self, wildcards) -> list[str]:
        return self.paired_inputs(wildcards)["splits"]

    def paired_teacher_labels(self, wildcards) -> list[str]:
        return self.paired_inputs(wildcards)["teacher_labels"]

    def disagreement_inputs(self, wildcards) -> dict:
        return self.paired_inputs(wildcards, splits=("validation", "test"))

    def summary_metrics(self, wildcards) -> list[str]:
        return [f"results/{t}/metrics.csv" for t in self.reported]

    def student_runs(self, wildcards) -> list[str]:
        return [os.path.join(os.path.dirname(p), "run.json") for t in self.reported
                for p in self.predictions(t)]

    def costs_args(self, wildcards) -> str:
        c = self.evaluation["costs"]  # defaults filled from evaluation.schema.yaml
        return (f"--human-usd-per-item {c['human_usd_per_item']} "
                f"--coders-per-item {c['coders_per_item']} "
                f"--compute-usd-per-hour {c['compute_usd_per_hour']} "
                f"--corpus-items {c['corpus_items']} "
                f"--validation-items {self.split['validation_size']}")

    def downstream_targets(self) -> list[str]:
        """The tables, figures and page of the steps beyond the paper; they need a teacher."""
        if not self.teachers():
            return []
        return ["results/summary/prevalence.html", "results/summary/prevalence_coverage.html",
                "results/figures/prevalence.png", "results/summary/budget.html",
                "results/figures/budget.png", "results/summary/cost_f1.html",
                "results/summary/cost_payoff.html", "results/figures/cost_f1.png",
                "results/summary/disagreements.html"]

    # --- targets -------------------------------------------------------------------------------
    def has_work(self) -> bool:
        return bool(self.teachers()) or any(self.predictions(t) for t in self.tasks)

    def task_targets(self) -> list[str]:
        return [f"results/{t}/metrics.csv" for t in self.reported] if self.has_work() else []
