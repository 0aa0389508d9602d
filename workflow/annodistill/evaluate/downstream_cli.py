"""`annodistill evaluate prevalence | budget | cost | disagreements`: beyond the paper's tables.

Valid prevalence estimates (PPI++), the human-label budget, cost per F1 point and the
teacher-human disagreement page (docs/evaluation.md#beyond-the-paper). Each step reads the
stages' files (docs/contracts.md) and writes tables under results/summary/ (CSV with every column
at full precision, Markdown, LaTeX, HTML for the report) and figures under results/figures/.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def _paired_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codebooks", nargs="+", required=True, help="config/tasks/<task>.yaml ...")
    p.add_argument("--splits", nargs="+", required=True,
                   help="results/<task>/splits/{validation,test,train_pool}.parquet ...")
    p.add_argument("--teacher-labels", nargs="*", default=[],
                   help="results/<task>/teacher/<teacher>/labels_{validation,test,train}.parquet")


def _resampling_args(p: argparse.ArgumentParser, n_default: int) -> None:
    p.add_argument("--confidence", type=float, default=0.95, help="CI level")
    p.add_argument("--n-resamples", type=int, default=n_default,
                   help="resamples of the known-truth world")
    p.add_argument("--seed", type=int, default=20240625)


def register(esub: argparse._SubParsersAction) -> None:
    p = esub.add_parser("prevalence", help="prevalence per task and class: human-only, LLM "
                        "labels at face value, PPI++; coverage over resamples")
    _paired_args(p)
    _resampling_args(p, 1000)
    p.add_argument("--out-dir", required=True, help="results/summary")
    p.add_argument("--figures-dir", required=True, help="results/figures")
    p.set_defaults(func=_prevalence)

    b = esub.add_parser("budget", help="CI width of the prevalence against the number of human "
                        "labels, with and without LLM labels")
    _paired_args(b)
    _resampling_args(b, 200)
    b.add_argument("--sizes", type=_ints, required=True, help="human sample sizes, e.g. 10,20,40")
    b.add_argument("--metrics-all", default=None, help="results/summary/metrics_all.csv")
    b.add_argument("--meta", default=None, help="results/summary/meta.json")
    b.add_argument("--out-dir", required=True)
    b.add_argument("--figures-dir", required=True)
    b.set_defaults(func=_budget)

    c = esub.add_parser("cost", help="cost per F1 point and where LLM labels pay off")
    c.add_argument("--metrics", nargs="+", required=True, help="results/<task>/metrics.csv ...")
    c.add_argument("--runs", nargs="*", default=[],
                   help="results/<task>/students/<model>/<condition>/run.json ...")
    c.add_argument("--teacher-costs", nargs="*", default=[],
                   help="results/<task>/teacher/<teacher>/cost_<split>.json ...")
    c.add_argument("--human-usd-per-item", type=float, required=True,
                   help="one coder coding one item")
    c.add_argument("--coders-per-item", type=int, required=True)
    c.add_argument("--compute-usd-per-hour", type=float, required=True)
    c.add_argument("--corpus-items", type=int, required=True,
                   help="items to be labelled in the end (few-shot on the whole corpus)")
    c.add_argument("--validation-items", type=int, required=True,
                   help="the human validation sample (split.validation_size)")
    c.add_argument("--meta", default=None, help="results/summary/meta.json (headline model)")
    c.add_argument("--out-dir", required=True)
    c.add_argument("--figures-dir", required=True)
    c.set_defaults(func=_cost)

    d = esub.add_parser("disagreements", help="searchable page of validation/test items where "
                        "teacher and human labels differ")
    _paired_args(d)
    d.add_argument("--out", required=True, help="results/summary/disagreements.html")
    d.add_argument("--csv", required=True, help="results/summary/disagreements.csv")
    d.set_defaults(func=_disagreements)


def _meta(path: str | None) -> dict:
    if not path:
        return {}
    from ..errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError("meta.json not found (run the summary rule first)", path=str(p))
    return json.loads(p.read_text(encoding="utf-8"))


def _ci(v, lo, hi) -> str:
    import numpy as np

    if not np.isfinite(v):
        return "–"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _prevalence(args) -> int:
    import pandas as pd

    from .downstream_figures import prevalence_figure, save
    from .paired import group_inputs
    from .prevalence import coverage_table, prevalence_table
    from .tables import write_table

    paired = group_inputs(args.codebooks, args.splits, args.teacher_labels)
    prev = prevalence_table(paired, args.confidence)
    cov = coverage_table(paired, args.confidence, args.n_resamples, args.seed)
    level = f"{args.confidence:.0%}"
    disp = pd.DataFrame({
        "task": prev["task"], "teacher": prev["teacher"], "class": prev["class"],
        "estimate": prev["description"],
        f"prevalence [{level} CI]": [_ci(*x) for x in zip(prev["estimate"], prev["ci_lo"],
                                                          prev["ci_hi"])],
        "CI width": prev["width"], "human n": prev["n_human"], "LLM n": prev["n_llm"],
        "test prevalence": prev["truth_test"], "bias": prev["bias"],
        "covers test": prev["covers"]})
    out = Path(args.out_dir)
    write_table(prev, out, "prevalence", "Prevalence per task and class: human labels alone, "
                "LLM labels at face value, and PPI++ (human sample + LLM labels)", disp,
                note="Estimates of how common each class is in the population, with "
                     f"{level} CIs (ppi_py: classical CLT interval; PPI++ power-tuned). "
                     "human = the validation sample's human labels; LLM n = teacher-labelled "
                     "pool items. Scored against the held-out test set's human prevalence, "
                     "itself a sample: see the coverage table for a known truth.")
    cdisp = pd.DataFrame({
        "task": cov["task"], "teacher": cov["teacher"], "class": cov["class"],
        "estimate": cov["description"], "coverage": cov["coverage"],
        "mean bias": cov["mean_bias"], "mean CI width": cov["mean_width"],
        "LLM bias (population)": cov["llm_bias"], "resamples": cov["n_resamples"],
        "task-classes": cov["n_cells"]})
    write_table(cov, out, "prevalence_coverage",
                f"Coverage of the {level} intervals where the truth is known (resampling)", cdisp,
                note="World: every item with both a human and a teacher label (validation, test, "
                     "LLM-labelled pool); truth = its human prevalence. Each resample draws a "
                     "human sample of the validation size and an LLM-labelled set of the pool "
                     f"size i.i.d. from it (seed {args.seed}). Nominal coverage is {level}; "
                     "rows 'all' average over tasks and classes. LLM bias = teacher prevalence "
                     "minus human prevalence in the world.")
    save(prevalence_figure(prev, args.confidence), Path(args.figures_dir), "prevalence")
    print(f"prevalence: {prev['task'].nunique() if len(prev) else 0} task(s), {len(prev)} "
          f"estimates, coverage over {args.n_resamples} resamples -> {out}")
    return 0


def _budget(args) -> int:
    import pandas as pd

    from .budget import budget_figure, budget_summary, budget_table
    from .downstream_figures import save
    from .paired import group_inputs
    from .tables import write_table

    paired = group_inputs(args.codebooks, args.splits, args.teacher_labels)
    df = budget_table(paired, args.confidence, args.sizes, args.n_resamples, args.seed)
    summ = budget_summary(df)
    out = Path(args.out_dir)
    from .. import io

    io.write_csv(out / "budget_by_task.csv", df)
    disp = pd.DataFrame({
        "teacher": summ["teacher"], "human labels n": summ["n_human"],
        "CI width, human only": summ["width_human_median"],
        "CI width, + LLM labels (PPI++)": summ["width_ppi_median"],
        "width ratio": summ["width_ratio_median"],
        "worth n human labels": summ["n_equivalent_median"],
        "coverage human": summ["coverage_human_mean"], "coverage PPI++": summ["coverage_ppi_mean"],
        "task-classes": summ["n_rows"]})
    write_table(summ, out, "budget", "The human-label budget: prevalence CI width against the "
                "number of human labels, with and without LLM labels", disp,
                note=f"Medians over tasks (positive class; every class of a multi-class task) of "
                     f"the mean {args.confidence:.0%} CI width over {args.n_resamples} seeded "
                     "resamples per size; 'worth n human labels' = the human-only sample size "
                     "with the PPI++ width. Per task and class: budget_by_task.csv.")
    metrics_all = pd.read_csv(args.metrics_all) if args.metrics_all else pd.DataFrame()
    save(budget_figure(df, metrics_all, _meta(args.meta)), Path(args.figures_dir), "budget")
    print(f"budget: {len(df)} (task, class, n) rows -> {out}")
    return 0


def _cost(args) -> int:
    import pandas as pd

    from .cost import (Rates, cost_figure, cost_summary, cost_table, payoff_table, read_metrics,
                       run_key, teacher_costs, train_seconds)
    from .downstream_figures import save
    from .tables import write_table

    rates = Rates(args.human_usd_per_item, args.coders_per_item, args.compute_usd_per_hour,
                  args.corpus_items, args.validation_items)
    metrics = read_metrics(args.metrics)
    teacher = teacher_costs(args.teacher_costs, rates)
    runs = {run_key(p): train_seconds(p) for p in args.runs}
    costs = cost_table(metrics, teacher, runs, rates)
    summ = cost_summary(costs)
    pay = payoff_table(costs, rates)
    out = Path(args.out_dir)
    from .. import io

    io.write_csv(out / "cost_f1_by_task.csv", costs)
    io.write_csv(out / "cost_teacher_by_split.csv", teacher)
    rate_note = (f"Rates (evaluation.costs): ${rates.human_usd_per_item:g} per item and coder, "
                 f"{rates.coders_per_item} coder(s) per item, ${rates.compute_usd_per_hour:g} per "
                 f"compute hour; few-shot labels {rates.corpus_items:,} corpus items; every LLM "
                 f"route pays for {rates.validation_items} human-coded validation items. The "
                 "test set (the same for all) and student inference are not counted.")
    disp = pd.DataFrame({
        "model": summ["model"], "condition": summ["condition"], "tasks": summ["n_tasks"],
        "F1 (median)": summ["f1_median"], "total USD (median)": summ["total_usd_median"],
        "USD per F1 point (median)": summ["usd_per_f1_point_median"]})
    write_table(summ, out, "cost_f1", "Cost per F1 point by condition (medians over tasks)", disp,
                note=rate_note + " Per task and component: cost_f1_by_task.csv.")
    pdisp = pd.DataFrame({
        "task": pay["task"], "model": pay["model"], "LLM-label condition": pay["condition"],
        "F1": pay["f1"], "LLM route USD": pay["llm_total_usd"],
        "human labels for the same F1": pay["human_n_same_f1"], "bound": pay["bound"],
        "human route USD": pay["human_total_usd_same_f1"], "saving USD": pay["saving_usd"],
        "break-even USD per coding": pay["break_even_usd_per_item"],
        "LLM labels pay off": pay["llm_labels_pay_off"]})
    write_table(pay, out, "cost_payoff", "Where LLM labels pay off: the human labels the same "
                "model needs for the same F1, and what they cost", pdisp,
                note=rate_note + " Human labels for the same F1: linear interpolation along the "
                     "model's human-label sizes ('at least': no size reaches it; 'at most': the "
                     "smallest already does). Break-even: the price of one human coding (per "
                     "coder and item) at which both routes cost the same.")
    save(cost_figure(costs, pay, _meta(args.meta)), Path(args.figures_dir), "cost_f1")
    print(f"cost: {len(costs)} runs with a cost, {len(pay)} payoff rows -> {out}")
    return 0


def _disagreements(args) -> int:
    from .. import io
    from .disagreement import disagreements, page, to_csv_frame
    from .paired import group_inputs

    paired = group_inputs(args.codebooks, args.splits, args.teacher_labels)
    df, counts = disagreements(paired)
    io.write_csv(args.csv, to_csv_frame(df))
    io.write_text(args.out, page(df, counts))
    print(f"disagreements: {len(df)} item(s) -> {args.out}")
    return 0
