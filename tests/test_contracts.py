"""The shared contracts: one consistency rule in three stages, degenerate flags, file hygiene,
and the checks that run at DAG build."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
from students_helpers import codebook, make_splits

from annodistill import io
from annodistill.contracts import (consistency_percent, degenerate_reason, keeps_consistency,
                                   parse_condition, teacher_of)
from annodistill.errors import InputError


def test_condition_grammar_is_shared():
    from annodistill.evaluate import task as ev_task

    for name in ("human-250", "llm-gpt-4o", "llm-gpt-4o-cons67", "soft-gpt-4o"):
        c = parse_condition(name)
        assert ev_task.parse_condition(name) == c.as_row()
    assert ev_task.parse_condition("fewshot")["kind"] == "fewshot"
    assert teacher_of("llm-a-b-cons100") == "a-b" and teacher_of("human-5") is None


def test_consistency_percent_rounds_half_up():
    np.testing.assert_array_equal(consistency_percent([1 / 3, 2 / 3, 0.5, 0.745, 1.0]),
                                  [33, 67, 50, 75, 100])
    assert keeps_consistency([2 / 3, np.nan], 67).tolist() == [True, False]


def _k3_labels(split, path):
    """Teacher labels of the first 6 pool items with k = 3 votes: 2/3 agreement on half."""
    pool = pd.read_parquet(split / "train_pool.parquet").sort_values("rank").head(6)
    cons = [2 / 3, 1.0, 2 / 3, 1.0, 2 / 3, 1.0]
    lab = pd.DataFrame({"id": pool["id"].astype(str), "label": pool["label"],
                        "consistency": cons, "p_positive": np.nan, "p_source": "votes",
                        "n_answers": 3, "n_unparseable": 0, "answers": "[]",
                        "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.0})
    path.parent.mkdir(parents=True, exist_ok=True)
    lab.to_parquet(path, index=False)
    return lab, pool


def test_a_two_of_three_item_is_kept_by_cons67_in_every_view(tmp_path):
    """Training (students), the threshold sweep (evaluation) and the gate's table agree."""
    from annodistill.evaluate.metrics import Scheme
    from annodistill.evaluate.task import TaskInputs, _consistency
    from annodistill.students.conditions import training_table
    from annodistill.teacher.votes import gate_metrics

    split = make_splits(tmp_path / "splits")
    path = tmp_path / "results" / "topic" / "teacher" / "t" / "labels_train.parquet"
    lab, pool = _k3_labels(split, path)
    # students: cons67 keeps all six (three of them 2-of-3), cons100 keeps three
    kw = dict(train_pool=split / "train_pool.parquet", label_names=["yes", "no"],
              positive="yes", teacher_labels=path)
    assert len(training_table(parse_condition("llm-t-cons67"), **kw).train) == 6
    assert len(training_table(parse_condition("llm-t-cons100"), **kw).train) == 3
    # evaluation sweep: the same counts at 67 and 100
    inp = TaskInputs(task="topic", test=str(split / "test.parquet"),
                     scheme=Scheme(("yes", "no"), "yes"), teacher_train=[str(path)],
                     train_pool=str(split / "train_pool.parquet"), thresholds=(67, 68, 100))
    test = pd.read_parquet(split / "test.parquet")
    _, sweep = _consistency(inp, test.assign(id=test["id"].astype(str)))
    kept = dict(zip(sweep["threshold"], sweep["n_kept"]))
    assert kept == {67: 6, 68: 3, 100: 3}
    # the gate's consistency-vs-accuracy table: 3 items at 67 %, named by the filter that keeps
    truth = pool[["id", "label"]].assign(id=pool["id"].astype(str))
    gate = gate_metrics(lab, truth, codebook(tmp_path))
    rows = {r["consistency_percent"]: r for r in gate["consistency_vs_accuracy"]}
    assert rows[67]["n"] == 3 and rows[67]["kept_by"] == "cons67" and rows[100]["n"] == 3


def test_degenerate_reasons():
    assert degenerate_reason(["a"] * 5) == "one predicted class"
    assert degenerate_reason(["a", "b", "a"], [0.9, 0.1, 0.8]) == ""
    r = degenerate_reason(["a", "b", "a"], [0.905, 0.899, 0.91])
    assert r.startswith("near-constant probabilities")
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert degenerate_reason(["a", "c"], probs, n_labels=3) == ""
    # "one class for all, or all but 3, of the 120 test items": a constant predictor in effect
    spread = np.linspace(0.05, 0.95, 120)
    assert degenerate_reason(["no"] * 117 + ["yes"] * 3, spread) == \
        "nearly one predicted class (117 of 120 'no')"
    assert degenerate_reason(["no"] * 116 + ["yes"] * 4, spread) == ""
    assert degenerate_reason(["a"] * 118 + ["b", "c"], n_labels=3).startswith("nearly one")
    # shares over the items with a prediction (a teacher may leave some unanswered)
    assert degenerate_reason(["a"] * 78 + [None] * 40 + ["b"] * 2).startswith("nearly one")


def test_outputs_respect_the_umask_and_json_is_strict(tmp_path):
    old = os.umask(0o027)
    try:
        io.write_json(tmp_path / "a.json", {"x": float("nan"), "y": [np.float64("inf"), 1.5],
                                            "z": np.float32(2.0)})
        io.write_csv(tmp_path / "b.csv", pd.DataFrame({"a": [1]}))
    finally:
        os.umask(old)
    for name in ("a.json", "b.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": [None, 1.5], "z": 2.0}


def _config(**students):
    return {"split": {"seed": 1, "test_size": 10, "validation_size": 10, "train_sizes": [10, 50],
                      "llm_train_size": 50},
            "teachers": {"models": {"t": {}}},
            "students": {"models": {"tfidf": {"kind": "tfidf", **students}}},
            "evaluation": {"headline": {"model": "tfidf"}}}


def test_preflight_fails_before_any_job(tmp_path):
    from annodistill.preflight import preflight

    cbs = {"topic": codebook(tmp_path)}
    preflight(_config(), cbs)
    with pytest.raises(InputError, match=r"study.yaml, field 'students.models.tfidf.selection_"
                                         r"fraction': human-10: 10 training items are too few"):
        preflight(_config(selection_fraction=0.9), cbs, where="study.yaml")
    with pytest.raises(InputError, match="selection_metric"):
        preflight(_config(selection_metric="auc"), cbs)
    bad = _config()
    bad["evaluation"]["headline"]["model"] = "bert"
    with pytest.raises(InputError, match="headline model 'bert'"):
        preflight(bad, cbs)


def test_every_parquet_read_goes_through_io_read_parquet():
    """pandas < 3 hands Arrow a Python file object for a local path, and a CLI that exits right
    after the read may then abort at interpreter shutdown (exit -6, seen under the declared
    floors); `io.read_parquet` reads by path through Arrow's file system instead."""
    from conftest import ROOT

    offenders = []
    for path in sorted((ROOT / "workflow" / "annodistill").rglob("*.py")):
        if path.name == "io.py" and path.parent.name == "annodistill":
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if "pd.read_parquet(" in line or "pandas.read_parquet(" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == [], f"read parquet with annodistill.io.read_parquet: {offenders}"
