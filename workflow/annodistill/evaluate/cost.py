"""Cost per F1 point: what each route to labelled data costs, next to the F1 it buys.

Rates come from the config (`evaluation.costs`, docs/evaluation.md); what was actually spent
comes from the stages' own records: the teacher's `cost_<split>.json` (`usd_all_answers`: every
answer of the split, cached ones included; for a local teacher, its compute time at the compute
rate) and the students' `run.json` (`seeds[].train_seconds`, the whole grid search, at the
compute rate; averaged over seeds: a researcher trains once).

Per (task, model, condition):

- `human-<n>` student: n items x coders per item x the human rate, plus training;
- LLM-label students (`llm-<t>`, `llm-<t>-cons<k>`, `soft-<t>`): the human validation sample
  (needed to check the teacher before trusting it: `split.validation_size` items coded by
  humans), the teacher on the validation sample and on the training set, plus training;
- teacher few-shot on the whole corpus (`fewshot`): the human validation sample, the teacher on
  it, and the teacher's cost per item (from its test-set run) x `corpus_items`.

The human test set is the same for every route (it only measures F1) and is not counted;
student inference on the corpus is not recorded by the student stage and is not counted.
`usd_per_f1_point` = total / (100 x F1).

The payoff table asks, per LLM-label student: how many human labels does the same model need for
the same F1 (linear interpolation along its human-label sizes), what would they cost, and at what
price per human coding (per coder and item) the two routes cost the same (`break_even`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..errors import InputError

LOCAL_PROVIDERS = ("llama_cpp_local",)
LLM_KINDS = ("llm", "llm_consistency", "soft")


@dataclass(frozen=True)
class Rates:
    human_usd_per_item: float    # one coder coding one item
    coders_per_item: int
    compute_usd_per_hour: float  # the machine that trains students and runs a local teacher
    corpus_items: int            # items the researcher finally wants labelled
    validation_items: int        # the human validation sample every LLM route needs

    def human(self, n_items) -> float:
        return float(n_items) * self.coders_per_item * self.human_usd_per_item

    def compute(self, seconds) -> float:
        return float(seconds) / 3600.0 * self.compute_usd_per_hour


def _field(data: dict, key: str, path, kinds=(int, float)):
    if key not in data or data[key] is None or isinstance(data[key], bool) \
            or not isinstance(data[key], kinds):
        raise InputError("missing or non-numeric field (docs/teacher.md)", path=str(path),
                         field=key)
    return data[key]


_json = io.read_json_object


def teacher_costs(paths: list[str], rates: Rates) -> pd.DataFrame:
    """One row per (task, teacher, split) from cost_<split>.json: items, API dollars for all the
    split's answers, and for a local teacher the compute time of all its answers (this run's
    seconds scaled from the answers bought to all answers; NaN when every answer came from the
    cache) at the compute rate."""
    rows = []
    for path in sorted(paths):
        p = Path(path)
        if p.parent.parent.name != "teacher" or not p.stem.startswith("cost_"):
            raise InputError("expected results/{task}/teacher/{teacher}/cost_<split>.json",
                             path=str(path))
        data = _json(path)
        task, teacher, split = p.parent.parent.parent.name, p.parent.name, p.stem[5:]
        provider = data.get("provider")
        n_items = int(_field(data, "n_items", path))
        usd = float(_field(data, "usd_all_answers", path))
        seconds, compute = 0.0, 0.0
        if provider in LOCAL_PROVIDERS:
            sent = _field(data, "requests_sent", path)
            total = _field(data, "requests", path)
            secs = float(_field(data, "seconds", path))
            seconds = secs * total / sent if sent else np.nan
            compute = rates.compute(seconds) if np.isfinite(seconds) else np.nan
        rows.append({"task": task, "teacher": teacher, "split": split, "provider": provider,
                     "n_items": n_items, "api_usd": usd, "compute_seconds": seconds,
                     "compute_usd": compute, "usd": usd + compute,
                     "usd_per_item": (usd + compute) / n_items if n_items else np.nan})
    cols = ["task", "teacher", "split", "provider", "n_items", "api_usd", "compute_seconds",
            "compute_usd", "usd", "usd_per_item"]
    return pd.DataFrame(rows, columns=cols)


def train_seconds(run_json: str | Path) -> float:
    """Mean over seeds of `seeds[].train_seconds` in a student's run.json (docs/students.md)."""
    data = _json(run_json)
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise InputError("expected a non-empty list `seeds` (docs/students.md)",
                         path=str(run_json), field="seeds")
    vals = []
    for i, s in enumerate(seeds):
        v = s.get("train_seconds") if isinstance(s, dict) else None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise InputError(f"seeds[{i}] lacks a numeric train_seconds", path=str(run_json),
                             field="train_seconds")
        vals.append(float(v))
    return float(np.mean(vals))


def run_key(path: str | Path) -> tuple[str, str, str]:
    p = Path(path)
    if p.name != "run.json" or p.parent.parent.parent.name != "students":
        raise InputError("expected results/{task}/students/{model}/{condition}/run.json",
                         path=str(path))
    return p.parent.parent.parent.parent.name, p.parent.parent.name, p.parent.name


def read_metrics(paths: list[str]) -> pd.DataFrame:
    """Concatenate per-task metrics.csv files (docs/evaluation.md)."""
    frames = []
    for p in paths:
        if not Path(p).exists():
            raise InputError("metrics file not found", path=str(p))
        try:
            frames.append(pd.read_csv(p, dtype={"teacher": object}))
        except pd.errors.EmptyDataError as exc:
            raise InputError("metrics file is empty", path=str(p)) from exc
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _seed_mean(metrics: pd.DataFrame) -> pd.DataFrame:
    need = {"task", "model", "condition", "kind", "f1"}
    if not need <= set(metrics.columns):
        raise InputError(f"metrics lack column(s) {sorted(need - set(metrics.columns))}",
                         field="metrics")
    keys = ["task", "model", "condition", "kind"]
    agg = {"f1": ("f1", "mean"), "n_seeds": ("f1", "size"),
           "teacher": ("teacher", "first"), "human_n": ("human_n", "first")}
    return metrics.groupby(keys, sort=True, dropna=False).agg(**agg).reset_index()


def cost_table(metrics: pd.DataFrame, teacher: pd.DataFrame, runs: dict, rates: Rates
               ) -> pd.DataFrame:
    """One row per (task, model, condition) with a cost: the components, the total and the
    dollars per F1 point. `runs`: (task, model, condition) -> mean training seconds."""
    tc = {(r.task, r.teacher, r.split): r for r in teacher.itertuples()}
    rows = []
    for r in _seed_mean(metrics).itertuples():
        human_items, teacher_usd, train_s, note = 0.0, 0.0, 0.0, ""
        t = r.teacher if isinstance(r.teacher, str) else None
        if r.kind == "human":
            human_items = float(r.human_n)
        elif r.kind in LLM_KINDS or r.kind == "fewshot":
            t = t or (r.model if r.kind == "fewshot" else None)
            human_items = float(rates.validation_items)
            val, trn, tst = (tc.get((r.task, t, s)) for s in ("validation", "train", "test"))
            if val is None:
                note = "no teacher cost file for the validation sample; "
            teacher_usd += val.usd if val is not None else 0.0
            if r.kind == "fewshot":
                if tst is None:
                    continue
                teacher_usd += tst.usd_per_item * rates.corpus_items
            else:
                if trn is None:
                    continue
                teacher_usd += trn.usd
        else:
            continue
        if r.kind != "fewshot":
            key = (r.task, r.model, r.condition)
            if key not in runs:
                continue
            train_s = runs[key]
        if not np.isfinite(teacher_usd):
            note += ("a local teacher's compute time is unknown: every answer came from the "
                     "cache in its recorded run; ")
        human_usd = rates.human(human_items)
        student_usd = rates.compute(train_s)
        total = human_usd + teacher_usd + student_usd
        rows.append({"task": r.task, "model": r.model, "condition": r.condition, "kind": r.kind,
                     "teacher": t, "human_n": r.human_n, "f1": r.f1, "n_seeds": r.n_seeds,
                     "human_items": human_items, "human_usd": human_usd,
                     "teacher_usd": teacher_usd, "student_train_seconds": train_s,
                     "student_usd": student_usd, "total_usd": total,
                     "usd_per_f1_point": total / (100 * r.f1) if r.f1 and r.f1 > 0 else np.nan,
                     "note": note.rstrip("; ")})
    cols = ["task", "model", "condition", "kind", "teacher", "human_n", "f1", "n_seeds",
            "human_items", "human_usd", "teacher_usd", "student_train_seconds", "student_usd",
            "total_usd", "usd_per_f1_point", "note"]
    df = pd.DataFrame(rows, columns=cols)
    df["human_n"] = pd.to_numeric(df["human_n"], errors="coerce").astype("Int64")
    return df


def cost_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Medians across tasks per (model, condition)."""
    cols = ["model", "condition", "kind", "teacher", "human_n", "n_tasks", "f1_median",
            "total_usd_median", "usd_per_f1_point_median"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    g = df.groupby(["model", "condition", "kind"], sort=False, dropna=False)
    out = g.agg(teacher=("teacher", "first"), human_n=("human_n", "first"),
                n_tasks=("task", "nunique"), f1_median=("f1", "median"),
                total_usd_median=("total_usd", "median"),
                usd_per_f1_point_median=("usd_per_f1_point", "median")).reset_index()
    from .aggregate import KIND_ORDER

    out = out.assign(_k=out["kind"].map(KIND_ORDER).fillna(9),
                     _n=pd.to_numeric(out["human_n"], errors="coerce").fillna(0))
    return out.sort_values(["model", "_k", "_n", "condition"]).drop(columns=["_k", "_n"])[cols] \
        .reset_index(drop=True)


def human_route(human: pd.DataFrame, target_f1: float) -> dict:
    """Along one model's human-label sizes (rows with human_n, f1, total_usd, student_usd),
    the first size that reaches `target_f1`, linearly interpolated between the bracketing sizes.
    bound: `interpolated`; `at most` (the smallest size already reaches it); `at least` (no size
    reaches it: the largest is a lower bound)."""
    h = human.dropna(subset=["f1"]).sort_values("human_n")
    if h.empty or not np.isfinite(target_f1):
        return {"n": np.nan, "usd": np.nan, "student_usd": np.nan, "bound": "no human-label runs"}
    n = h["human_n"].to_numpy(dtype=float)
    f1 = h["f1"].to_numpy(dtype=float)
    usd = h["total_usd"].to_numpy(dtype=float)
    stu = h["student_usd"].to_numpy(dtype=float)
    if target_f1 <= f1[0]:
        return {"n": n[0], "usd": usd[0], "student_usd": stu[0], "bound": "at most"}
    for i in range(1, len(n)):
        if f1[i - 1] < target_f1 <= f1[i]:
            t = (target_f1 - f1[i - 1]) / (f1[i] - f1[i - 1])
            return {"n": n[i - 1] + t * (n[i] - n[i - 1]),
                    "usd": usd[i - 1] + t * (usd[i] - usd[i - 1]),
                    "student_usd": stu[i - 1] + t * (stu[i] - stu[i - 1]),
                    "bound": "interpolated"}
    return {"n": n[-1], "usd": usd[-1], "student_usd": stu[-1], "bound": "at least"}


def payoff_table(costs: pd.DataFrame, rates: Rates) -> pd.DataFrame:
    """Per (task, model, LLM-label condition): the human labels the same model needs for the same
    F1, their cost, the saving of the LLM route and the break-even human price per coding."""
    rows = []
    for (task, model), g in costs.groupby(["task", "model"], sort=True):
        human = g[g["kind"] == "human"]
        for r in g[g["kind"].isin(LLM_KINDS)].itertuples():
            h = human_route(human, r.f1)
            saving = h["usd"] - r.total_usd
            # same F1 at equal cost: n_h c p + S_h = n_v c p + T + S_llm, solved for p
            extra = (h["n"] - rates.validation_items) * rates.coders_per_item
            fixed = r.teacher_usd + r.student_usd - h["student_usd"]
            be = fixed / extra if np.isfinite(extra) and extra > 0 else np.nan
            if h["bound"] == "interpolated":
                pays = "yes" if saving > 0 else "no"
            elif h["bound"] == "at least":
                pays = "yes" if saving > 0 else "unclear: no human-label size reaches this F1"
            elif h["bound"] == "at most":
                pays = "no" if saving <= 0 else \
                    "unclear: the smallest human-label size already reaches this F1"
            else:
                pays = "unclear: no human-label runs"
            rows.append({"task": task, "model": model, "condition": r.condition,
                         "kind": r.kind, "teacher": r.teacher, "f1": r.f1,
                         "llm_total_usd": r.total_usd, "human_n_same_f1": h["n"],
                         "bound": h["bound"], "human_total_usd_same_f1": h["usd"],
                         "saving_usd": saving, "break_even_usd_per_item": be,
                         "llm_labels_pay_off": pays})
    cols = ["task", "model", "condition", "kind", "teacher", "f1", "llm_total_usd",
            "human_n_same_f1", "bound", "human_total_usd_same_f1", "saving_usd",
            "break_even_usd_per_item", "llm_labels_pay_off"]
    return pd.DataFrame(rows, columns=cols)


def cost_figure(costs: pd.DataFrame, payoff: pd.DataFrame, meta: dict):
    """F1 against total cost (log scale): the headline model on human labels (line over sizes),
    on LLM labels, and the teacher's few-shot labels on the whole corpus; medians over tasks
    (large markers) and tasks (small)."""
    import matplotlib.pyplot as plt

    from .figures import KIND_COLOUR, MARKERS, RC, _no_data

    model = meta.get("model")
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(5, 3.3))
        sel = costs[(costs["model"] == model) | (costs["kind"] == "fewshot")] if model else costs
        sel = sel[np.isfinite(sel["total_usd"]) & np.isfinite(sel["f1"])]
        if sel.empty:
            _no_data(ax, "no runs with a cost")
            return fig
        summ = cost_summary(sel)
        for i, (kind, g) in enumerate(summ.groupby("kind", sort=False)):
            colour = KIND_COLOUR.get(kind, "#000000")
            if kind == "human":
                g = g.sort_values("human_n")
                ax.plot(g["total_usd_median"], g["f1_median"], color=colour, marker="o", ms=4,
                        lw=1.2, label=f"{model} on n human labels")
                for _, r in g.iterrows():
                    ax.annotate(f"n={int(r['human_n'])}", (r["total_usd_median"], r["f1_median"]),
                                textcoords="offset points", xytext=(3, -9), fontsize=6.5,
                                color=colour)
            else:
                for j, r in enumerate(g.itertuples()):
                    label = ("few-shot on the whole corpus" if kind == "fewshot" else
                             f"{model} on {r.condition}")
                    ax.scatter(r.total_usd_median, r.f1_median, color=colour,
                               marker=MARKERS[(i + j + 1) % len(MARKERS)], s=30, zorder=3,
                               label=label)
        for kind, g in sel.groupby("kind"):
            ax.scatter(g["total_usd"], g["f1"], color=KIND_COLOUR.get(kind, "#000000"), s=7,
                       alpha=0.35, lw=0)
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}"))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}"))
        ax.set_xlabel("total cost (USD, log scale)")
        ax.set_ylabel("F1 on the human test set")
        ax.set_title("F1 against what it cost (medians over tasks)")
        p = payoff[(payoff["model"] == model) & (payoff["kind"] == "llm")] if model else payoff
        if len(p):
            sav = float(np.nanmedian(p["saving_usd"])) if p["saving_usd"].notna().any() \
                else np.nan
            be = float(np.nanmedian(p["break_even_usd_per_item"])) \
                if p["break_even_usd_per_item"].notna().any() else np.nan
            txt = ("LLM labels vs human labels for the same F1 (median over tasks):\n"
                   + (f"saving USD {sav:,.2f}" if np.isfinite(sav) else "saving: –"))
            if np.isfinite(be):
                txt += f"; break-even at USD {be:,.3f} per human coding"
            ax.text(0.0, -0.2, txt, transform=ax.transAxes, fontsize=6.5, va="top",
                    color="#333333")
        # the payoff, drawn on the medians: from the LLM-label student to the cost at which the
        # human-label line reaches the same F1 (when it does)
        llm = summ[summ["kind"] == "llm"]
        hum = summ[summ["kind"] == "human"].rename(columns={
            "f1_median": "f1", "total_usd_median": "total_usd"}).assign(student_usd=0.0)
        if len(llm) and len(hum):
            x0, y0 = float(llm["total_usd_median"].iloc[0]), float(llm["f1_median"].iloc[0])
            h = human_route(hum, y0)
            if h["bound"] == "interpolated":
                ax.annotate("", xy=(h["usd"], y0), xytext=(x0, y0),
                            arrowprops={"arrowstyle": "->", "ls": ":", "color": "#555555",
                                        "lw": 0.8})
                ax.annotate(f"same F1 from ~{h['n']:.0f} human labels", (h["usd"], y0),
                            textcoords="offset points", xytext=(4, 2), fontsize=6.5,
                            color="#555555")
        ax.legend(frameon=False, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
    return fig
