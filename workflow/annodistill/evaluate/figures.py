"""The study's figures (matplotlib, PNG and PDF) from the summary tables in results/summary/.

Sized for a paper (7 in wide for two panels, 3.5 in for one), 8 pt text, the Okabe-Ito
colour-blind-safe palette, plus distinct markers so that no message depends on colour alone.
Each figure draws a visible "no data" note instead of failing when the study has no rows for it
(e.g. no consistency-threshold conditions), so the report is always complete.
"""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .. import io  # noqa: E402
from .aggregate import KIND_ORDER, describe  # noqa: E402

log = logging.getLogger(__name__)
for _name in ("fontTools", "matplotlib"):  # PDF font subsetting logs every glyph at INFO
    logging.getLogger(_name).setLevel(logging.WARNING)

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000"]
KIND_COLOUR = {"fewshot": "#D55E00", "llm": "#0072B2", "llm_consistency": "#56B4E9",
               "soft": "#CC79A7", "human": "#009E73"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
FIGURES = ("median_f1", "precision_recall", "f1_gap", "consistency_accuracy", "learning_curve",
           "consistency_sweep", "per_class_precision_recall")
FORMATS = ("png", "pdf")

RC = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7.5,
      "ytick.labelsize": 7.5, "legend.fontsize": 7, "axes.spines.top": False,
      "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
      "savefig.bbox": "tight", "savefig.pad_inches": 0.03, "pdf.fonttype": 42}


def _read(summary_dir: Path, stem: str) -> pd.DataFrame:
    p = summary_dir / f"{stem}.csv"
    if not p.exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(p, dtype={"teacher": object})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8,
            color="#555555", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in FORMATS:
        dest = out_dir / f"{stem}.{ext}"
        with io.atomic_path(dest) as tmp:
            fig.savefig(tmp, format=ext, dpi=200)
        paths.append(dest)
    plt.close(fig)
    return paths


def _kind_order(df: pd.DataFrame) -> pd.DataFrame:
    return (df.assign(_k=df["kind"].map(KIND_ORDER).fillna(9),
                      _s=pd.to_numeric(df.get("train_size"), errors="coerce").fillna(0),
                      _t=pd.to_numeric(df.get("threshold"), errors="coerce").fillna(-1))
            .sort_values(["_k", "model", "_t", "_s", "condition"])
            .drop(columns=["_k", "_s", "_t"]).reset_index(drop=True))


def median_f1(s: Path, meta: dict) -> plt.Figure:
    head = _read(s, "headline")
    comp = _read(s, "paper_comparison")
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 0.6 + 0.26 * max(len(head), 3)), sharey=True)
    if head.empty:
        for ax in axes:
            _no_data(ax, "no metrics")
        return fig
    head = _kind_order(head).iloc[::-1].reset_index(drop=True)
    y = np.arange(len(head))
    paper_pts = {}
    if not comp.empty and "table" in comp:
        for r in comp[comp["table"] == "headline"].itertuples():
            paper_pts.setdefault(r.metric, {})[str(r.study_rows)] = r.paper
    for ax, m, title in zip(axes, ("f1", "precision", "recall"), ("F1", "Precision", "Recall")):
        for i, r in head.iterrows():
            c = KIND_COLOUR.get(r["kind"], "#000000")
            if pd.notna(r[f"{m}_median"]):
                ax.errorbar(r[f"{m}_median"], i,
                            xerr=[[r[f"{m}_median"] - r[f"{m}_q25"]],
                                  [r[f"{m}_q75"] - r[f"{m}_median"]]],
                            fmt="o", color=c, ms=4, capsize=2, lw=1)
            p = (paper_pts.get(m, {}).get(f"{r['model']} / {r['condition']}")
                 if r.get("task_type", "binary") == "binary" else None)  # the paper: binary
            if p is not None:
                ax.plot(p, i, marker="D", mfc="none", mec="#000000", ms=5, ls="none",
                        label="paper (median)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(title)
    axes[0].set_yticks(y)
    labels = head["description"]
    if "task_type" in head.columns and head["task_type"].nunique() > 1:
        labels = [f"{d} ({'binary' if t == 'binary' else 'multi-class, macro'})"
                  for d, t in zip(head["description"], head["task_type"])]
    axes[0].set_yticklabels(labels)
    from matplotlib.lines import Line2D

    names = {"fewshot": "LLM few-shot", "llm": "LLM labels", "llm_consistency":
             "LLM labels, consistency-filtered", "soft": "LLM soft labels", "human": "human labels"}
    handles = [Line2D([], [], marker="o", ls="none", color=KIND_COLOUR[k], label=names[k])
               for k in names if k in set(head["kind"])]
    if paper_pts:
        handles.append(Line2D([], [], marker="D", ls="none", mfc="none", mec="#000000",
                              label="paper (Pangakis & Wolken 2024)"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 3), frameon=False)
    fig.suptitle(f"Median and interquartile range across {meta.get('n_tasks', '?')} task(s), "
                 f"human test set", fontsize=8)
    fig.tight_layout()
    return fig


def precision_recall(s: Path, meta: dict) -> plt.Figure:
    per = _read(s, "metrics_by_task")
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    if per.empty:
        _no_data(ax, "no metrics")
        return fig
    equal = meta.get("equal_size")
    keep = (per["kind"] != "human") | (per["train_size"] == equal) if equal else per["kind"] != ""
    if not keep.any():
        keep = per["kind"] != ""
    per = _kind_order(per[keep])
    models = list(dict.fromkeys(per.loc[per["kind"] != "fewshot", "model"]))
    # consistency thresholds share a colour: every second one (in threshold order) is hollow
    thresholds = sorted(per.loc[per["kind"] == "llm_consistency", "threshold"].dropna().unique())
    for (model, cond), g in per.groupby(["model", "condition"], sort=False):
        r = g.iloc[0]
        mk = "*" if r["kind"] == "fewshot" else MARKERS[models.index(model) % len(MARKERS)]
        colour = KIND_COLOUR.get(r["kind"], "#000000")
        hollow = r["kind"] == "llm_consistency" and thresholds.index(r["threshold"]) % 2 == 1
        ax.scatter(g["recall"], g["precision"], s=40 if mk == "*" else 22, marker=mk,
                   color="none" if hollow else colour, edgecolor=colour if hollow else "white",
                   linewidth=1.1 if hollow else 0.4, zorder=3,
                   label=describe(model, cond, r["kind"], r["teacher"], r["threshold"],
                                  r["train_size"]))
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Recall (human test set)")
    ax.set_ylabel("Precision (human test set)")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              title="colour: label source; marker: model")
    ax.set_title("One point per task and condition (seeds averaged)"
                 + (f"; human labels: n = {equal}" if equal else ""))
    return fig


def f1_gap(s: Path, meta: dict) -> plt.Figure:
    gaps = _read(s, "gaps_by_task")
    model, teacher = meta.get("model"), meta.get("teacher")
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 0.9 + 0.3 * max(len(meta.get("tasks", [])), 3)),
                             sharey=True)
    if gaps.empty:
        for ax in axes:
            _no_data(ax, "no LLM-label student with a reference to compare to")
        return fig
    sel = gaps[gaps["model"] == model] if model in set(gaps["model"]) else gaps
    tasks = sorted(sel["task"].unique())
    conds = list(dict.fromkeys(sel.sort_values("condition")["condition"]))
    if f"llm-{teacher}" in conds:
        conds.remove(f"llm-{teacher}")
        conds.insert(0, f"llm-{teacher}")
    for ax, comp in zip(axes, ("human", "fewshot")):
        g = sel[sel["comparison"] == comp]
        if g.empty:
            _no_data(ax, f"no {'human-label student of equal size' if comp == 'human' else 'few-shot labels'}")
            continue
        off = np.linspace(-0.25, 0.25, len(conds)) if len(conds) > 1 else [0.0]
        for j, cond in enumerate(conds):
            gc = g[g["condition"] == cond].set_index("task")
            yy = [tasks.index(t) + off[j] for t in gc.index]
            lo = (gc["f1_gap"] - gc["f1_gap_lo"]).clip(lower=0).fillna(0)
            hi = (gc["f1_gap_hi"] - gc["f1_gap"]).clip(lower=0).fillna(0)
            ax.errorbar(gc["f1_gap"], yy, xerr=[lo, hi], fmt=MARKERS[j % len(MARKERS)],
                        color=OKABE_ITO[j % len(OKABE_ITO)], ms=4, capsize=2, lw=0.9, label=cond)
            if j == 0 and gc["f1_gap"].notna().any():
                med = float(np.nanmedian(gc["f1_gap"]))
                ax.axvline(med, color=OKABE_ITO[0], ls="--", lw=0.9)
                ax.text(med, 1.0, f" median {med:+.3f}", transform=ax.get_xaxis_transform(),
                        fontsize=7, va="bottom", color=OKABE_ITO[0])
        ax.axvline(0, color="#000000", lw=0.7)
        ref = g["reference"].iloc[0]
        ref = "teacher few-shot" if ref == "fewshot" else f"student on {ref}"
        ax.set_xlabel(f"F1 gap: LLM-label student − {ref}\n(paired bootstrap 95% CI)")
    axes[0].set_yticks(range(len(tasks)))
    axes[0].set_yticklabels(tasks)
    axes[0].set_ylim(-0.6, len(tasks) - 0.4)
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=min(4, len(conds)),
                   frameon=False, title=f"student: {model}")
    return fig


def consistency_accuracy(s: Path, meta: dict) -> plt.Figure:
    per = _read(s, "consistency_by_task")
    pooled = _read(s, "consistency")
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    if pooled.empty:
        _no_data(ax, "no teacher labels")
        return fig
    pooled = pooled[pooled["bin_lo"].notna()]
    bins = list(dict.fromkeys(pooled.sort_values("bin_lo")["bin"]))
    x = {b: i for i, b in enumerate(bins)}
    j = 0
    counts: dict[str, list[str]] = {b: [] for b in bins}
    series = []
    for (teacher, split), g in pooled.groupby(["teacher", "split"], sort=True):
        c, mk = OKABE_ITO[j % len(OKABE_ITO)], MARKERS[j % len(MARKERS)]
        pt = per[(per["teacher"] == teacher) & (per["split"] == split) & per["bin_lo"].notna()]
        for _, gt in pt.groupby("task"):
            ax.plot([x[b] for b in gt["bin"]], gt["accuracy"], color=c, alpha=0.25, lw=0.7)
        ax.plot([x[b] for b in g["bin"]], g["accuracy"], color=c, marker=mk, lw=1.6, ms=5,
                label=f"{teacher}, {split} items (pooled)")
        n_by_bin = dict(zip(g["bin"], g["n"]))
        for b in bins:
            counts[b].append(str(int(n_by_bin.get(b, 0))))
        series.append(f"{teacher} {split}")
        j += 1
    ax.set_xticks(range(len(bins)))
    ax.set_xticklabels([f"{b}\nn={'/'.join(counts[b])}" for b in bins])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Teacher answer consistency (share of answers equal to the mode)\n"
                  f"n = items per bin ({' / '.join(series)})")
    ax.set_ylabel("Teacher label accuracy vs human label")
    ax.legend(loc="lower right", frameon=False)
    ax.set_title("Thin lines: individual tasks")
    return fig


def learning_curve(s: Path, meta: dict) -> plt.Figure:
    per = _read(s, "metrics_by_task")
    students = per[per["kind"] != "fewshot"] if not per.empty else per
    models = sorted(students["model"].unique()) if not students.empty else []
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(3.5 * max(len(models), 1), 3.0),
                             sharey=True, squeeze=False)
    axes = axes[0]
    if not models:
        _no_data(axes[0], "no student runs")
        return fig
    teacher = meta.get("teacher")
    for ax, model in zip(axes, models):
        h = students[(students["model"] == model) & (students["kind"] == "human")]
        for _, gt in h.groupby("task"):
            gt = gt.sort_values("train_size")
            ax.plot(gt["train_size"], gt["f1"], color=KIND_COLOUR["human"], alpha=0.25, lw=0.7)
        if not h.empty:
            q = h.groupby("train_size")["f1"].quantile([0.25, 0.5, 0.75]).unstack()
            ax.fill_between(q.index, q[0.25], q[0.75], color=KIND_COLOUR["human"], alpha=0.15,
                            lw=0)
            ax.plot(q.index, q[0.5], color=KIND_COLOUR["human"], marker="o", ms=4,
                    label="human labels (median, IQR)")
        llm = students[(students["model"] == model) & students["kind"].isin(["llm", "soft"])]
        for j, (cond, g) in enumerate(llm.groupby("condition", sort=True)):
            xs = g["n_train"].where(g["n_train"].notna(), g["train_size"]).astype(float)
            med = float(np.nanmedian(g["f1"])) if g["f1"].notna().any() else np.nan
            q25, q75 = (np.nanpercentile(g["f1"], [25, 75]) if g["f1"].notna().any()
                        else (np.nan, np.nan))
            kind = g["kind"].iloc[0]
            ax.errorbar(float(np.nanmedian(xs)), med, yerr=[[med - q25], [q75 - med]],
                        fmt="s" if kind == "llm" else "^", color=KIND_COLOUR[kind], ms=5,
                        capsize=2, label=f"{cond} (median, IQR)")
        few = per[(per["kind"] == "fewshot") & (per["model"] == teacher)] if teacher else per[:0]
        if not few.empty and few["f1"].notna().any():
            ax.axhline(float(np.nanmedian(few["f1"])), color=KIND_COLOUR["fewshot"], ls="--",
                       lw=1, label=f"{teacher} few-shot (median)")
        ax.set_xscale("log", base=2)
        sizes = sorted(set(h["train_size"].dropna().astype(int)) |
                       set(llm["train_size"].dropna().astype(int)))
        if sizes:
            ax.set_xticks(sizes)
            ax.set_xticklabels([str(v) for v in sizes])
            ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Training labels (items, log scale)")
        ax.set_title(f"student: {model}")
        ax.legend(loc="lower right", frameon=False)
    mixed = "task_type" in per.columns and per["task_type"].nunique() > 1
    axes[0].set_ylabel("F1 on the human test set" + ("\n(binary: positive class; multi-class: "
                                                       "macro)" if mixed else ""))
    return fig


def consistency_sweep(s: Path, meta: dict) -> plt.Figure:
    sweep = _read(s, "consistency_sweep")
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    if sweep.empty:
        _no_data(ax, "no teacher training labels")
        return fig
    j = 0
    for teacher, g in sweep.groupby("teacher", sort=True):
        g = g.sort_values("threshold")
        ax.plot(g["threshold"], g["share_kept_median"], color=OKABE_ITO[1], marker="v", ms=4,
                label=f"{teacher}: share of labels kept")
        ax.plot(g["threshold"], g["label_accuracy_median"], color=OKABE_ITO[2], marker="o", ms=4,
                label=f"{teacher}: accuracy of kept labels")
        for k, col in enumerate(c for c in g.columns if c.startswith("f1_median_")):
            gg = g[g[col].notna()]
            if not gg.empty:
                ax.plot(gg["threshold"], gg[col], color=OKABE_ITO[(4 + k) % 8],
                        marker=MARKERS[(3 + k) % 8], ms=5, ls=":",
                        label=f"{teacher}: F1 of {col[len('f1_median_'):]} trained on them")
        j += 1
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Consistency threshold (%)")
    ax.set_ylabel("Median across tasks")
    ax.legend(loc="lower left", frameon=False)
    return fig


def per_class_precision_recall(s: Path, meta: dict) -> plt.Figure:
    """Per class: precision vs recall of the headline model's LLM-label, soft and human-label
    students (equal size) and the teacher's few-shot labels; one panel per label source."""
    per = _read(s, "per_class")
    kinds = [("fewshot", "LLM few-shot"), ("llm", "LLM labels"), ("soft", "LLM soft labels"),
             ("human", "human labels")]
    fig, axes = plt.subplots(1, len(kinds), figsize=(7.0, 2.3), sharex=True, sharey=True)
    if per.empty:
        for ax in axes:
            _no_data(ax, "no per-class metrics")
        return fig
    model, equal = meta.get("model"), meta.get("equal_size")
    sel = per[(per["kind"] == "fewshot") | (per["model"] == model)]
    if equal:
        human_ok = sel["condition"] == f"human-{equal}"
        sel = sel[(sel["kind"] != "human") | human_ok]
    classes = list(dict.fromkeys(sel["class"]))
    for ax, (kind, title) in zip(axes, kinds):
        g = sel[sel["kind"] == kind]
        if g.empty:
            _no_data(ax, f"no {title}")
            ax.set_title(title)
            continue
        for j, cls in enumerate(classes):
            gg = g[g["class"] == cls]
            if gg.empty:
                continue
            ax.scatter(gg["recall"], gg["precision"], s=40 if kind == "fewshot" else 18,
                       marker="*" if kind == "fewshot" else MARKERS[j % len(MARKERS)],
                       color=OKABE_ITO[j % len(OKABE_ITO)], edgecolor="white", linewidth=0.3,
                       label=cls, zorder=3)
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.5, ls=":")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.set_xlabel("Recall")
    axes[0].set_ylabel("Precision")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=MARKERS[j % len(MARKERS)], ls="none",
                      color=OKABE_ITO[j % len(OKABE_ITO)], label=c) for j, c in
               enumerate(classes[:12])]
    if handles:  # no class plotted (e.g. no human-label run of the headline size): no legend
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(handles), 6), frameon=False, title="class (one point per task)")
    fig.suptitle(f"Per-class precision and recall on the human test set ({model or 'students'}; "
                 f"seeds averaged)", fontsize=8)
    fig.tight_layout()
    return fig


BUILDERS = {"per_class_precision_recall": per_class_precision_recall, "median_f1": median_f1, "precision_recall": precision_recall, "f1_gap": f1_gap,
            "consistency_accuracy": consistency_accuracy, "learning_curve": learning_curve,
            "consistency_sweep": consistency_sweep}


def build_figures(summary_dir: str | Path, out_dir: str | Path) -> list[Path]:
    summary_dir, out_dir = Path(summary_dir), Path(out_dir)
    meta_path = summary_dir / "meta.json"
    meta = io.read_json(meta_path) if meta_path.exists() else {}
    written = []
    with plt.rc_context(RC):
        for name in FIGURES:
            fig = BUILDERS[name](summary_dir, meta)
            written += _save(fig, out_dir, name)
    log.info("wrote %d figure files to %s", len(written), out_dir)
    return written
