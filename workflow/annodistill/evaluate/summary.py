"""Build every summary table under results/summary/ from the per-task evaluation files on disk.

Reads only small files (per-task metrics CSVs, gate.json, cost_*.json, the paper reference), so
rebuilding the tables takes seconds and never retrains or relabels anything.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import io
from ..contracts import NEAR_ONE_CLASS_SHARE
from ..errors import InputError
from . import aggregate as agg
from .tables import write_table

log = logging.getLogger(__name__)

# stem -> (caption, report category); the order is the order in the report
TABLES = {
    "headline": "Median F1, precision and recall across tasks by task type and training condition",
    "agreement_median": "Agreement with the human labels across tasks: Cohen's kappa and "
                        "Krippendorff's alpha, teacher-human next to human-human",
    "paper_comparison": "This study next to the numbers reported by Pangakis & Wolken (2024)",
    "gaps_median": "Median gaps across tasks with bootstrap CIs and Wilcoxon signed-rank tests",
    "gaps_by_task": "Per-task gaps with paired bootstrap CIs over test items",
    "metrics_by_task": "Per-task metrics (seeds averaged) with bootstrap CIs",
    "per_class": "Per-class precision, recall and F1 per task (seeds averaged) with bootstrap CIs",
    "agreement": "Agreement per task on the test set: kappa and alpha with bootstrap CIs",
    "teacher_gate": "Teacher validation gate per task",
    "consistency": "Teacher label accuracy by answer consistency, pooled over tasks",
    "consistency_sweep": "Consistency threshold: labels kept, their accuracy and student F1",
    "cost": "Teacher cost per task and split",
}
CSV_ONLY = ("metrics_all", "consistency_by_task", "sweep_by_task", "gaps_per_class_by_task",
            "gaps_per_class_median")


@dataclass
class SummaryInputs:
    metrics: list[str]
    gaps: list[str] = field(default_factory=list)
    consistency: list[str] = field(default_factory=list)
    sweep: list[str] = field(default_factory=list)
    per_class: list[str] = field(default_factory=list)
    gaps_per_class: list[str] = field(default_factory=list)
    agreement: list[str] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)
    costs: list[str] = field(default_factory=list)
    reference: str | None = None
    model: str | None = None        # the headline student model (default: first seen)
    teacher: str | None = None      # the headline teacher (default: first seen)
    equal_size: int | None = None   # the human-label size compared with LLM labels
    n_resamples: int = 10000
    confidence: float = 0.95
    seed: int = 20240625
    excluded: dict[str, str] = field(default_factory=dict)  # task -> why it is not reported


def _concat(paths: list[str], what: str) -> pd.DataFrame:
    frames = []
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"{what} not found", path=str(p))
        try:
            frames.append(pd.read_csv(p, keep_default_na=True, dtype={"teacher": object}))
        except pd.errors.EmptyDataError as exc:
            raise InputError(f"{what} is empty", path=str(p)) from exc
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def missing_runs(gate_paths: list[str]) -> list[dict]:
    """What a stopped teacher gate left out: one entry per (task, teacher) whose gate.json says
    the training set was not labelled (gate.on_fail: stop), with the reason. The workflow does not
    schedule those LLM-label students, so every table lacks them; this says why."""
    from ..teacher.spec import gate_stops

    out = []
    for path in sorted(gate_paths):
        g = io.read_json(path)
        if not gate_stops(g):
            continue
        task, teacher = agg._teacher_file(path)
        f1 = g.get("f1")
        f1_text = "none" if f1 is None else f"{f1:.3f}"
        out.append({"task": g.get("task", task), "teacher": g.get("teacher", teacher),
                    "missing": f"students on {teacher}'s labels, {teacher}'s training labels",
                    "reason": f"teacher gate stopped the task: validation F1 {f1_text} < "
                              f"min_f1 {g.get('min_f1')} (gate.on_fail: stop; {path})"})
    return out


def missing_note(missing: list[dict]) -> str:
    if not missing:
        return ""
    return " MISSING: " + "; ".join(f"task {m['task']}: {m['missing']} — {m['reason']}"
                                   for m in missing) + "."


def _ci(v, lo, hi) -> str:
    if pd.isna(v):
        return "–"
    if pd.isna(lo) or pd.isna(hi):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _degenerate_cell(r) -> str:
    if not r.n_degenerate_runs:
        return "0"
    return f"{r.n_degenerate_runs} of {r.n_runs} ({r.degenerate_tasks})"


def _degenerate_note(n: int) -> str:
    if not n:
        return "No student run is degenerate."
    return (f"WARNING: {n} run(s) are degenerate (one predicted class on the test set, or at "
            f"least {NEAR_ONE_CLASS_SHARE:.1%} of it in one class, or near-constant "
            f"probabilities; tasks named in the last column): their recall and precision "
            f"describe a constant predictor, not a learned classifier.")
AGREEMENT_NOTE = ("Cohen's kappa (sklearn.metrics.cohen_kappa_score) and Krippendorff's alpha, "
                  "nominal (krippendorff.alpha) between the teacher's few-shot labels and the "
                  "human test labels (items without a parsable answer left out). Human coders: "
                  "alpha over all ratings of the test items (missing ratings allowed) and Fleiss' "
                  "kappa (statsmodels) over m ratings per item (a seeded random subset where "
                  "items have more); the ceiling for teacher-human agreement. CIs: percentile "
                  "bootstrap over test items.")


def _range(lo, hi) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return "–"
    return f"{lo:.3f} – {hi:.3f}"


def _miqr(row, m) -> str:
    if pd.isna(row[f"{m}_median"]):
        return "–"
    return f"{row[f'{m}_median']:.3f} [{row[f'{m}_q25']:.3f}, {row[f'{m}_q75']:.3f}]"


def build_summary(inp: SummaryInputs, out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    metrics = _concat(inp.metrics, "metrics file")
    required = {"task", "model", "condition", "kind", "f1", "precision", "recall", "accuracy"}
    if metrics.empty or not required <= set(metrics.columns):
        missing = sorted(required - set(metrics.columns))
        raise InputError(f"no usable metrics rows (missing columns {missing})" if missing else
                         "no metrics rows", path=", ".join(inp.metrics[:3]))
    gaps = _concat(inp.gaps, "gaps file")
    cons = _concat(inp.consistency, "consistency file")
    sweep = _concat(inp.sweep, "sweep file")
    per_class = _concat(inp.per_class, "per-class file")
    gaps_pc = _concat(inp.gaps_per_class, "per-class gaps file")
    agree = _concat(inp.agreement, "agreement file")
    types = agg.task_types(metrics)

    avg = agg.seed_averaged(metrics)
    students = avg[avg["kind"] != "fewshot"]
    model = inp.model or (students["model"].iloc[0] if len(students) else None)
    teachers = sorted(avg.loc[avg["kind"] == "fewshot", "model"].unique())
    llm_teachers = sorted(avg["teacher"].dropna().unique())
    teacher = inp.teacher or (teachers[0] if teachers else (llm_teachers[0] if llm_teachers
                                                             else None))
    equal = inp.equal_size
    if equal is None:
        sizes = avg.loc[avg["kind"].isin(["llm", "soft"]), "train_size"].dropna()
        equal = int(sizes.iloc[0]) if len(sizes) else None

    missing = [{"task": t, "teacher": None, "missing": "every result of the task",
                "reason": f"excluded (evaluation.exclude_tasks): {why}"}
               for t, why in sorted(inp.excluded.items())] + missing_runs(inp.gates)
    head = agg.headline(avg)
    gsum = agg.gap_summary(gaps, inp.n_resamples, inp.confidence, inp.seed, types)
    gtask = agg.gaps_by_task(gaps)
    gate = agg.teacher_gate(inp.gates)
    cost = agg.cost_table(inp.costs)
    csum = agg.consistency_summary(cons)
    ssum = agg.sweep_summary(sweep, avg)
    written: list[Path] = []

    disp = pd.DataFrame({"tasks": [f"{n} {t}" for n, t in zip(head["n_tasks"], head["task_type"])],
                         "condition": head["description"],
                         "F1 is": head["headline_metric"], "tasks_n": head["n_tasks"],
                         **{f"{m} median [IQR]": head.apply(_miqr, axis=1, m=m)
                            for m in ("f1", "precision", "recall")},
                         "degenerate runs": [_degenerate_cell(r) for r in head.itertuples()]}
                        ).drop(columns="tasks_n")
    n_deg = int(head["n_degenerate_runs"].sum())
    written += write_table(head, out_dir, "headline", TABLES["headline"], disp,
                           note="Median across tasks (seeds averaged within a task) with the "
                                "interquartile range, binary and multi-class tasks in separate "
                                "rows. Binary tasks: F1, precision and recall of the positive "
                                "class; multi-class: macro averages over the classes (macro-F1). "
                                "Precision is undefined (skipped) for a task where nothing was "
                                "predicted in a class. " + _degenerate_note(n_deg)
                                + missing_note(missing))

    asum = agg.agreement_summary(agree, types)
    adisp = pd.DataFrame({
        "tasks": [f"{n} {t}" for n, t in zip(asum["n_tasks"], asum["task_type"])],
        "agreement": [f"{r} vs human labels" if k == "teacher-human" else "human coders (ceiling)"
                      for k, r in zip(asum["kind"], asum["rater"])],
        "kappa median": asum["kappa_median"], "alpha median": asum["alpha_median"],
        "kappa range": [_range(a, b) for a, b in zip(asum["kappa_min"], asum["kappa_max"])],
        "alpha range": [_range(a, b) for a, b in zip(asum["alpha_min"], asum["alpha_max"])]})
    written += write_table(asum, out_dir, "agreement_median", TABLES["agreement_median"], adisp,
                           note=AGREEMENT_NOTE)

    if inp.reference:
        ref = agg.load_reference(inp.reference)
        # the paper's tasks are binary: compare with this study's binary rows
        comp = agg.paper_comparison(ref, head[head["task_type"] == "binary"],
                                    gsum[gsum["task_type"] == "binary"] if not gsum.empty else gsum,
                                    model, teacher, equal)
        src = ref["source"]
        cdisp = pd.DataFrame({
            "quantity": comp["quantity"],
            "paper": [f"{'about ' if a else ''}{p:.3f}" for p, a in
                      zip(comp["paper"], comp["paper_approximate"])],
            "statistic": comp["statistic"].str.replace("_", " "),
            "this study": comp["study"], "tasks": comp["study_n_tasks"],
            "difference": comp["difference"],
            "study: difference of medians": comp["study_difference_of_medians"],
            "study: median of per-task differences": comp["study_median_of_differences"],
            "this study's rows": comp["study_rows"]})
        written += write_table(comp, out_dir, "paper_comparison", TABLES["paper_comparison"], cdisp,
                               note=f"Paper: {src.get('citation', '')} {src.get('url', '')}. "
                                    f"{src.get('note', '')} `this study` uses the paper's "
                                    f"statistic (a gap: the difference of the two medians "
                                    f"across tasks); the paired median of per-task differences "
                                    f"is shown beside it.".strip())

    gdisp = pd.DataFrame({
        "LLM-label student": [agg.describe(r.model, r.condition, r.kind, r.teacher, r.threshold,
                                           equal) for r in gsum.itertuples()],
        "minus": gsum["reference"], "metric": gsum["metric"], "tasks": gsum["n_tasks"],
        "median gap [95% CI]": [_ci(v, lo, hi) for v, lo, hi in
                                zip(gsum["median_gap"], gsum["ci_lo"], gsum["ci_hi"])],
        "better/worse": [f"{b}/{w}" for b, w in zip(gsum["n_llm_better"], gsum["n_llm_worse"])],
        "Wilcoxon n": gsum["wilcoxon_n"], "W": gsum["wilcoxon_statistic"],
        "p": gsum["wilcoxon_p"], "method": gsum["wilcoxon_method"]})
    written += write_table(gsum, out_dir, "gaps_median", TABLES["gaps_median"], gdisp, digits=4,
                           note="Gap = metric of the LLM-label student minus the reference "
                                "(the human-label student of equal size, or the teacher's "
                                "few-shot labels on the test set). CI: percentile bootstrap of "
                                "the median over tasks. Wilcoxon signed-rank test of the per-task "
                                "gaps against 0 (zero gaps dropped; exact null distribution "
                                "unless ties or n > 50).")

    tdisp = pd.DataFrame({"task": gtask["task"], "model": gtask["model"],
                          "condition": gtask["condition"], "minus": gtask["reference"],
                          **{f"{m} gap [95% CI]": [_ci(*x) for x in zip(
                              gtask[f"{m}_gap"], gtask[f"{m}_gap_lo"], gtask[f"{m}_gap_hi"])]
                             for m in ("f1", "precision", "recall")}})
    written += write_table(gtask, out_dir, "gaps_by_task", TABLES["gaps_by_task"], tdisp)

    lo_hi = metrics.groupby(["task", "model", "condition"])[
        [c for c in metrics.columns if c.endswith(("_lo", "_hi"))]].mean().reset_index()
    per_task = _order_tasks(avg.merge(lo_hi, on=["task", "model", "condition"], how="left"))
    mdisp = pd.DataFrame({
        "task": per_task["task"],
        "condition": [agg.describe(r.model, r.condition, r.kind, r.teacher, r.threshold,
                                   r.train_size) for r in per_task.itertuples()],
        "seeds": per_task["n_seeds"],
        "degenerate": per_task["degenerate"].fillna(""),
        **{m: [_ci(*x) for x in zip(per_task[m], per_task[f"{m}_lo"], per_task[f"{m}_hi"])]
           for m in ("f1", "precision", "recall", "accuracy")},
        "no answer": per_task["n_no_label"]})
    written += write_table(per_task, out_dir, "metrics_by_task", TABLES["metrics_by_task"], mdisp,
                           note="With several seeds, the CI bounds are averaged over seeds.")

    pcls = agg.per_class_by_task(per_class)
    if not pcls.empty:
        pcls = pcls.merge(avg[["task", "model", "condition", "threshold", "train_size"]],
                          on=["task", "model", "condition"], how="left")
    pdisp = pd.DataFrame({
        "task": pcls["task"],
        "condition": [agg.describe(r.model, r.condition, r.kind, r.teacher, r.threshold,
                                   r.train_size) for r in pcls.itertuples()],
        "class": pcls["class"], "support": pcls["support"],
        **{m: [_ci(*x) for x in zip(pcls[m], pcls[f"{m}_lo"], pcls[f"{m}_hi"])]
           for m in ("precision", "recall", "f1")}})
    written += write_table(pcls, out_dir, "per_class", TABLES["per_class"], pdisp,
                           note="Per class, one-vs-rest (scikit-learn's "
                                "precision_recall_fscore_support, average=None); seeds averaged, "
                                "CI bounds averaged over seeds. Confusion matrices: "
                                "results/<task>/metrics_confusion.csv.")
    adt = agree.copy()
    if not adt.empty:
        adt = adt.sort_values(["task", "kind", "rater"], ascending=[True, False, True])
        ddisp = pd.DataFrame({
            "task": adt["task"],
            "agreement": [f"{r} vs human labels" if k == "teacher-human"
                          else "human coders (ceiling)" for k, r in zip(adt["kind"], adt["rater"])],
            "items": adt["n"],
            "kappa [95% CI]": [_ci(*x) for x in zip(adt["kappa"], adt["kappa_lo"], adt["kappa_hi"])],
            "kappa": adt["kappa_method"],
            "alpha [95% CI]": [_ci(*x) for x in zip(adt["alpha"], adt["alpha_lo"], adt["alpha_hi"])]})
    else:
        ddisp = None
    written += write_table(adt, out_dir, "agreement", TABLES["agreement"], ddisp,
                           note=AGREEMENT_NOTE)

    written += write_table(gate, out_dir, "teacher_gate", TABLES["teacher_gate"],
                           note="f1 is the headline metric of the task (binary: F1 of the positive "
                                "class; multi-class: macro-F1); the gate's min_f1 applies to it. "
                                "kappa (Cohen) and alpha (Krippendorff, nominal): teacher vs human "
                                "labels on the validation sample.")
    written += write_table(csum, out_dir, "consistency", TABLES["consistency"],
                           note="consistency = share of a teacher's sampled answers equal to their "
                                "mode; accuracy against the human label. test = held-out test "
                                "items, train = the LLM-labelled training set.")
    written += write_table(ssum, out_dir, "consistency_sweep", TABLES["consistency_sweep"],
                           note="Training labels kept at consistency >= threshold, accuracy of the "
                                "kept labels against human labels (medians over tasks), and the "
                                "median F1 of students trained on them where the study has that "
                                "condition.")
    written += write_table(cost, out_dir, "cost", TABLES["cost"])

    for stem, df in (("metrics_all", metrics), ("consistency_by_task", cons),
                     ("sweep_by_task", sweep), ("gaps_per_class_by_task", gaps_pc),
                     ("gaps_per_class_median", agg.class_gap_summary(
                         gaps_pc, inp.n_resamples, inp.confidence, inp.seed, types))):
        io.write_csv(out_dir / f"{stem}.csv", df)
        written.append(out_dir / f"{stem}.csv")
    meta = {"model": model, "teacher": teacher, "equal_size": equal, "task_types": types,
            "tasks": sorted(avg["task"].unique()), "n_tasks": int(avg["task"].nunique()),
            "missing": missing,
            "bootstrap_over_tasks": {"n_resamples": inp.n_resamples,
                                     "confidence": inp.confidence, "seed": inp.seed}}
    io.write_json(out_dir / "meta.json", meta)
    written.append(out_dir / "meta.json")
    log.info("wrote %d summary files to %s", len(written), out_dir)
    return meta


def _order_tasks(df: pd.DataFrame) -> pd.DataFrame:
    key = df["kind"].map(agg.KIND_ORDER).fillna(9)
    return (df.assign(_k=key, _s=pd.to_numeric(df["train_size"], errors="coerce").fillna(0))
            .sort_values(["task", "_k", "model", "_s", "condition"])
            .drop(columns=["_k", "_s"]).reset_index(drop=True))


def expected_outputs(out_dir: str | Path, with_reference: bool = True) -> list[Path]:
    out_dir = Path(out_dir)
    stems = [s for s in TABLES if with_reference or s != "paper_comparison"]
    from .tables import FORMATS

    files = [out_dir / f"{s}.{ext}" for s in stems for ext in FORMATS]
    return files + [out_dir / f"{s}.csv" for s in CSV_ONLY] + [out_dir / "meta.json"]

