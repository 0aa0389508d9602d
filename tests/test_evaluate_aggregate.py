"""Aggregation across tasks against values computed independently in the test, on hand-made
per-task tables: seeds averaged first, ties, a single task, missing conditions, NaN metrics."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annodistill.errors import InputError
from annodistill.evaluate import aggregate as agg
from annodistill.evaluate.summary import SummaryInputs, build_summary

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")

# (task, model, condition, seed) -> (f1, precision, recall); kind/teacher derived from condition
RUNS = {
    ("t1", "m", "llm-g", 1): (0.5, 0.6, 0.9),
    ("t1", "m", "llm-g", 2): (0.7, 0.8, 0.7),   # seeds average to f1 0.6, precision 0.7
    ("t2", "m", "llm-g", 1): (0.2, NAN, 0.0),   # never predicted positive: precision undefined
    ("t3", "m", "llm-g", 1): (0.4, 0.5, 0.6),
    ("t4", "m", "llm-g", 1): (0.8, 0.9, 0.8),
    ("t1", "m", "human-100", 1): (0.7, 0.8, 0.85),
    ("t2", "m", "human-100", 1): (0.3, 0.4, 0.2),
    ("t3", "m", "human-100", 1): (0.5, 0.6, 0.7),
    # t4 has no human-100 run (a missing condition)
    ("t1", "g", "fewshot", None): (0.6, 0.5, 0.8),
    ("t2", "g", "fewshot", None): (0.1, 0.2, 0.1),
    ("t3", "g", "fewshot", None): (0.4, 0.3, 0.9),
    ("t4", "g", "fewshot", None): (0.9, 0.9, 0.9),
}
# per-task gaps (llm-g minus reference) as the per-task stage would write them
GAPS = {
    # f1 gaps to human-100: all -0.1 (tied |gaps|); recall gaps: 0.05, -0.2 ... no ties
    ("t1", "human"): {"f1": -0.1, "precision": -0.1, "recall": 0.05},
    ("t2", "human"): {"f1": -0.1, "precision": NAN, "recall": -0.2},
    ("t3", "human"): {"f1": -0.1, "precision": -0.1, "recall": -0.1},
    ("t1", "fewshot"): {"f1": 0.0, "precision": 0.2, "recall": 0.0},
    ("t2", "fewshot"): {"f1": 0.1, "precision": NAN, "recall": -0.1},
    ("t3", "fewshot"): {"f1": 0.0, "precision": 0.2, "recall": -0.3},
    ("t4", "fewshot"): {"f1": -0.1, "precision": 0.0, "recall": -0.1},
}


def kind_of(cond):
    return {"llm-g": ("llm", "g"), "human-100": ("human", None), "fewshot": ("fewshot", "g")}[cond]


def write_inputs(tmp_path: Path, tasks=("t1", "t2", "t3", "t4")) -> SummaryInputs:
    metrics, gaps, gates, costs = [], [], [], []
    for task in tasks:
        rows = []
        for (t, model, cond, seed), (f1, p, r) in RUNS.items():
            if t != task:
                continue
            kind, teacher = kind_of(cond)
            rows.append({"task": t, "model": model, "condition": cond, "kind": kind,
                         "teacher": teacher, "threshold": None,
                         "human_n": 100 if kind == "human" else None, "seed": seed,
                         "train_size": 100 if kind != "fewshot" else None, "n_train": NAN,
                         "n_test": 50, "n_no_label": 2 if kind == "fewshot" else 0,
                         # t2's LLM-label student never predicted positive: degenerate
                         "degenerate": "one predicted class" if (t, cond) == ("t2", "llm-g")
                         else "",
                         "accuracy": 0.5, "f1": f1, "precision": p, "recall": r,
                         **{f"{m}_{s}": NAN for m in ("accuracy", "f1", "precision", "recall")
                            for s in ("lo", "hi")}})
        d = tmp_path / "results" / task
        d.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
        metrics.append(str(d / "metrics.csv"))
        grows = []
        for (t, comp), vals in GAPS.items():
            if t != task:
                continue
            row = {"task": t, "model": "m", "condition": "llm-g", "kind": "llm", "teacher": "g",
                   "threshold": None, "comparison": comp,
                   "reference": "human-100" if comp == "human" else "fewshot",
                   "n_seeds": 1, "n_seeds_reference": 1}
            for m in ("accuracy", "f1", "precision", "recall"):
                v = vals.get(m, 0.0)
                row.update({f"{m}_a": 0.5 + (v if not math.isnan(v) else 0), f"{m}_b": 0.5,
                            f"{m}_gap": v, f"{m}_gap_lo": NAN, f"{m}_gap_hi": NAN})
            grows.append(row)
        pd.DataFrame(grows).to_csv(d / "metrics_gaps.csv", index=False)
        gaps.append(str(d / "metrics_gaps.csv"))
        td = d / "teacher" / "g"
        td.mkdir(parents=True)
        (td / "gate.json").write_text(json.dumps(
            {"metrics": {"f1": 0.7, "accuracy": 0.8, "n": 40, "n_unparseable": 1,
                         "bins": [{"f1": 0.1}]}, "threshold": 0.5, "passed": True}))
        gates.append(str(td / "gate.json"))
        for split, usd in (("test", 0.1), ("train", 0.25)):
            (td / f"cost_{split}.json").write_text(json.dumps(
                {"requests": 10, "usd": usd, "prompt_tokens": 100, "max_usd": 5.0,
                 "price": {"input_per_mtok": 2.5}}))
            costs.append(str(td / f"cost_{split}.json"))
    return SummaryInputs(metrics=metrics, gaps=gaps, gates=gates, costs=costs,
                         reference=str(ROOT / "resources" / "paper_reference.yaml"),
                         model="m", teacher="g", equal_size=100, n_resamples=2000)


def exact_wilcoxon_p(d):
    """Two-sided exact p by enumerating every sign assignment (no ties, no zeros)."""
    d = [x for x in d if x != 0]
    ranks = {abs(x): i + 1 for i, x in enumerate(sorted(d, key=abs))}
    w_plus = sum(ranks[abs(x)] for x in d if x > 0)
    dist = [sum(r for r, s in zip(ranks.values(), signs) if s)
            for signs in itertools.product([0, 1], repeat=len(d))]
    lo = sum(w <= w_plus for w in dist) / len(dist)
    hi = sum(w >= w_plus for w in dist) / len(dist)
    return min(1.0, 2 * min(lo, hi))


def read(out: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{stem}.csv")


def test_headline_medians_seed_average_nan_and_missing(tmp_path):
    out = tmp_path / "summary"
    build_summary(write_inputs(tmp_path), out)
    h = read(out, "headline").set_index("condition")
    # llm-g: t1 seeds average to 0.6; F1 over tasks [0.6, 0.2, 0.4, 0.8]
    assert h.loc["llm-g", "f1_median"] == pytest.approx(0.5)
    assert h.loc["llm-g", "f1_q25"] == pytest.approx(0.35)   # linear interpolation
    assert h.loc["llm-g", "f1_q75"] == pytest.approx(0.65)
    # precision: t2 undefined, so the median of [0.7, 0.5, 0.9] over 3 tasks
    assert h.loc["llm-g", "precision_median"] == pytest.approx(0.7)
    assert h.loc["llm-g", "precision_n"] == 3 and h.loc["llm-g", "n_tasks"] == 4
    # human-100 missing on t4: 3 tasks
    assert h.loc["human-100", "n_tasks"] == 3
    assert h.loc["human-100", "f1_median"] == pytest.approx(0.5)
    assert h.loc["fewshot", "recall_median"] == pytest.approx(0.85)
    # order: few-shot, LLM labels, human labels
    assert list(h.index) == ["fewshot", "llm-g", "human-100"]
    for ext in ("md", "tex", "html"):
        text = (out / f"headline.{ext}").read_text()
        assert "0.500 [0.350, 0.650]" in text
    # degenerate runs are counted per condition and named in every format of the headline
    assert h.loc["llm-g", "n_degenerate_runs"] == 1 and h.loc["llm-g", "degenerate_tasks"] == "t2"
    assert h.loc["human-100", "n_degenerate_runs"] == 0
    md = (out / "headline.md").read_text()
    assert "1 of 5 (t2)" in md and "WARNING: 1 run(s) are degenerate" in md
    per = read(out, "metrics_by_task")
    flagged = per[per["degenerate"].fillna("") != ""]
    assert list(zip(flagged["task"], flagged["condition"])) == [("t2", "llm-g")]


def test_gap_summary_wilcoxon_and_bootstrap(tmp_path):
    out = tmp_path / "summary"
    build_summary(write_inputs(tmp_path), out)
    g = read(out, "gaps_median").set_index(["comparison", "metric"])
    # F1 vs human: three tied gaps of -0.1 -> normal approximation with the tie correction
    r = g.loc[("human", "f1")]
    assert r["n_tasks"] == 3 and r["median_gap"] == pytest.approx(-0.1)
    assert r["wilcoxon_method"] == "asymptotic"
    n, w_plus = 3, 0.0
    var = n * (n + 1) * (2 * n + 1) / 24 - (3 ** 3 - 3) / 48
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(var)
    assert r["wilcoxon_p"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert r["n_llm_worse"] == 3 and r["n_llm_better"] == 0
    # recall vs human: 0.05, -0.2, -0.1 (no ties) -> exact
    r = g.loc[("human", "recall")]
    assert r["wilcoxon_method"] == "exact"
    assert r["wilcoxon_p"] == pytest.approx(exact_wilcoxon_p([0.05, -0.2, -0.1]))
    assert r["median_gap"] == pytest.approx(-0.1)
    assert r["ci_lo"] <= r["median_gap"] <= r["ci_hi"]
    assert -0.2 <= r["ci_lo"] and r["ci_hi"] <= 0.05
    # precision vs human: NaN on t2 -> 2 tasks
    assert g.loc[("human", "precision"), "n_tasks"] == 2
    # F1 vs few-shot: zeros are dropped from the test but count in the median
    r = g.loc[("fewshot", "f1")]
    assert r["n_tasks"] == 4 and r["wilcoxon_n"] == 2
    assert r["median_gap"] == pytest.approx(np.median([0.0, 0.1, 0.0, -0.1]))


def test_single_task(tmp_path):
    out = tmp_path / "summary"
    build_summary(write_inputs(tmp_path, tasks=("t1",)), out)
    h = read(out, "headline").set_index("condition")
    assert h.loc["llm-g", "f1_median"] == pytest.approx(0.6)
    assert h.loc["llm-g", "f1_q25"] == pytest.approx(0.6)
    g = read(out, "gaps_median").set_index(["comparison", "metric"])
    r = g.loc[("human", "recall")]
    assert r["n_tasks"] == 1 and math.isnan(r["ci_lo"]) and math.isnan(r["ci_hi"])
    assert r["wilcoxon_p"] == pytest.approx(exact_wilcoxon_p([0.05]))  # = 1.0
    # all-zero gaps: the test is undefined, not an error
    r = g.loc[("fewshot", "f1")]
    assert math.isnan(r["wilcoxon_p"]) and r["wilcoxon_method"].startswith("undefined")


def test_paper_comparison_gate_and_cost(tmp_path):
    out = tmp_path / "summary"
    build_summary(write_inputs(tmp_path), out)
    c = read(out, "paper_comparison").set_index("key")
    assert c.loc["median_f1_llm_student", "paper"] == pytest.approx(0.586)
    assert c.loc["median_f1_llm_student", "study"] == pytest.approx(0.5)
    assert c.loc["median_f1_fewshot", "study"] == pytest.approx(np.median([0.6, 0.1, 0.4, 0.9]))
    assert c.loc["median_f1_gap_human", "study"] == pytest.approx(-0.1)
    assert c.loc["median_f1_gap_human", "difference"] == pytest.approx(-0.1 + 0.039)
    gate = read(out, "teacher_gate")
    assert list(gate["f1"]) == [0.7] * 4 and gate["passed"].all()
    cost = read(out, "cost")
    tot = cost[cost["split"] == "total"]
    assert len(tot) == 4 and tot["usd"].tolist() == pytest.approx([0.35] * 4)
    assert tot["prompt_tokens"].tolist() == [200] * 4
    assert "max_usd" not in cost.columns and "price.input_per_mtok" not in cost.columns


def test_wilcoxon_helper_matches_enumeration_on_random_gaps():
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 8):
        d = rng.normal(0, 1, n)
        assert agg.wilcoxon(d)["p"] == pytest.approx(exact_wilcoxon_p(list(d)))


def test_no_metrics_is_an_input_error(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("task,model\n")
    with pytest.raises(InputError, match="no usable metrics rows"):
        build_summary(SummaryInputs(metrics=[str(p)]), tmp_path / "out")
    with pytest.raises(InputError, match="not found"):
        build_summary(SummaryInputs(metrics=[str(tmp_path / "nope.csv")]), tmp_path / "out")
