"""The human-label budget: how wide is the prevalence interval for n human labels, with and
without the LLM's labels?

In the resampling world of `prevalence` (every item that carries both a human and a teacher
label; its human prevalence is the truth) and for each n in `sizes`: `n_resamples` seeded draws
of a human sample of n items and an LLM-labelled set of the pool's size; the mean width and the
coverage of the classical interval from the human labels alone (`human`) and of the PPI++
interval that adds the LLM labels (`ppi`). `n_equivalent` = n x (width_human / width_ppi)^2 is
the number of human labels that alone would give the PPI width (CLT widths shrink as 1/sqrt(n)):
what the LLM labels are worth in human labels. Sizes above the population size are skipped (the
world has no more distinct items than that).

The figure adds, where the study trained students on several human-label sizes, the student's
F1 against the number of human labels (the headline model, median over tasks) with the
LLM-label student's F1 as a reference line.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .paired import PairedLabels
from .prevalence import arrays, population, resample_estimates, rng_for

COLUMNS = ["task", "teacher", "class", "positive_class", "n_human", "n_llm", "n_population",
           "truth", "n_resamples", "width_human", "width_ppi", "width_ratio", "coverage_human",
           "coverage_ppi", "n_equivalent"]


def budget_table(paired: list[PairedLabels], confidence: float, sizes: list[int],
                 n_resamples: int, seed: int) -> pd.DataFrame:
    alpha = 1 - confidence
    rows = []
    for pl in paired:
        for cls in pl.classes:
            a = arrays(pl, cls)
            pop = population(a)
            n_u = len(a.y["train"])
            if not n_u or not len(pop["y"]):
                continue
            truth = float(pop["y"].mean())
            for n in sorted(set(int(s) for s in sizes)):
                if n < 2 or n > len(pop["y"]):
                    continue
                res = resample_estimates(pop, n, n_u, n_resamples, alpha,
                                         rng_for(seed, "budget", pl.task, pl.teacher, cls, str(n)),
                                         estimators=("human", "ppi"))
                row = {"task": pl.task, "teacher": pl.teacher, "class": cls,
                       "positive_class": cls == pl.positive, "n_human": n, "n_llm": n_u,
                       "n_population": len(pop["y"]), "truth": truth,
                       "n_resamples": n_resamples}
                for e in ("human", "ppi"):
                    _, lo, hi = res[e]
                    row[f"width_{e}"] = float(np.mean(hi - lo))
                    row[f"coverage_{e}"] = float(np.mean((lo <= truth) & (truth <= hi)))
                wh, wp = row["width_human"], row["width_ppi"]
                row["width_ratio"] = wp / wh if wh > 0 else np.nan
                row["n_equivalent"] = n * (wh / wp) ** 2 if wp > 0 else np.nan
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def budget_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (teacher, n): medians across the rows of every task (a binary task has one row per
    n, its positive class; a multi-class task one per label)."""
    cols = ["teacher", "n_human", "n_rows", "width_human_median", "width_ppi_median",
            "width_ratio_median", "n_equivalent_median", "coverage_human_mean",
            "coverage_ppi_mean"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    g = df.groupby(["teacher", "n_human"], sort=True)
    out = g.agg(n_rows=("task", "size"), width_human_median=("width_human", "median"),
                width_ppi_median=("width_ppi", "median"),
                width_ratio_median=("width_ratio", "median"),
                n_equivalent_median=("n_equivalent", "median"),
                coverage_human_mean=("coverage_human", "mean"),
                coverage_ppi_mean=("coverage_ppi", "mean")).reset_index()
    return out[cols]


def student_f1_by_human_n(metrics_all: pd.DataFrame, model: str | None, teacher: str | None
                          ) -> tuple[pd.DataFrame, float]:
    """Median over tasks (seeds averaged within a task) of the headline student's F1 per
    human-label size, and the same student's median F1 on the teacher's labels (NaN if none)."""
    if metrics_all.empty or "kind" not in metrics_all.columns:
        return pd.DataFrame(columns=["human_n", "f1_median", "n_tasks"]), np.nan
    m = metrics_all
    if model is not None:
        m = m[m["model"] == model]
    per_task = (m.groupby(["task", "condition", "kind"], dropna=False)
                .agg(f1=("f1", "mean"), human_n=("human_n", "first")).reset_index())
    hum = per_task[per_task["kind"] == "human"].dropna(subset=["human_n"])
    curve = (hum.groupby("human_n").agg(f1_median=("f1", "median"), n_tasks=("task", "nunique"))
             .reset_index().sort_values("human_n"))
    llm = per_task[per_task["condition"] == f"llm-{teacher}"] if teacher else \
        per_task[per_task["kind"] == "llm"]
    return curve, float(llm["f1"].median()) if len(llm) else np.nan


def _log_ticks(ax, values) -> None:
    """Log x axis with a plain tick at each value drawn (no 3x10^1 labels)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(float(v) for v in values))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())


def budget_figure(df: pd.DataFrame, metrics_all: pd.DataFrame, meta: dict):
    import matplotlib.pyplot as plt

    from .figures import OKABE_ITO, RC, _no_data

    with plt.rc_context(RC):
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(7, 2.9))
        summ = budget_summary(df)
        if summ.empty:
            _no_data(ax, "no items with both a human and a teacher label")
        else:
            for i, (teacher, g) in enumerate(summ.groupby("teacher", sort=True)):
                for (task, cls), t in df[df["teacher"] == teacher].groupby(["task", "class"]):
                    ax.plot(t["n_human"], t["width_human"], color=OKABE_ITO[2], lw=0.5,
                            alpha=0.35)
                    ax.plot(t["n_human"], t["width_ppi"], color=OKABE_ITO[0], lw=0.5,
                            alpha=0.35)
                ls = ["-", "--", ":"][i % 3]
                ax.plot(g["n_human"], g["width_human_median"], color=OKABE_ITO[2], ls=ls,
                        marker="o", ms=3.5, label=f"human labels only ({teacher} run)"
                        if i else "human labels only")
                ax.plot(g["n_human"], g["width_ppi_median"], color=OKABE_ITO[0], ls=ls,
                        marker="s", ms=3.5, label=f"human + {teacher} labels (PPI++)")
            _log_ticks(ax, summ["n_human"])
            ax.set_xlabel("human-coded items (n)")
            ax.set_ylabel("95 % CI width of the prevalence")
            ax.set_title("Prevalence: CI width by human budget")
            ax.legend(frameon=False, loc="upper right")
        curve, llm_f1 = student_f1_by_human_n(metrics_all, meta.get("model"), meta.get("teacher"))
        if len(curve) >= 1:
            bx.plot(curve["human_n"], curve["f1_median"], color=OKABE_ITO[2], marker="o", ms=3.5,
                    label=f"{meta.get('model') or 'student'} on n human labels")
            if np.isfinite(llm_f1):
                bx.axhline(llm_f1, color=OKABE_ITO[0], ls="--", lw=1,
                           label=f"same student on {meta.get('teacher') or 'LLM'} labels")
            bx.set_xlabel("human-coded training items (n)")
            bx.set_ylabel("F1 on the human test set (median over tasks)")
            bx.set_title("Student F1 by human budget")
            bx.legend(frameon=False, loc="lower right")
            if len(curve) > 1:
                _log_ticks(bx, curve["human_n"])
        else:
            _no_data(bx, "no human-label students in this study")
        fig.tight_layout()
    return fig
