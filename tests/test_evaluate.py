"""Evaluation, per task: metrics against hand-computed and scikit-learn values, bootstrap CIs,
missing teacher answers, multi-class macro averages, and clear errors for bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from evaluate_synthetic import write_task
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from annodistill.errors import InputError
from annodistill.evaluate.metrics import (METRICS, Bootstrap, Scheme, coded_scores, paired_gap,
                                          score, sklearn_scores)
from annodistill.evaluate.task import TaskInputs, evaluate_task

BIN = Scheme(("yes", "no"), "yes")
TRI = Scheme(("a", "b", "c"), "a")
FAST = Bootstrap(n_resamples=300, seed=7)


def test_binary_scores_by_hand_with_a_missing_answer():
    y_true = ["yes", "yes", "no", "no", "yes"]
    y_pred = ["yes", "no", "no", "yes", None]  # None: the teacher gave no parsable answer
    s = sklearn_scores(y_true, y_pred, BIN)
    # tp=1 (item 0), fp=1 (item 3), fn=2 (items 1, 4): the missing answer is "not positive"
    assert s["precision"] == pytest.approx(1 / 2)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 2))
    # ... and always wrong for accuracy, even where the truth is negative
    assert s["accuracy"] == pytest.approx(2 / 5)
    y_pred2 = ["yes", "no", None, "yes", "no"]  # missing answer on a negative item
    assert sklearn_scores(y_true, y_pred2, BIN)["accuracy"] == pytest.approx(1 / 5)


def test_never_predicting_positive_gives_nan_precision_not_zero():
    s = sklearn_scores(["yes", "no", "no"], ["no", "no", "no"], BIN)
    assert np.isnan(s["precision"])
    assert s["recall"] == 0.0 and s["f1"] == 0.0
    assert s["accuracy"] == pytest.approx(2 / 3)


def test_multiclass_macro_matches_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.choice(["a", "b", "c"], 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.choice(["a", "b", "c"], 200))
    s = sklearn_scores(y_true, y_pred, TRI)
    assert s["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert s["precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert s["recall"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert s["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("scheme", [BIN, TRI])
def test_vectorised_statistic_equals_sklearn_on_random_resamples(scheme):
    """The bootstrap's statistic reproduces scikit-learn on every resample, including degenerate
    ones (a class absent, nothing predicted positive, missing answers)."""
    rng = np.random.default_rng(11)
    labels = list(scheme.labels) + [None]
    for trial in range(150):
        n = int(rng.integers(1, 25))
        y_true = list(rng.choice(scheme.labels, n))
        y_pred = [labels[i] for i in rng.integers(0, len(labels), n)]
        if trial % 7 == 0:
            y_pred = [scheme.labels[-1]] * n
        ref = sklearn_scores(y_true, y_pred, scheme)
        got = coded_scores(scheme.encode(y_true), scheme.encode(y_pred), scheme)
        np.testing.assert_allclose(got, [ref[m] for m in METRICS], equal_nan=True, atol=1e-12)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(0)

    def width(n):
        y_true = rng.choice(["yes", "no"], n, p=[0.4, 0.6])
        y_pred = np.where(rng.random(n) < 0.8, y_true, np.where(y_true == "yes", "no", "yes"))
        s = score(y_true, y_pred, BIN, FAST)
        for m in METRICS:
            assert s[f"{m}_lo"] <= s[m] + 1e-12 and s[m] <= s[f"{m}_hi"] + 1e-12
        return s["f1_hi"] - s["f1_lo"]

    assert width(2000) < width(100)
    # seeded: the same inputs give the same interval
    y = ["yes", "no"] * 30
    p = ["yes", "yes", "no"] * 20
    assert score(y, p, BIN, FAST) == score(y, p, BIN, FAST)


def test_paired_gap_point_is_difference_of_seed_means():
    rng = np.random.default_rng(5)
    y = rng.choice(["yes", "no"], 150)
    a = [np.where(rng.random(150) < 0.8, y, "no") for _ in range(3)]
    b = [np.where(rng.random(150) < 0.9, y, "no") for _ in range(2)]
    g = paired_gap(y, a, b, BIN, FAST)
    fa = np.mean([f1_score(y, p, pos_label="yes") for p in a])
    fb = np.mean([f1_score(y, p, pos_label="yes") for p in b])
    assert g["f1_gap"] == pytest.approx(fa - fb)
    assert g["f1_gap_lo"] <= g["f1_gap"] <= g["f1_gap_hi"]


def _inputs(paths, task="alpha", **kw):
    return TaskInputs(task=task, test=str(paths["test"]), scheme=BIN,
                      predictions=[str(p) for p in paths["predictions"]],
                      teacher_test=[str(p) for p in paths["teacher_test"]],
                      teacher_train=[str(p) for p in paths["teacher_train"]],
                      train_pool=str(paths["train_pool"]), llm_train_size=100, **kw)


def test_evaluate_task_rows_and_values(tmp_path):
    paths = write_task(tmp_path, "alpha", n_test=80, n_pool=150, human_sizes=(50, 100),
                       llm_size=100, seeds=(0, 1))
    res = evaluate_task(_inputs(paths), FAST)
    m = res.metrics
    # 2 models x 5 conditions x 2 seeds + 1 teacher few-shot
    assert len(m) == 2 * 5 * 2 + 1
    test = pd.read_parquet(paths["test"])
    few = m[m["condition"] == "fewshot"].iloc[0]
    lab = pd.read_parquet(paths["teacher_test"][0]).set_index("id").loc[test["id"], "label"]
    assert few["n_no_label"] == lab.isna().sum() > 0
    pred = lab.fillna("no").to_numpy()  # missing = not positive, for F1
    assert few["f1"] == pytest.approx(f1_score(test["label"], pred, pos_label="yes"))
    assert few["model"] == "gpt" and few["teacher"] == "gpt"
    # one student row against scikit-learn directly from the file
    p = pd.read_parquet(tmp_path / "results/alpha/students/bert/llm-gpt/predictions.parquet")
    p1 = p[p["seed"] == 1].set_index("id").loc[test["id"], "label"]
    row = m[(m["model"] == "bert") & (m["condition"] == "llm-gpt") & (m["seed"] == 1)].iloc[0]
    assert row["recall"] == pytest.approx(recall_score(test["label"], p1, pos_label="yes"))
    assert row["kind"] == "llm" and row["train_size"] == 100
    # gaps: every LLM-label condition of each model against human-100 and against few-shot
    assert set(res.gaps["comparison"]) == {"human", "fewshot"}
    assert len(res.gaps) == 2 * 3 * 2
    # consistency bins cover every teacher item once
    c = res.consistency
    assert c[c["split"] == "test"]["n"].sum() == len(test)
    assert c[c["split"] == "train"]["n"].sum() == 100
    s = res.sweep.set_index("threshold")
    assert s.loc[0, "n_kept"] >= s.loc[100, "n_kept"]


def test_missing_condition_gives_no_gap_row(tmp_path):
    paths = write_task(tmp_path, "alpha", n_test=60, n_pool=120, human_sizes=(50,),
                       llm_size=100, seeds=(0,), models=("bert",))
    res = evaluate_task(_inputs(paths), FAST)  # no human-100: no human comparison
    assert set(res.gaps["comparison"]) == {"fewshot"}


def test_bad_predictions_are_named(tmp_path):
    paths = write_task(tmp_path, "alpha", n_test=40, n_pool=120, human_sizes=(50,),
                       llm_size=100, seeds=(0,), models=("bert",))
    f = tmp_path / "results/alpha/students/bert/human-50/predictions.parquet"
    df = pd.read_parquet(f)
    df.iloc[1:].to_parquet(f, index=False)
    with pytest.raises(InputError, match=r"predictions.parquet.*1 test item\(s\) have no prediction"):
        evaluate_task(_inputs(paths), FAST)
    df.loc[3, "label"] = "maybe"
    df.to_parquet(f, index=False)
    with pytest.raises(InputError, match=r"row 3, field 'label'.*'maybe' is not one of"):
        evaluate_task(_inputs(paths), FAST)


def test_cli_error_is_one_line_exit_2(tmp_path):
    paths = write_task(tmp_path, "alpha", n_test=40, n_pool=120, human_sizes=(50,),
                       llm_size=100, seeds=(0,), models=("bert",))
    pd.read_parquet(paths["test"]).drop(columns="label").to_parquet(paths["test"])
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "annodistill.cli", "evaluate", "task", "--task", "alpha",
         "--codebook", str(paths["codebook"]), "--test", str(paths["test"]),
         "--predictions", *map(str, paths["predictions"]),
         "--metrics", str(out / "m.csv"), "--gaps", str(out / "g.csv"),
         "--consistency", str(out / "c.csv"), "--sweep", str(out / "s.csv")],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "test.parquet, field 'label': test set lacks column(s) ['label']" in proc.stderr
    assert not (out / "m.csv").exists()


def test_multiclass_task_end_to_end_uses_macro(tmp_path):
    labels = ("pos", "neg", "neutral")
    paths = write_task(tmp_path, "tri", n_test=90, n_pool=150, human_sizes=(100,), llm_size=100,
                       seeds=(0,), models=("bert",), labels=labels, positive="pos")
    scheme = Scheme(labels, "pos")
    res = evaluate_task(TaskInputs(
        task="tri", test=str(paths["test"]), scheme=scheme,
        predictions=[str(p) for p in paths["predictions"]],
        teacher_test=[str(p) for p in paths["teacher_test"]], llm_train_size=100), FAST)
    test = pd.read_parquet(paths["test"])
    p = pd.read_parquet(tmp_path / "results/tri/students/bert/human-100/predictions.parquet")
    p = p.set_index("id").loc[test["id"], "label"]
    row = res.metrics[res.metrics["condition"] == "human-100"].iloc[0]
    assert row["average"] == "macro" and row["positive"] == ""
    assert row["f1"] == pytest.approx(f1_score(test["label"], p, average="macro"))
    few = res.metrics[res.metrics["condition"] == "fewshot"].iloc[0]
    lab = pd.read_parquet(paths["teacher_test"][0]).set_index("id").loc[test["id"], "label"]
    # a missing answer is wrong for every class: scikit-learn on a sentinel label
    pred = lab.fillna("<none>").to_numpy()
    assert few["recall"] == pytest.approx(recall_score(test["label"], pred, labels=list(labels),
                                                       average="macro"))
    assert few["accuracy"] == pytest.approx(accuracy_score(test["label"], pred))
