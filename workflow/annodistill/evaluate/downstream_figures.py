"""Figures of the steps beyond the paper (PNG for the report, PDF), in the style of
`annodistill.evaluate.figures` (Okabe-Ito palette, markers as a second channel, 8 pt text).
The budget and cost figures are drawn by `budget.budget_figure` and `cost.cost_figure`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .figures import OKABE_ITO, RC, _no_data, _save

ESTIMATOR_STYLE = {  # colour, marker, label
    "human": (OKABE_ITO[2], "o", "human labels alone"),
    "naive": (OKABE_ITO[3], "x", "LLM labels at face value"),
    "ppi": (OKABE_ITO[0], "s", "PPI++ (human + LLM labels)"),
    "ppi_soft": (OKABE_ITO[4], "D", "PPI++ (human + LLM p_positive)"),
}


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir, stem)


def prevalence_figure(prev: pd.DataFrame, confidence: float):
    """One row per (task, teacher, class): each estimate with its CI, the test set's human
    prevalence as a black bar."""
    import matplotlib.pyplot as plt

    keys = (prev[["task", "teacher", "class"]].drop_duplicates().to_records(index=False).tolist()
            if len(prev) else [])
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(5, max(2.2, 0.55 * len(keys) + 1.0)))
        if not keys:
            _no_data(ax, "no task with human and teacher labels")
            return fig
        offsets = np.linspace(-0.27, 0.27, len(ESTIMATOR_STYLE))
        seen = set()
        for i, (task, teacher, cls) in enumerate(keys):
            y0 = len(keys) - 1 - i
            sel = prev[(prev["task"] == task) & (prev["teacher"] == teacher)
                       & (prev["class"] == cls)]
            for off, (est, (colour, marker, label)) in zip(offsets, ESTIMATOR_STYLE.items()):
                r = sel[sel["estimator"] == est]
                if r.empty:
                    continue
                r = r.iloc[0]
                ax.errorbar(r["estimate"], y0 + off, xerr=[[r["estimate"] - r["ci_lo"]],
                                                           [r["ci_hi"] - r["estimate"]]],
                            color=colour, marker=marker, ms=3.5, lw=1, capsize=1.5,
                            label=None if est in seen else label)
                seen.add(est)
            truth = sel["truth_test"].iloc[0]
            if np.isfinite(truth):
                ax.plot([truth, truth], [y0 - 0.4, y0 + 0.4], color="black", lw=1.4,
                        label=None if "truth" in seen else "test-set human prevalence")
                seen.add("truth")
        multi = prev.groupby("task")["class"].nunique().max() > 1 or prev["teacher"].nunique() > 1
        ax.set_yticks(range(len(keys)))
        ax.set_yticklabels([f"{t} / {c}" + (f" ({te})" if multi else "")
                            for t, te, c in reversed(keys)])
        ax.set_xlabel(f"prevalence ({confidence:.0%} CI)")
        ax.set_title("How common is each class? Estimates and intervals")
        ax.grid(axis="y", visible=False)
        ax.legend(frameon=False, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
    return fig
