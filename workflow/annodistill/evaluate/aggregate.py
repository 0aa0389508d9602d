"""Across tasks: the paper's findings, computed for whatever tasks the study has.

Inputs are the per-task files of `task.py` (metrics.csv, metrics_gaps.csv, metrics_consistency.csv,
metrics_sweep.csv, and per_class.py's metrics_per_class.csv, metrics_agreement.csv) and the
teacher's gate.json / cost_*.json. Every statistic is across tasks, after averaging seeds within a
task (NaN seeds skipped), and per task type: binary tasks (headline metric: F1 of the positive
class) and multi-class tasks (macro-F1) are summarised in separate rows, so neither kind blocks or
blurs the other (`task_type`, `headline_metric` columns):
- `headline`: per (task type, model, condition) the median and IQR of F1, precision, recall and
  accuracy;
- `agreement_summary`: teacher-human and human-human kappa and alpha per task and their medians;
- `gap_summary`: per (task type, model, LLM-label condition, comparison, metric) the median of the per-task
  gaps, a percentile bootstrap CI of that median over tasks (scipy.stats.bootstrap) and the
  Wilcoxon signed-rank test of the gaps (scipy.stats.wilcoxon: n, statistic, p, method);
- teacher gate summary, consistency vs accuracy (pooled over tasks), the consistency-threshold
  sweep, cost per task and the side-by-side comparison with the paper's reported numbers.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from .metrics import METRICS, percentile_ci

KIND_ORDER = {"fewshot": 0, "llm": 1, "llm_consistency": 2, "soft": 3, "human": 4}
SUMMARY_METRICS = ("f1", "precision", "recall")
TYPE_ORDER = {"binary": 0, "multiclass": 1}
HEADLINE_METRIC = {"binary": "F1 of the positive class", "multiclass": "macro-F1"}


def with_task_type(metrics: pd.DataFrame) -> pd.DataFrame:
    """metrics.csv rows with `task_type` (binary/multiclass): the column, or from `average` in
    files written before it existed."""
    if metrics.empty or "task_type" in metrics.columns and metrics["task_type"].notna().all():
        return metrics
    avg = metrics.get("average", pd.Series("binary", index=metrics.index))
    return metrics.assign(task_type=np.where(avg == "binary", "binary", "multiclass"))


def task_types(metrics: pd.DataFrame) -> dict[str, str]:
    """task -> binary | multiclass."""
    m = with_task_type(metrics)
    return dict(zip(m["task"], m["task_type"])) if not m.empty else {}


def describe(model: str, condition: str, kind: str, teacher, threshold, train_size) -> str:
    """A readable name for a (model, condition) row."""
    size = "" if train_size is None or pd.isna(train_size) else f"{int(train_size):,} "
    if kind == "fewshot":
        return f"{model} few-shot (LLM labels the test set)"
    if kind == "human":
        return f"{model} on {size}human labels"
    if kind == "llm":
        return f"{model} on {size}{teacher} labels"
    if kind == "llm_consistency":
        return f"{model} on {teacher} labels with consistency >= {int(threshold)}%"
    if kind == "soft":
        return f"{model} on {size}{teacher} soft labels"
    return f"{model} {condition}"


def seed_averaged(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, model, condition): metrics averaged over seeds (NaN seeds skipped)."""
    keys = ["task", "model", "condition"]
    metrics = with_task_type(metrics)
    first = ["task_type", "kind", "teacher", "threshold", "human_n", "train_size", "n_test"]
    if metrics.empty:
        return pd.DataFrame(columns=keys + first + ["n_seeds", "n_no_label", "n_train",
                                                    "n_degenerate", "degenerate", *METRICS])
    metrics = metrics.assign(degenerate=_degenerate_column(metrics))
    g = metrics.groupby(keys, sort=True, dropna=False)
    out = g[first].first()
    out["n_seeds"] = g.size()
    out["n_no_label"] = g["n_no_label"].sum()
    out["n_degenerate"] = g["degenerate"].agg(lambda v: int((v != "").sum()))
    out["degenerate"] = g["degenerate"].agg(lambda v: "; ".join(sorted({x for x in v if x})))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["n_train"] = g["n_train"].mean()
        for m in METRICS:
            out[m] = g[m].mean()  # pandas skips NaN
    return out.reset_index()


def _degenerate_column(metrics: pd.DataFrame) -> pd.Series:
    """The `degenerate` reasons of metrics.csv rows ('' = not degenerate)."""
    if "degenerate" not in metrics.columns:
        raise InputError("metrics rows lack the `degenerate` column (re-run the evaluation)",
                         field="degenerate")
    d = metrics["degenerate"].astype(object)
    return d.where(d.notna(), "").astype(str)


def _order(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    key = df["kind"].map(KIND_ORDER).fillna(9)
    size = pd.to_numeric(df.get("train_size"), errors="coerce").fillna(0)
    thr = pd.to_numeric(df.get("threshold"), errors="coerce").fillna(-1)
    typ = (df["task_type"].map(TYPE_ORDER).fillna(9) if "task_type" in df.columns
           else pd.Series(0, index=df.index))
    return (df.assign(_y=typ, _k=key, _s=size, _t=thr)
            .sort_values(["_y", "_k", "model", "teacher", "_t", "_s", "condition"],
                         na_position="first")
            .drop(columns=["_y", "_k", "_s", "_t"]).reset_index(drop=True))


def _quantiles(x: pd.Series) -> tuple[float, float, float, int]:
    v = pd.to_numeric(x, errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return np.nan, np.nan, np.nan, 0
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return float(med), float(q25), float(q75), len(v)


def headline(avg: pd.DataFrame) -> pd.DataFrame:
    """Per (task type, model, condition): number of tasks and median [IQR] of each metric across
    tasks; `headline_metric` says what `f1` is in that row."""
    rows = []
    avg = with_task_type(avg)
    for (ttype, model, cond), g in avg.groupby(["task_type", "model", "condition"], sort=True):
        first = g.iloc[0]
        sizes = g["train_size"].dropna().unique()
        row = {"task_type": ttype, "headline_metric": HEADLINE_METRIC.get(ttype, ttype),
               "model": model, "condition": cond, "kind": first["kind"],
               "teacher": first["teacher"], "threshold": first["threshold"],
               "train_size": sizes[0] if len(sizes) == 1 else pd.NA,
               "n_tasks": g["task"].nunique(),
               "n_runs": int(g["n_seeds"].sum()),
               "n_degenerate_runs": int(g["n_degenerate"].sum()),
               "degenerate_tasks": ", ".join(sorted(g.loc[g["n_degenerate"] > 0, "task"]))}
        row["description"] = describe(model, cond, row["kind"], row["teacher"], row["threshold"],
                                      row["train_size"])
        for m in (*SUMMARY_METRICS, "accuracy"):
            med, q25, q75, n = _quantiles(g[m])
            row.update({f"{m}_median": med, f"{m}_q25": q25, f"{m}_q75": q75, f"{m}_n": n})
        rows.append(row)
    cols = ["task_type", "headline_metric", "model", "condition", "kind", "teacher", "threshold",
            "train_size", "n_tasks", "n_runs", "n_degenerate_runs", "degenerate_tasks",
            "description"]
    cols += [f"{m}_{s}" for m in (*SUMMARY_METRICS, "accuracy") for s in ("median", "q25", "q75",
                                                                          "n")]
    return _order(pd.DataFrame(rows, columns=cols))


def wilcoxon(gaps: np.ndarray) -> dict:
    """Wilcoxon signed-rank test of gaps against 0 (zeros dropped, as scipy's default 'wilcox').

    The exact null distribution is used when it applies (n <= 50 non-zero gaps, no tied |gaps|),
    otherwise the normal approximation; the method used is reported with n and p.
    """
    d = np.asarray(gaps, dtype=float)
    d = d[~np.isnan(d)]
    nz = d[d != 0]
    out = {"n": len(d), "n_nonzero": len(nz), "statistic": np.nan, "p": np.nan, "method": ""}
    if len(nz) == 0:
        out["method"] = "undefined (no non-zero gap)"
        return out
    ties = len(np.unique(np.abs(nz))) < len(nz)
    method = "exact" if len(nz) <= 50 and not ties else "asymptotic"
    res = stats.wilcoxon(nz, method=method)
    out.update({"statistic": float(res.statistic), "p": float(res.pvalue), "method": method})
    return out


def median_ci(values: np.ndarray, n_resamples: int, confidence: float, seed: int):
    """Percentile bootstrap CI of the median over tasks (NaN with fewer than two tasks)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2 or n_resamples < 1:
        return np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((v,), np.median, vectorized=True, n_resamples=n_resamples,
                              method="percentile", confidence_level=confidence,
                              rng=np.random.default_rng(seed))
    lo, hi = percentile_ci(np.asarray(res.bootstrap_distribution), confidence)
    return float(lo), float(hi)


def gaps_by_task(gaps: pd.DataFrame) -> pd.DataFrame:
    cols = ["task", "model", "condition", "teacher", "comparison", "reference", "n_seeds"]
    cols += [f"{m}{s}" for m in SUMMARY_METRICS for s in ("_a", "_b", "_gap", "_gap_lo",
                                                          "_gap_hi")]
    if gaps.empty:
        return pd.DataFrame(columns=cols)
    return gaps.sort_values(["model", "condition", "comparison", "task"])[cols].reset_index(
        drop=True)


def gap_summary(gaps: pd.DataFrame, n_resamples: int = 10000, confidence: float = 0.95,
                seed: int = 20240625, types: dict[str, str] | None = None) -> pd.DataFrame:
    """Median gap across tasks with bootstrap CI and Wilcoxon test, per task type (`types`: task
    -> binary/multiclass; default binary), comparison and metric."""
    rows = []
    if not gaps.empty:
        gaps = gaps.assign(task_type=gaps["task"].map(types or {}).fillna("binary"))
        for (ttype, model, cond, comp), g in gaps.groupby(
                ["task_type", "model", "condition", "comparison"], sort=True):
            first = g.iloc[0]
            for m in SUMMARY_METRICS:
                v = pd.to_numeric(g[f"{m}_gap"], errors="coerce").to_numpy(dtype=float)
                defined = v[~np.isnan(v)]
                lo, hi = median_ci(defined, n_resamples, confidence, seed)
                w = wilcoxon(defined)
                rows.append({"task_type": ttype,
                             "headline_metric": HEADLINE_METRIC.get(ttype, ttype),
                             "model": model, "condition": cond, "kind": first["kind"],
                             "teacher": first["teacher"], "threshold": first["threshold"],
                             "comparison": comp, "reference": first["reference"], "metric": m,
                             "n_tasks": len(defined),
                             "median_llm": float(np.nanmedian(g[f"{m}_a"]))
                             if g[f"{m}_a"].notna().any() else np.nan,
                             "median_reference": float(np.nanmedian(g[f"{m}_b"]))
                             if g[f"{m}_b"].notna().any() else np.nan,
                             "median_gap": float(np.median(defined)) if len(defined) else np.nan,
                             "ci_lo": lo, "ci_hi": hi,
                             "n_llm_better": int((defined > 0).sum()),
                             "n_llm_worse": int((defined < 0).sum()),
                             "wilcoxon_n": w["n_nonzero"], "wilcoxon_statistic": w["statistic"],
                             "wilcoxon_p": w["p"], "wilcoxon_method": w["method"]})
    cols = ["task_type", "headline_metric", "model", "condition", "kind", "teacher", "threshold",
            "comparison", "reference", "metric", "n_tasks", "median_llm", "median_reference", "median_gap", "ci_lo", "ci_hi",
            "n_llm_better", "n_llm_worse", "wilcoxon_n", "wilcoxon_statistic", "wilcoxon_p",
            "wilcoxon_method"]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    df["_m"] = df["metric"].map({m: i for i, m in enumerate(SUMMARY_METRICS)})
    df = _order(df.assign(train_size=np.nan))
    df["_y"] = df["task_type"].map(TYPE_ORDER).fillna(9)
    return (df.sort_values(["_y", "model", "comparison", "_m"], kind="stable")
            .drop(columns=["_m", "_y", "train_size"]).reset_index(drop=True))


def agreement_summary(agree: pd.DataFrame, types: dict[str, str] | None = None) -> pd.DataFrame:
    """Per (task type, rater): the number of tasks and the median kappa and alpha across tasks,
    teacher-human rows next to the human-human ceiling."""
    cols = ["task_type", "kind", "rater", "n_tasks", "kappa_median", "alpha_median", "kappa_min",
            "kappa_max", "alpha_min", "alpha_max"]
    if agree.empty:
        return pd.DataFrame(columns=cols)
    agree = agree.assign(task_type=agree["task"].map(types or {}).fillna("binary"))
    rows = []
    for (ttype, kind, rater), g in agree.groupby(["task_type", "kind", "rater"], sort=True):
        k = pd.to_numeric(g["kappa"], errors="coerce").dropna()
        a = pd.to_numeric(g["alpha"], errors="coerce").dropna()
        rows.append({"task_type": ttype, "kind": kind, "rater": rater,
                     "n_tasks": g["task"].nunique(),
                     "kappa_median": float(k.median()) if len(k) else np.nan,
                     "alpha_median": float(a.median()) if len(a) else np.nan,
                     "kappa_min": float(k.min()) if len(k) else np.nan,
                     "kappa_max": float(k.max()) if len(k) else np.nan,
                     "alpha_min": float(a.min()) if len(a) else np.nan,
                     "alpha_max": float(a.max()) if len(a) else np.nan})
    return pd.DataFrame(rows, columns=cols)


def per_class_by_task(per_class: pd.DataFrame) -> pd.DataFrame:
    """metrics_per_class rows averaged over seeds: per (task, model, condition, class)."""
    cols = ["task", "model", "condition", "kind", "teacher", "class", "support", "n_seeds",
            "precision", "recall", "f1", "precision_lo", "precision_hi", "recall_lo", "recall_hi",
            "f1_lo", "f1_hi"]
    if per_class.empty:
        return pd.DataFrame(columns=cols)
    g = per_class.groupby(["task", "model", "condition", "class"], sort=False, dropna=False)
    out = g[["kind", "teacher", "support"]].first()
    out["n_seeds"] = g.size()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for c in cols[8:]:
            out[c] = g[c].mean()
    return out.reset_index()[cols]


def class_gap_summary(gaps_pc: pd.DataFrame, n_resamples: int = 10000, confidence: float = 0.95,
                      seed: int = 20240625, types: dict[str, str] | None = None) -> pd.DataFrame:
    """Per-class gaps across tasks: per (task type, model, condition, comparison, class, metric)
    the median gap, its bootstrap CI over tasks and the Wilcoxon test, as `gap_summary`. Classes
    are matched by name, so this pools tasks that share a codebook's labels (e.g. several stance
    tasks); a class found in one task only has n_tasks = 1."""
    cols = ["task_type", "model", "condition", "kind", "teacher", "threshold", "comparison",
            "reference", "class", "metric", "n_tasks", "median_gap", "ci_lo", "ci_hi",
            "n_llm_better", "n_llm_worse", "wilcoxon_n", "wilcoxon_statistic", "wilcoxon_p",
            "wilcoxon_method"]
    if gaps_pc.empty:
        return pd.DataFrame(columns=cols)
    gaps_pc = gaps_pc.assign(task_type=gaps_pc["task"].map(types or {}).fillna("binary"))
    rows = []
    keys = ["task_type", "model", "condition", "comparison", "class", "metric"]
    for key, g in gaps_pc.groupby(keys, sort=True):
        v = pd.to_numeric(g["gap"], errors="coerce").dropna().to_numpy(dtype=float)
        lo, hi = median_ci(v, n_resamples, confidence, seed)
        w = wilcoxon(v)
        first = g.iloc[0]
        rows.append({**dict(zip(keys, key)), "kind": first["kind"], "teacher": first["teacher"],
                     "threshold": first["threshold"], "reference": first["reference"],
                     "n_tasks": len(v), "median_gap": float(np.median(v)) if len(v) else np.nan,
                     "ci_lo": lo, "ci_hi": hi, "n_llm_better": int((v > 0).sum()),
                     "n_llm_worse": int((v < 0).sum()), "wilcoxon_n": w["n_nonzero"],
                     "wilcoxon_statistic": w["statistic"], "wilcoxon_p": w["p"],
                     "wilcoxon_method": w["method"]})
    return pd.DataFrame(rows, columns=cols)


# --- teacher stage files ---------------------------------------------------------------------

def _flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[key] = v
    return out


def _teacher_file(path: str | Path) -> tuple[str, str]:
    p = Path(path)
    if p.parent.parent.name != "teacher":
        raise InputError("expected results/{task}/teacher/{teacher}/<file>.json", path=str(path))
    return p.parent.parent.parent.name, p.parent.name


def _load_json(path: str | Path) -> dict:
    from ..io import read_json_object

    return read_json_object(path)


GATE_FIELDS = ("headline_metric", "accuracy", "f1", "precision", "recall", "macro_f1", "kappa",
               "alpha", "n", "n_unparseable_items", "n_unparseable", "mean_consistency",
               "threshold", "passed")


def teacher_gate(paths: list[str]) -> pd.DataFrame:
    """One row per (task, teacher) from gate.json: validation metrics, threshold, passed."""
    rows = []
    for path in sorted(paths):
        task, teacher = _teacher_file(path)
        flat = _flatten(_load_json(path))
        row = {"task": task, "teacher": teacher}
        for f in GATE_FIELDS:
            # a field at top level wins; else the first nested one (e.g. metrics.f1)
            hits = [k for k in flat if k == f] or sorted(
                (k for k in flat if k.split(".")[-1] == f and "bins" not in k), key=len)
            row[f] = flat[hits[0]] if hits else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["task", "teacher", *GATE_FIELDS])


# additive fields of the teacher's cost_<split>.json (annodistill.teacher.run); a file with none
# of them contributes every numeric field instead
COST_FIELDS = ("n_items", "requests", "cache_hits", "requests_sent", "retries", "prompt_tokens",
               "completion_tokens", "usd", "usd_all_answers", "n_unparseable_answers",
               "n_unlabelled_items", "seconds")


def cost_table(paths: list[str]) -> pd.DataFrame:
    """One row per (task, teacher, split) from cost_<split>.json (requests, cache hits, tokens,
    USD, ...), plus a `total` row per (task, teacher) summing them."""
    rows = []
    for path in sorted(paths):
        task, teacher = _teacher_file(path)
        stem = Path(path).stem
        split = stem[len("cost_"):] if stem.startswith("cost_") else stem
        flat = _flatten(_load_json(path))
        num = {k: v for k, v in flat.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
        known = {k: v for k, v in num.items() if k in COST_FIELDS}
        rows.append({"task": task, "teacher": teacher, "split": split, **(known or num)})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["task", "teacher", "split"])
    num_cols = [c for c in COST_FIELDS if c in df.columns]
    num_cols += [c for c in df.columns if c not in ("task", "teacher", "split", *num_cols)]
    totals = df.groupby(["task", "teacher"], sort=True)[num_cols].sum(min_count=1).reset_index()
    totals["split"] = "total"
    df = pd.concat([df, totals], ignore_index=True)
    df["_o"] = (df["split"] == "total").astype(int)
    return (df.sort_values(["task", "teacher", "_o", "split"]).drop(columns="_o")
            .reset_index(drop=True)[["task", "teacher", "split", *num_cols]])


def consistency_summary(cons: pd.DataFrame) -> pd.DataFrame:
    """Teacher label accuracy by consistency bin, pooled over tasks (and the number of tasks)."""
    cols = ["teacher", "split", "bin", "bin_lo", "bin_hi", "n_tasks", "n", "n_correct", "accuracy",
            "share_of_items"]
    if cons.empty:
        return pd.DataFrame(columns=cols)
    g = cons.groupby(["teacher", "split", "bin"], sort=False, dropna=False)
    out = g.agg(bin_lo=("bin_lo", "first"), bin_hi=("bin_hi", "first"), n_tasks=("task", "nunique"),
                n=("n", "sum"), n_correct=("n_correct", "sum")).reset_index()
    out["accuracy"] = out["n_correct"] / out["n"]
    tot = out.groupby(["teacher", "split"])["n"].transform("sum")
    out["share_of_items"] = out["n"] / tot
    out = out.sort_values(["teacher", "split", "bin_lo"], na_position="first")
    return out[cols].reset_index(drop=True)


def sweep_summary(sweep: pd.DataFrame, avg: pd.DataFrame) -> pd.DataFrame:
    """Per (teacher, threshold): median share kept and label accuracy across tasks, and the
    median F1 of each student model trained with that threshold (`llm-<t>-cons<th>`; threshold
    0 is `llm-<t>`), where the study trained it."""
    rows = []
    models = sorted(avg.loc[avg["kind"].isin(["llm", "llm_consistency"]), "model"].unique()) \
        if not avg.empty else []
    if not sweep.empty:
        for (teacher, th), g in sweep.groupby(["teacher", "threshold"], sort=True):
            row = {"teacher": teacher, "threshold": int(th), "n_tasks": g["task"].nunique(),
                   "share_kept_median": float(g["share_kept"].median()),
                   "n_kept_median": float(g["n_kept"].median()),
                   "label_accuracy_median": float(g["label_accuracy"].median())}
            for m in models:
                cond = f"llm-{teacher}" if th == 0 else f"llm-{teacher}-cons{int(th)}"
                sel = avg[(avg["model"] == m) & (avg["condition"] == cond)]["f1"].dropna()
                row[f"f1_median_{m}"] = float(sel.median()) if len(sel) else np.nan
                row[f"f1_n_{m}"] = len(sel)
            rows.append(row)
    # thresholds trained by students but absent from the sweep grid still get a row
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["teacher", "threshold", "n_tasks", "share_kept_median",
                                     "n_kept_median", "label_accuracy_median"])
    return df


# --- the paper, side by side -----------------------------------------------------------------

def load_reference(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.exists():
        raise InputError("paper reference file not found", path=str(path))
    with open(path, encoding="utf-8") as fh:
        ref = yaml.safe_load(fh) or {}
    if "quantities" not in ref or "source" not in ref:
        raise InputError("expected keys `source` and `quantities`", path=str(path))
    return ref


GAP_STATISTICS = ("difference_of_medians", "median_of_differences")


def paper_comparison(ref: dict, head: pd.DataFrame, gsum: pd.DataFrame, model: str | None,
                     teacher: str | None, equal_size: int | None) -> pd.DataFrame:
    """The paper's reported numbers next to this study's, one row per quantity, like with like.

    `study` specs in the reference file: {table: headline, condition: fewshot|llm|human,
    metric} or {table: gaps, comparison: human|fewshot, metric, statistic}; the LLM-label student
    is `model` on `llm-<teacher>`, the human-label student `model` on `human-<equal_size>`.
    A gap is given two ways, each labelled: the difference of the two medians across tasks
    (what the paper reports) and the median of the per-task differences (the paired statistic of
    this study's gap tables); `study` holds the one named by the quantity's `statistic`
    (default: difference_of_medians), so `difference` compares like with like.
    """
    rows = []
    for q in ref["quantities"]:
        spec = q.get("study") or {}
        value, n, which = np.nan, 0, ""
        statistic = "median"
        dom = mod = np.nan
        if spec.get("table") == "headline" and not head.empty:
            cond = {"fewshot": (teacher, "fewshot"), "llm": (model, f"llm-{teacher}"),
                    "human": (model, f"human-{equal_size}")}.get(spec.get("condition"))
            if cond is not None:
                sel = head[(head["model"] == cond[0]) & (head["condition"] == cond[1])]
                which = f"{cond[0]} / {cond[1]}"
                if len(sel):
                    value = sel.iloc[0][f"{spec['metric']}_median"]
                    n = int(sel.iloc[0][f"{spec['metric']}_n"])
        elif spec.get("table") == "gaps":
            statistic = spec.get("statistic", "difference_of_medians")
            if statistic not in GAP_STATISTICS:
                raise InputError(f"statistic must be one of {GAP_STATISTICS}, got {statistic!r}",
                                 field=f"quantities.{q.get('key')}.study.statistic")
            ref_name = f"human-{equal_size}" if spec.get("comparison") == "human" else "fewshot"
            which = f"{model} / llm-{teacher} - {ref_name}"
            if not gsum.empty:
                sel = gsum[(gsum["model"] == model) & (gsum["condition"] == f"llm-{teacher}")
                           & (gsum["comparison"] == spec.get("comparison"))
                           & (gsum["metric"] == spec.get("metric"))]
                if len(sel):
                    r = sel.iloc[0]
                    dom = r["median_llm"] - r["median_reference"]
                    mod, n = r["median_gap"], int(r["n_tasks"])
                    value = dom if statistic == "difference_of_medians" else mod
        rows.append({"table": spec.get("table", ""), "metric": spec.get("metric", ""),
                     "statistic": statistic,
                     "quantity": q["description"], "paper": q["paper"],
                     "paper_approximate": bool(q.get("approximate", False)),
                     "study": value, "study_difference_of_medians": dom,
                     "study_median_of_differences": mod, "study_n_tasks": n,
                     "study_rows": which,
                     "difference": value - q["paper"] if pd.notna(value) else np.nan,
                     "key": q["key"]})
    return pd.DataFrame(rows, columns=["key", "table", "metric", "statistic", "quantity", "paper",
                                       "paper_approximate", "study", "study_difference_of_medians",
                                       "study_median_of_differences", "study_n_tasks",
                                       "study_rows", "difference"])
