"""Figures are valid, non-trivial images; the real `snakemake figures` and `--report` build on a
synthetic study whose teacher and student files follow docs/contracts.md; `--forcerun summary`
rebuilds the tables and figures from the metrics on disk without touching them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from evaluate_synthetic import write_task
from PIL import Image

from annodistill.evaluate.figures import FIGURES, build_figures
from annodistill.evaluate.metrics import Bootstrap, Scheme
from annodistill.evaluate.summary import SummaryInputs, build_summary
from annodistill.evaluate.task import TaskInputs, evaluate_task

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def check_figure(png: Path) -> None:
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        w, h = im.size
        px = np.asarray(im.convert("RGB"))
    assert w >= 500 and h >= 300, (png, w, h)
    colours = len(np.unique(px.reshape(-1, 3), axis=0))
    assert colours > 50, f"{png.name}: only {colours} colours (blank?)"
    # drawn marks: a real share of non-white pixels
    assert (px.min(axis=2) < 200).mean() > 0.01, png.name
    pdf = png.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000


def summary_of(tmp_path: Path, tasks, **kw) -> Path:
    metrics, gaps, cons, sweep = [], [], [], []
    for i, t in enumerate(tasks):
        p = write_task(tmp_path, t, seed=i, n_test=80, n_pool=150, human_sizes=(50, 100),
                       llm_size=100, **kw)
        res = evaluate_task(TaskInputs(
            task=t, test=str(p["test"]), scheme=Scheme(("yes", "no"), "yes"),
            predictions=[str(x) for x in p["predictions"]],
            teacher_test=[str(x) for x in p["teacher_test"]],
            teacher_train=[str(x) for x in p["teacher_train"]], train_pool=str(p["train_pool"]),
            llm_train_size=100), Bootstrap(200))
        d = tmp_path / "results" / t
        for name, df, lst in (("metrics", res.metrics, metrics), ("gaps", res.gaps, gaps),
                              ("cons", res.consistency, cons), ("sweep", res.sweep, sweep)):
            df.to_csv(d / f"{name}.csv", index=False)
            lst.append(str(d / f"{name}.csv"))
    out = tmp_path / "summary"
    build_summary(SummaryInputs(metrics=metrics, gaps=gaps, consistency=cons, sweep=sweep,
                                reference=str(ROOT / "resources/paper_reference.yaml"),
                                n_resamples=500), out)
    return out


def test_figures_are_valid_nontrivial_images(tmp_path):
    out = summary_of(tmp_path, ["a", "b", "c"], seeds=(0, 1), cons=(67,))
    written = build_figures(out, tmp_path / "figures")
    assert len(written) == 2 * len(FIGURES)
    for name in FIGURES:
        check_figure(tmp_path / "figures" / f"{name}.png")


def test_figures_for_a_single_task_without_teacher(tmp_path):
    # students on human labels only: the teacher figures say so instead of failing
    out = summary_of(tmp_path, ["solo"], teachers=(), seeds=(0,))
    build_figures(out, tmp_path / "figures")
    for name in FIGURES:
        with Image.open(tmp_path / "figures" / f"{name}.png") as im:
            im.verify()
    head = pd.read_csv(out / "headline.csv")
    assert set(head["kind"]) == {"human"}


def make_study(workdir: Path, tasks=("alpha", "beta", "gamma")) -> None:
    for i, t in enumerate(tasks):
        write_task(workdir, t, seed=i, n_test=120, n_pool=200, human_sizes=(50, 100),
                   llm_size=100, cons=(67,), seeds=(1, 2), n_val=50)
    cfg = {"study": "synthetic", "tasks": list(tasks), "task_dir": "config/tasks",
           "fetch_vader": False,
           "split": {"seed": 1, "test_size": 120, "validation_size": 50, "train_sizes": [50, 100],
                     "llm_train_size": 100},
           "teachers": {"models": {"gpt": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                                           "model": "x", "mode": "chat", "max_usd": 0}}},
           "students": {"seeds": [1, 2], "conditions": {"human": True, "llm": True,
                                                        "llm_consistency": [67], "soft": True},
                        "models": {"bert": {"kind": "tfidf"}, "tfidf": {"kind": "tfidf"}}},
           "evaluation": {"headline": {"model": "bert"}, "bootstrap": {"n_resamples": 200},
                          "task_bootstrap": {"n_resamples": 1000},
                          "prevalence": {"n_resamples": 200, "budget_resamples": 50,
                                         "budget_sizes": [10, 20, 40, 80]}}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def snakemake(workdir: Path, *args, env=None):
    cmd = SNAKEMAKE + ["-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile",
                       str(workdir / "config/config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_snakemake_figures_report_and_rebuild_from_disk(tmp_path, env_with_venv):
    make_study(tmp_path)
    # the synthetic teacher and student files stand in for those stages: only ours may run
    only_ours = ["--allowed-rules", "metrics", "summary", "plot", "figures", "prevalence",
                 "budget", "cost_f1", "disagreements"]
    snakemake(tmp_path, "--cores", "2", "figures", *only_ours, env=env_with_venv)
    summary, figures = tmp_path / "results/summary", tmp_path / "results/figures"
    for name in FIGURES:
        check_figure(figures / f"{name}.png")
    m = pd.read_csv(tmp_path / "results/alpha/metrics.csv")
    assert len(m) == 2 * 5 * 2 + 1  # 2 models x 5 conditions x 2 seeds + few-shot
    head = pd.read_csv(summary / "headline.csv")
    assert head.set_index(["model", "condition"]).loc[("bert", "llm-gpt"), "n_tasks"] == 3

    report = tmp_path / "results/report.html"
    snakemake(tmp_path, "--cores", "1", "--report", str(report), "figures", env=env_with_venv)
    html = report.read_text(errors="replace")
    assert len(html) > 100_000
    for name in FIGURES:
        assert f"{name}.png" in html
    for table in ("headline.html", "paper_comparison.html", "gaps_median.html",
                  "teacher_gate.html", "cost.html", "agreement_median.html", "per_class.html",
                  "agreement.html"):
        assert table in html
    assert "1 Findings" in html and "2 Teacher" in html
    # beyond the paper: prevalence (PPI++), the budget curve, cost per F1 point, disagreements
    for name in ("prevalence", "budget", "cost_f1"):
        check_figure(figures / f"{name}.png")
        assert f"{name}.png" in html
    for table in ("prevalence.html", "prevalence_coverage.html", "budget.html", "cost_f1.html",
                  "cost_payoff.html", "disagreements.html"):
        assert table in html
    assert "4 Beyond the paper" in html
    prev = pd.read_csv(summary / "prevalence.csv")
    assert set(prev["task"]) == {"alpha", "beta", "gamma"}
    assert {"human", "naive", "ppi"} <= set(prev["estimator"])

    # rebuild every table and figure from the metrics on disk: nothing upstream reruns
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*/metrics*.csv")
              if p.parent.name != "summary"}
    assert len(before) == 3 * 8  # metrics, gaps, consistency, sweep, per_class, confusion,
    # gaps_per_class, agreement
    head_before = (summary / "headline.csv").stat().st_mtime_ns
    proc = snakemake(tmp_path, "--cores", "2", "figures", "--forcerun", "summary", *only_ours,
                     env=env_with_venv)
    assert "rule metrics" not in proc.stdout + proc.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (summary / "headline.csv").stat().st_mtime_ns > head_before

    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "evaluate", "headline",
                           "--summary-dir", str(summary), "--report", str(report)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "bert on 100 gpt labels" in proc.stdout and f"HTML report: {report}" in proc.stdout
    assert "0.586" in proc.stdout  # the paper's number, side by side


@pytest.mark.parametrize("missing", ["headline.md"])
def test_headline_without_summary_is_a_clear_error(tmp_path, missing):
    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "evaluate", "headline",
                           "--summary-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and f"{missing}: no headline table yet" in proc.stderr
