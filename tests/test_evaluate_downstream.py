"""Beyond the paper: prevalence with PPI++ (against ppi_py itself and a simulation with a known
truth), the human-label budget curve, cost per F1 point against hand-computed values, the
disagreement page, and the four CLI steps on synthetic files of the documented shapes."""
from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluate_synthetic import write_task

from annodistill.errors import InputError
from annodistill.evaluate import prevalence as P
from annodistill.evaluate.budget import budget_summary, budget_table
from annodistill.evaluate.cost import (Rates, cost_table, human_route, payoff_table,
                                       teacher_costs, train_seconds)
from annodistill.evaluate.disagreement import NO_ANSWER, disagreements, page
from annodistill.evaluate.paired import PairedLabels, group_inputs

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd):
    """`python -m annodistill.cli ...` with this checkout's package first on the path."""
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "workflow"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "annodistill.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


# --- the estimators are ppi_py's ------------------------------------------------------------

def test_vectorised_intervals_equal_ppi_py_per_column():
    ppi = P.ppi_module()
    rng = np.random.default_rng(1)
    n, N, R = 60, 300, 7
    Y = (rng.random((n, R)) < 0.3).astype(float)
    Yhat = np.where(rng.random((n, R)) < 0.8, Y, 1 - Y)
    Yu = (rng.random((N, R)) < 0.35).astype(float)
    est, lo, hi = P.classical(Y, 0.05)
    pest, plo, phi, lam = P.ppi(Y, Yhat, Yu, 0.05)
    for j in range(R):
        clo, chi = ppi.classical_mean_ci(Y[:, j], alpha=0.05)
        assert lo[j] == pytest.approx(clo) and hi[j] == pytest.approx(chi)
        assert est[j] == pytest.approx(Y[:, j].mean())
        qlo, qhi = ppi.ppi_mean_ci(Y[:, j], Yhat[:, j], Yu[:, j], alpha=0.05)
        assert plo[j] == pytest.approx(float(qlo[0])) and phi[j] == pytest.approx(float(qhi[0]))
        point = ppi.ppi_mean_pointestimate(Y[:, j], Yhat[:, j], Yu[:, j])
        assert pest[j] == pytest.approx(float(np.atleast_1d(point)[0]))
        assert 0 <= lam[j] <= 1
    # a constant predictor carries no information: whatever lambda, the interval is the
    # classical one (and the lambda read back is undefined)
    c_est, c_lo, c_hi, c_lam = P.ppi(Y, np.zeros_like(Y), np.zeros_like(Yu), 0.05)
    assert np.allclose(c_lo, lo) and np.allclose(c_hi, hi) and np.allclose(c_est, est)
    assert np.all(np.isnan(c_lam) | (c_lam == 0))


def _simulate(rng, size, prevalence, fpr, fnr):
    y = (rng.random(size) < prevalence).astype(float)
    u = rng.random(size)
    yhat = np.where(y == 1, (u >= fnr), (u < fpr)).astype(float)
    return y, yhat


def test_coverage_in_a_simulation_with_known_truth():
    """A biased simulated LLM (over-calls the class: 20 % false positives, 10 % false
    negatives; true prevalence 0.3, LLM prevalence 0.41): over 2,000 seeded replications the
    PPI++ interval covers the truth about 95 % of the time, the face-value LLM interval almost
    never, and PPI++ is narrower than the human-only interval."""
    rng = np.random.default_rng(20240625)
    R, n, N, truth = 2000, 200, 2000, 0.3
    Y, Yhat = np.empty((n, R)), np.empty((n, R))
    Yu_hat, Yu_true = np.empty((N, R)), np.empty((N, R))
    for j in range(R):
        Y[:, j], Yhat[:, j] = _simulate(rng, n, truth, 0.2, 0.1)
        Yu_true[:, j], Yu_hat[:, j] = _simulate(rng, N, truth, 0.2, 0.1)
    _, hlo, hhi = P.classical(Y, 0.05)
    pest, plo, phi, _ = P.ppi(Y, Yhat, Yu_hat, 0.05)
    nest, nlo, nhi = P.classical(Yu_hat, 0.05)
    cover = {k: np.mean((lo <= truth) & (truth <= hi)) for k, lo, hi in
             (("human", hlo, hhi), ("ppi", plo, phi), ("naive", nlo, nhi))}
    assert 0.93 <= cover["ppi"] <= 0.97, cover
    assert 0.93 <= cover["human"] <= 0.97, cover
    assert cover["naive"] < 0.01, cover
    assert np.mean(nest) - truth == pytest.approx(0.7 * 0.2 - 0.3 * 0.1, abs=0.005)  # +0.11
    assert abs(np.mean(pest) - truth) < 0.003
    assert np.mean(phi - plo) < 0.9 * np.mean(hhi - hlo)


def paired(task="t", *, n_val=150, n_test=300, n_pool=600, prevalence=0.3, fpr=0.2, fnr=0.1,
           seed=0, teacher="gpt", labels=("yes", "no")) -> PairedLabels:
    rng = np.random.default_rng(seed)
    frames = []
    for split, size in (("validation", n_val), ("test", n_test), ("train", n_pool)):
        y, yhat = _simulate(rng, size, prevalence, fpr, fnr)
        cons = np.where(y == yhat, 1.0, 2 / 3)
        frames.append(pd.DataFrame({
            "split": split, "id": [f"{split[0]}{i}" for i in range(size)],
            "text": [f"{split} text {i}" for i in range(size)],
            "human": np.where(y == 1, labels[0], labels[1]).astype(object),
            "teacher": np.where(yhat == 1, labels[0], labels[1]).astype(object),
            "consistency": cons, "p_positive": np.where(yhat == 1, cons, 1 - cons),
            "answers": [[] for _ in range(size)]}))
    return PairedLabels(task, teacher, labels, labels[0], pd.concat(frames, ignore_index=True))


def test_coverage_table_known_truth_world():
    pls = [paired("a", seed=1), paired("b", seed=2, fpr=0.02, fnr=0.02)]
    cov = P.coverage_table(pls, 0.95, n_resamples=400, seed=7)
    row = cov.set_index(["task", "estimator"])
    for task in ("a", "b"):
        assert 0.91 <= row.loc[(task, "ppi"), "coverage"] <= 0.99
        assert 0.91 <= row.loc[(task, "human"), "coverage"] <= 0.99
    # the biased teacher: naive biased by ~ +0.11 and under-covering; the accurate one: fine
    assert row.loc[("a", "naive"), "coverage"] < 0.2
    assert row.loc[("a", "naive"), "mean_bias"] == pytest.approx(
        row.loc[("a", "naive"), "llm_bias"], abs=0.01)
    assert row.loc[("a", "naive"), "llm_bias"] > 0.07
    assert row.loc[("b", "naive"), "coverage"] > 0.8
    pooled = cov[cov["task"] == "all"].set_index("estimator")
    assert pooled.loc["ppi", "n_cells"] == 2
    assert pooled.loc["ppi", "coverage"] > pooled.loc["naive", "coverage"]
    # same seed, same numbers; results do not depend on the order of the tasks
    again = P.coverage_table(pls[::-1], 0.95, n_resamples=400, seed=7)
    a = cov[cov["task"] != "all"].sort_values(["task", "estimator"]).reset_index(drop=True)
    b = again[again["task"] != "all"].sort_values(["task", "estimator"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_prevalence_table_scores_against_test_set():
    pl = paired("a", seed=3)
    prev = P.prevalence_table([pl], 0.95).set_index("estimator")
    assert list(prev.index) == ["human", "naive", "ppi", "ppi_soft"]
    test = pl.split("test")
    truth = float((test["human"] == "yes").mean())
    assert (prev["truth_test"] == truth).all()
    assert prev.loc["naive", "estimate"] == pytest.approx(
        float((pl.split("train")["teacher"] == "yes").mean()))
    assert prev.loc["human", "estimate"] == pytest.approx(
        float((pl.split("validation")["human"] == "yes").mean()))
    for e, r in prev.iterrows():
        assert r["bias"] == pytest.approx(r["estimate"] - truth)
        assert r["covers"] == (r["ci_lo"] <= truth <= r["ci_hi"])
        assert r["width"] == pytest.approx(r["ci_hi"] - r["ci_lo"])
    assert prev.loc["naive", "bias"] > 0.05  # the simulated teacher over-calls
    # multi-class: one row set per label (one vs rest), no soft variant for the other labels
    multi = paired("m", seed=4, labels=("pro", "anti", "neutral"))
    mp = P.prevalence_table([multi], 0.95)
    assert set(mp["class"]) == {"pro", "anti", "neutral"}
    assert set(mp.loc[mp["estimator"] == "ppi_soft", "class"]) == {"pro"}


# --- the human-label budget ------------------------------------------------------------------

def test_budget_curve_is_monotone_and_llm_labels_help():
    pls = [paired("a", seed=5, fpr=0.05, fnr=0.05), paired("b", seed=6, fpr=0.1, fnr=0.1)]
    df = budget_table(pls, 0.95, [10, 20, 40, 80, 160, 320, 5000], n_resamples=200, seed=1)
    assert 5000 not in set(df["n_human"])  # above the population: skipped
    for task, g in df.groupby("task"):
        g = g.sort_values("n_human")
        assert list(g["n_human"]) == [10, 20, 40, 80, 160, 320]
        assert np.all(np.diff(g["width_human"]) < 0), task
        assert np.all(np.diff(g["width_ppi"]) < 0), task
        assert np.all(g["width_ppi"] < g["width_human"]), task
        assert np.all(g["n_equivalent"] > g["n_human"]), task
    summ = budget_summary(df)
    assert list(summ["n_human"]) == [10, 20, 40, 80, 160, 320]
    assert np.all(np.diff(summ["width_ppi_median"]) < 0)
    big = df[df["n_human"] >= 80]
    assert big["coverage_ppi"].between(0.88, 1.0).all()


# --- cost per F1 point -----------------------------------------------------------------------

def _cost_files(root: Path) -> tuple[list[str], dict]:
    files = []
    for teacher, provider, split, data in (
            ("gpt", "openai", "validation", {"n_items": 36, "usd_all_answers": 0.36}),
            ("gpt", "openai", "train", {"n_items": 100, "usd_all_answers": 1.00}),
            ("gpt", "openai", "test", {"n_items": 120, "usd_all_answers": 1.20}),
            ("local", "llama_cpp_local", "validation",
             {"n_items": 36, "usd_all_answers": 0.0, "seconds": 50.0, "requests": 300,
              "requests_sent": 150})):
        d = root / "results" / "t" / "teacher" / teacher
        d.mkdir(parents=True, exist_ok=True)
        (d / f"cost_{split}.json").write_text(json.dumps({"provider": provider, **data}))
        files.append(str(d / f"cost_{split}.json"))
    runs = {}
    for cond, secs in (("human-100", [100, 300]), ("human-200", [400]), ("llm-gpt", [150])):
        d = root / "results" / "t" / "students" / "m" / cond
        d.mkdir(parents=True, exist_ok=True)
        (d / "run.json").write_text(json.dumps(
            {"seeds": [{"seed": i, "train_seconds": s} for i, s in enumerate(secs)]}))
        runs[("t", "m", cond)] = train_seconds(d / "run.json")
    return files, runs


def test_cost_arithmetic_against_hand_computed_values(tmp_path):
    # $0.50 per item and coder, 2 coders, $3.60 per compute hour (= $0.001 per second),
    # few-shot labels 1,000 corpus items, every LLM route codes 40 validation items by hand
    rates = Rates(0.5, 2, 3.6, 1000, 40)
    files, runs = _cost_files(tmp_path)
    tc = teacher_costs(files, rates).set_index(["teacher", "split"])
    assert tc.loc[("gpt", "test"), "usd_per_item"] == pytest.approx(0.01)
    # local teacher: 50 s for 150 answers bought, 300 answers in all -> 100 s -> $0.10
    assert tc.loc[("local", "validation"), "compute_seconds"] == pytest.approx(100.0)
    assert tc.loc[("local", "validation"), "usd"] == pytest.approx(0.10)
    assert runs[("t", "m", "human-100")] == 200.0
    metrics = pd.DataFrame([
        {"task": "t", "model": "m", "condition": "human-100", "kind": "human", "seed": 0,
         "f1": 0.5, "teacher": None, "human_n": 100},
        {"task": "t", "model": "m", "condition": "human-100", "kind": "human", "seed": 1,
         "f1": 0.7, "teacher": None, "human_n": 100},
        {"task": "t", "model": "m", "condition": "human-200", "kind": "human", "seed": 0,
         "f1": 0.8, "teacher": None, "human_n": 200},
        {"task": "t", "model": "m", "condition": "llm-gpt", "kind": "llm", "seed": 0,
         "f1": 0.7, "teacher": "gpt", "human_n": None},
        {"task": "t", "model": "gpt", "condition": "fewshot", "kind": "fewshot", "seed": None,
         "f1": 0.65, "teacher": "gpt", "human_n": None}])
    costs = cost_table(metrics, teacher_costs(files, rates), runs, rates)
    c = costs.set_index("condition")
    # human-100: 100 x 2 x 0.5 = 100 + 200 s training = 0.2 -> 100.2; F1 0.6 -> 1.67 per point
    assert c.loc["human-100", "f1"] == pytest.approx(0.6)
    assert c.loc["human-100", "human_usd"] == pytest.approx(100.0)
    assert c.loc["human-100", "student_usd"] == pytest.approx(0.2)
    assert c.loc["human-100", "total_usd"] == pytest.approx(100.2)
    assert c.loc["human-100", "usd_per_f1_point"] == pytest.approx(100.2 / 60)
    assert c.loc["human-200", "total_usd"] == pytest.approx(200.4)
    # llm-gpt: validation 40 x 2 x 0.5 = 40, teacher 0.36 + 1.00, training 0.15 -> 41.51
    assert c.loc["llm-gpt", "human_usd"] == pytest.approx(40.0)
    assert c.loc["llm-gpt", "teacher_usd"] == pytest.approx(1.36)
    assert c.loc["llm-gpt", "total_usd"] == pytest.approx(41.51)
    # few-shot: validation 40 + teacher on it 0.36 + 0.01 per item x 1,000 = 50.36
    assert c.loc["fewshot", "total_usd"] == pytest.approx(50.36)
    assert c.loc["fewshot", "usd_per_f1_point"] == pytest.approx(50.36 / 65)

    pay = payoff_table(costs, rates).set_index("condition")
    # F1 0.7 lies half-way between human-100 (0.6) and human-200 (0.8): 150 labels, $150.30
    assert pay.loc["llm-gpt", "bound"] == "interpolated"
    assert pay.loc["llm-gpt", "human_n_same_f1"] == pytest.approx(150.0)
    assert pay.loc["llm-gpt", "human_total_usd_same_f1"] == pytest.approx(150.3)
    assert pay.loc["llm-gpt", "saving_usd"] == pytest.approx(150.3 - 41.51)
    assert pay.loc["llm-gpt", "llm_labels_pay_off"] == "yes"
    # break-even: 150 x 2 x p + 0.30 = 40 x 2 x p + 1.36 + 0.15  ->  p = 1.21 / 220
    be = pay.loc["llm-gpt", "break_even_usd_per_item"]
    assert be == pytest.approx(1.21 / 220)
    assert 150 * 2 * be + 0.30 == pytest.approx(40 * 2 * be + 1.36 + 0.15)


def test_cached_local_teacher_cost_is_unknown_and_said_so(tmp_path):
    d = tmp_path / "results" / "t" / "teacher" / "local"
    d.mkdir(parents=True)
    for split in ("validation", "train"):
        (d / f"cost_{split}.json").write_text(json.dumps(
            {"provider": "llama_cpp_local", "n_items": 10, "usd_all_answers": 0.0,
             "seconds": 0.2, "requests": 30, "requests_sent": 0}))
    rates = Rates(1.0, 1, 1.0, 100, 10)
    tc = teacher_costs([str(d / "cost_validation.json"), str(d / "cost_train.json")], rates)
    assert tc["usd"].isna().all()
    metrics = pd.DataFrame([{"task": "t", "model": "m", "condition": "llm-local", "kind": "llm",
                             "f1": 0.5, "teacher": "local", "human_n": None}])
    c = cost_table(metrics, tc, {("t", "m", "llm-local"): 36.0}, rates)
    assert np.isnan(c.loc[0, "total_usd"]) and "came from the cache" in c.loc[0, "note"]


def test_human_route_bounds():
    h = pd.DataFrame({"human_n": [100, 200], "f1": [0.6, 0.8], "total_usd": [10.0, 20.0],
                      "student_usd": [0.0, 0.0]})
    assert human_route(h, 0.5)["bound"] == "at most" and human_route(h, 0.5)["n"] == 100
    assert human_route(h, 0.9)["bound"] == "at least" and human_route(h, 0.9)["usd"] == 20.0
    assert human_route(h, 0.65)["n"] == pytest.approx(125.0)
    assert human_route(h.iloc[:0], 0.7)["bound"] == "no human-label runs"


def test_cost_file_without_documented_field_is_a_clear_error(tmp_path):
    d = tmp_path / "results" / "t" / "teacher" / "gpt"
    d.mkdir(parents=True)
    (d / "cost_train.json").write_text(json.dumps({"provider": "openai", "n_items": 3, "usd": 1}))
    with pytest.raises(InputError, match="cost_train.json.*usd_all_answers"):
        teacher_costs([str(d / "cost_train.json")], Rates(1, 1, 1, 1, 1))


# --- the disagreement page ---------------------------------------------------------------------

class Rows(HTMLParser):
    """Rows of the page's item table: data attributes and cell texts; and any external
    reference (src/href attributes, link tags)."""

    def __init__(self):
        super().__init__()
        self.rows, self.external, self.in_items, self.cell, self.row = [], [], False, None, None
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "src" in a or "href" in a or tag in ("link", "iframe", "img"):
            self.external.append((tag, a))
        if tag == "script":
            self.scripts += 1
        if tag == "table" and a.get("id") == "items":
            self.in_items = True
        if self.in_items and tag == "tr" and "data-task" in a:
            self.row = {"attrs": a, "cells": []}
        if self.row is not None and tag == "td":
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None:
            self.row["cells"].append(self.cell)
            self.cell = None
        if tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        if tag == "table":
            self.in_items = False


def test_disagreement_page_holds_exactly_the_disagreeing_items(tmp_path):
    pl = paired("a", n_val=30, n_test=50, n_pool=40, seed=8)
    items = pl.items.copy()
    nasty = '<script>alert("x")</script> & "quotes" <b>'
    items.loc[0, "text"] = nasty
    items.loc[0, ["human", "teacher"]] = ["yes", "no"]
    items.loc[1, "teacher"] = None  # no answer: a disagreement
    items.loc[1, "consistency"] = np.nan
    items.at[2, "answers"] = ["yes", "no", "no"]  # one cell holding a list (pandas 2.2 and 3)
    pl = PairedLabels("a", "gpt", pl.labels, pl.positive, items)
    pl2 = paired("b", n_val=20, n_test=20, n_pool=10, seed=9, teacher="other")
    df, counts = disagreements([pl, pl2])
    parser = Rows()
    parser.feed(page(df, counts))
    assert parser.external == [] and parser.scripts == 1
    got = {(r["attrs"]["data-task"], r["attrs"]["data-teacher"], r["attrs"]["data-split"],
            r["cells"][3]) for r in parser.rows}
    expected = set()
    for p in (pl, pl2):
        it = p.items[p.items["split"].isin(["validation", "test"])]
        bad = it[[not isinstance(t, str) or t != h for t, h in zip(it["teacher"], it["human"])]]
        expected |= {(p.task, p.teacher, r.split, r.id) for r in bad.itertuples()}
    assert got == expected and len(parser.rows) == len(expected) > 0
    by_id = {r["cells"][3]: r["cells"] for r in parser.rows if r["attrs"]["data-task"] == "a"}
    assert by_id[items.loc[0, "id"]][9] == nasty  # escaped in the page, the same text parsed
    assert by_id[items.loc[1, "id"]][5] == NO_ANSWER
    # most confident first within a task; no-answer items last
    cons = [r["cells"][6] for r in parser.rows if r["attrs"]["data-task"] == "a"]
    vals = [float(c) if c != "–" else -1 for c in cons]
    assert vals == sorted(vals, reverse=True) and vals[-1] == -1
    c = counts.set_index(["task", "split"])
    assert c.loc[("a", "validation"), "n_disagree"] + c.loc[("a", "test"), "n_disagree"] \
        == len([g for g in got if g[0] == "a"])


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="needs node")
def test_disagreement_page_filter_script_runs(tmp_path):
    """The page's inline script, run by node against a minimal stand-in for the DOM built from
    the parsed rows: the search box and the selectors show exactly the matching rows."""
    import re

    pl = paired("a", n_val=30, n_test=40, n_pool=10, seed=10)
    pl2 = paired("b", n_val=30, n_test=40, n_pool=10, seed=11)
    df, counts = disagreements([pl, pl2])
    html_text = page(df, counts)
    parser = Rows()
    parser.feed(html_text)
    rows = [{"task": r["attrs"]["data-task"], "teacher": r["attrs"]["data-teacher"],
             "split": r["attrs"]["data-split"], "text": " ".join(r["cells"])}
            for r in parser.rows]
    script = re.search(r"<script>(.*)</script>", html_text, re.S).group(1)
    probe = df.iloc[0]["text"]
    harness = f"""
var rowdata = {json.dumps(rows)};
function el(v) {{ var l = {{}}; return {{value: v, textContent: '',
  addEventListener: function(e, f) {{ l[e] = f; }}, fire: function(e) {{ l[e](); }} }}; }}
var els = {{q: el(''), 'f-task': el(''), 'f-teacher': el(''), 'f-split': el(''), count: el('')}};
var rows = rowdata.map(function(r) {{ return {{textContent: r.text, style: {{}},
  getAttribute: function(k) {{ return r[k.slice(5)]; }} }}; }});
var document = {{getElementById: function(i) {{ return els[i]; }},
  querySelectorAll: function() {{ return rows; }}}};
{script}
var out = [els.count.textContent];
els['f-task'].value = 'b'; els['f-task'].fire('change'); out.push(els.count.textContent);
els['f-split'].value = 'test'; els['f-split'].fire('change'); out.push(els.count.textContent);
els['f-task'].value = ''; els['f-split'].value = ''; els.q.value = {json.dumps(probe.upper())};
els.q.fire('input'); out.push(els.count.textContent);
console.log(JSON.stringify(out));
"""
    (tmp_path / "h.js").write_text(harness)
    proc = subprocess.run(["node", str(tmp_path / "h.js")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    n = len(df)
    n_b = int((df["task"] == "b").sum())
    n_b_test = int(((df["task"] == "b") & (df["split"] == "test")).sum())
    n_probe = sum(probe.lower() in r["text"].lower() for r in rows)
    assert json.loads(proc.stdout) == [f"{k} of {n} items shown" for k in
                                       (n, n_b, n_b_test, n_probe)]
    assert 0 < n_b_test < n_b < n and n_probe >= 1


# --- the CLI on synthetic files of the documented shapes ----------------------------------------

def test_cli_steps_on_synthetic_files(tmp_path):
    tasks = ["alpha", "beta"]
    paths = {t: write_task(tmp_path, t, seed=i, n_test=80, n_pool=150, human_sizes=(50, 100),
                           llm_size=100, seeds=(0, 1), n_val=40) for i, t in enumerate(tasks)}
    res = tmp_path / "results"
    codebooks = [str(paths[t]["codebook"]) for t in tasks]
    splits = [str(res / t / "splits" / f"{s}.parquet") for t in tasks
              for s in ("validation", "test", "train_pool")]
    labels = [str(res / t / "teacher" / "gpt" / f"labels_{s}.parquet") for t in tasks
              for s in ("validation", "test", "train")]
    summary, figures = tmp_path / "summary", tmp_path / "figures"

    def cli(*args):
        proc = run_cli("evaluate", *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    paired_args = ["--codebooks", *codebooks, "--splits", *splits, "--teacher-labels", *labels]
    cli("prevalence", *paired_args, "--n-resamples", "100", "--out-dir", str(summary),
        "--figures-dir", str(figures))
    prev = pd.read_csv(summary / "prevalence.csv")
    assert set(prev["task"]) == set(tasks)
    assert set(prev["estimator"]) == {"human", "naive", "ppi", "ppi_soft"}
    assert (prev.loc[prev["estimator"] == "human", "n_human"] == 36).all()  # 40 minus 4 shots
    cov = pd.read_csv(summary / "prevalence_coverage.csv")
    assert (cov.loc[cov["task"] != "all", "n_resamples"] == 100).all()
    for ext in ("csv", "md", "tex", "html"):
        assert (summary / f"prevalence.{ext}").stat().st_size > 100
    assert (figures / "prevalence.png").stat().st_size > 5000

    metrics = []
    from annodistill.evaluate.metrics import Bootstrap, Scheme
    from annodistill.evaluate.task import TaskInputs, evaluate_task
    for t in tasks:
        p = paths[t]
        r = evaluate_task(TaskInputs(task=t, test=str(p["test"]), scheme=Scheme(("yes", "no"),
                                                                               "yes"),
                                     predictions=[str(x) for x in p["predictions"]],
                                     teacher_test=[str(x) for x in p["teacher_test"]],
                                     llm_train_size=100), Bootstrap(50))
        r.metrics.to_csv(res / t / "metrics.csv", index=False)
        metrics.append(str(res / t / "metrics.csv"))
    pd.concat([pd.read_csv(m) for m in metrics]).to_csv(tmp_path / "metrics_all.csv",
                                                        index=False)
    (tmp_path / "meta.json").write_text(json.dumps({"model": "bert", "teacher": "gpt"}))
    cli("budget", *paired_args, "--sizes", "10,20,40", "--n-resamples", "50",
        "--metrics-all", str(tmp_path / "metrics_all.csv"), "--meta", str(tmp_path / "meta.json"),
        "--out-dir", str(summary), "--figures-dir", str(figures))
    budget = pd.read_csv(summary / "budget.csv")
    assert list(budget["n_human"]) == [10, 20, 40]
    assert (figures / "budget.png").stat().st_size > 5000

    runs = [str(Path(p).parent / "run.json") for t in tasks for p in paths[t]["predictions"]]
    costs = [str(p) for t in tasks for p in paths[t]["costs"]]
    cli("cost", "--metrics", *metrics, "--runs", *runs, "--teacher-costs", *costs,
        "--human-usd-per-item", "0.25", "--coders-per-item", "2", "--compute-usd-per-hour", "2",
        "--corpus-items", "5000", "--validation-items", "40", "--meta",
        str(tmp_path / "meta.json"), "--out-dir", str(summary), "--figures-dir", str(figures))
    by_task = pd.read_csv(summary / "cost_f1_by_task.csv")
    h = by_task[(by_task["condition"] == "human-50") & (by_task["model"] == "bert")]
    # 50 items x 2 coders x $0.25 + training 0.05 s per item x 50 items at $2/h
    assert h["total_usd"].tolist() == pytest.approx([25 + 2.5 / 3600 * 2] * 2)
    assert (summary / "cost_payoff.csv").exists() and (figures / "cost_f1.png").exists()

    cli("disagreements", *paired_args, "--out", str(summary / "disagreements.html"),
        "--csv", str(summary / "disagreements.csv"))
    d = pd.read_csv(summary / "disagreements.csv")
    assert set(d["split"]) <= {"validation", "test"} and len(d) > 0

    # a split file of a task without its codebook: one clear error naming the task
    with pytest.raises(InputError, match="no codebook given for task 'beta'"):
        group_inputs(codebooks[:1], splits, labels)


def test_group_inputs_refuses_a_teacher_id_outside_its_split(tmp_path):
    p = write_task(tmp_path, "alpha", n_test=30, n_pool=60, human_sizes=(20,), llm_size=20,
                   seeds=(0,))
    res = tmp_path / "results" / "alpha"
    lab = pd.read_parquet(res / "teacher/gpt/labels_validation.parquet")
    lab.loc[0, "id"] = "not-there"
    lab.to_parquet(res / "teacher/gpt/labels_validation.parquet", index=False)
    with pytest.raises(InputError, match=r"labels_validation.parquet, row 0, field 'id'"):
        group_inputs([str(p["codebook"])], [str(res / "splits/validation.parquet")],
                     [str(res / "teacher/gpt/labels_validation.parquet")])
