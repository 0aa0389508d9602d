"""A three- and a five-category task through the real Snakemake workflow: a compressed raw file with a `drop`
in its label map, per-coder ratings, the teacher on the loopback server, and the evaluation
(per-class tables, confusion matrices, agreement with the human-human ceiling)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from fake_openai_server import FakeOpenAI
from test_workflow import run_snakemake

# the real workflow end to end: in `make test`; left out of the minimum-versions check
pytestmark = pytest.mark.slow

WORDS3 = {"against": "ban", "neutral": "report", "favour": "support"}
WORDS5 = {"against": "ban", "doubt": "question", "neutral": "report", "hope": "welcome",
          "favour": "support"}


def _study(root, base_url, WORDS, students=None):
    rng = np.random.default_rng(0)
    lines, coder_lines = ["id,text,code"], ["item,coder,code"]
    codes = {lab: str(i) for i, lab in enumerate(WORDS)}
    for i in range(420):
        if i % 20 == 19:  # outside the study: dropped by the label map
            lines.append(f"x{i},unrelated spam {i},9")
            continue
        lab = list(WORDS)[rng.integers(0, len(WORDS))]
        filler = " ".join(rng.choice(["the", "city", "people", "today", "new"], 5))
        lines.append(f"s{i:04d},{filler} {WORDS[lab]} the plan {i},{codes[lab]}")
        for c in range(3):
            code = codes[lab] if rng.random() < 0.8 else str(rng.integers(0, len(WORDS)))
            coder_lines.append(f"s{i:04d},k{c},{code}")
    raw = root / "raw"
    raw.mkdir(parents=True)
    (raw / "stance.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (raw / "coders.csv").write_text("\n".join(coder_lines) + "\n")
    cmap = {c: lab for lab, c in codes.items()}
    cb = {"name": "stance", "description": "The stance towards the plan.",
          "source": {"path": "raw/stance.csv.gz", "format": "csv", "id_column": "id",
                     "text_column": "text", "label": {"column": "code", "map": cmap, "drop": ["9"]},
                     "coders": {"path": "raw/coders.csv", "format": "csv", "id_column": "item",
                                "ratings": "long", "coder_column": "coder",
                                "rating_column": "code", "label": {"map": cmap}}},
          "labels": [{"name": n, "definition": f"the text is {n}", "verbalizer": n}
                     for n in WORDS],
          "prompt": {"instruction": f"Stance? Answer {' or '.join(WORDS)}.",
                     "item_prefix": "Text: ", "answer_prefix": "Stance:"}}
    (root / "config" / "tasks").mkdir(parents=True)
    (root / "config" / "tasks" / "stance.yaml").write_text(yaml.safe_dump(cb, sort_keys=False))
    cfg = {"study": "tri", "tasks": ["stance"], "task_dir": "config/tasks", "fetch_vader": False,
           "split": {"seed": 1, "test_size": 100, "validation_size": 50, "train_sizes": [50, 100],
                     "llm_train_size": 100},
           "teachers": {"cache_dir": "cache/llm", "seed": 7, "models": {"fake": {
               "provider": "openai", "base_url": base_url, "model": "fake-model",
               "api_key_env": "FAKE_TRI_KEY", "mode": "completion", "samples": 2,
               "max_tokens": 3, "few_shot": 3, "concurrency": 4, "max_usd": 0,
               "logprobs": True, "top_logprobs": 5, "gate": {"min_f1": 0.3}}}},
           "evaluation": {"bootstrap": {"n_resamples": 100}, "task_bootstrap": {"n_resamples": 100}}}
    if students:
        cfg["students"] = students
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.parametrize("WORDS", [WORDS3, WORDS5], ids=["K3", "K5"])
def test_multi_category_task_through_snakemake(tmp_path, env_with_venv, WORDS):
    env = {**env_with_venv, "FAKE_TRI_KEY": "sk-tri"}
    students = None
    if len(WORDS) == 3:  # K = 3 also trains students: a tiny encoder and TF-IDF, K-way heads
        from students_helpers import tiny_model

        students = {"seeds": [1], "conditions": {"human_sizes": [100], "llm_consistency": [67]},
                    "models": {
                        "tiny": {"kind": "encoder", "path": str(tiny_model(tmp_path / "m", "bert")),
                                 "max_length": 32, "conditions": {"llm_consistency": []},
                                 "grid": {"learning_rate": [1e-3], "batch_size": [16],
                                          "epochs": [1]}},
                        "tfidf": {"kind": "tfidf", "grid": {"C": [1.0, 10.0]},
                                  "class_weight": "balanced"}}}
    # the fake model answers the label whose keyword the text has (the last one otherwise)
    labels = list(WORDS)
    verbs = tuple(labels[:-1] + labels[-1:])
    with FakeOpenAI(api_key="sk-tri", verbs=verbs, keywords=tuple(WORDS[v] for v in verbs[:-1]),
                    noise=0.1) as srv:
        _study(tmp_path, srv.base_url, WORDS, students)
        run_snakemake(tmp_path, "--cores", "2", "data", "teacher", env=env)
        run_snakemake(tmp_path, "--cores", "2", "results/stance/metrics.csv", env=env)
    res = tmp_path / "results" / "stance"
    summary = json.loads((res / "data/summary.json").read_text())
    assert summary["dropped_by_label_map"] == 21 and summary["n_clean"] == 399
    coders = pd.read_parquet(res / "data/coders.parquet")
    assert coders.columns.tolist() == ["id", "coder", "label"] and len(coders) == 3 * 399
    gate = json.loads((res / "teacher/fake/gate.json").read_text())
    assert gate["headline_metric"] == "macro-F1" and gate["passed"]
    assert set(gate["per_class"]) == set(WORDS) and gate["n_labels"] == len(WORDS)
    lab = pd.read_parquet(res / "teacher/fake/labels_train.parquet")
    assert len(lab) == 100 and lab["p_positive"].isna().all()
    assert all(abs(sum(json.loads(s).values()) - 1) < 1e-9 for s in lab["p_labels"])
    m = pd.read_csv(res / "metrics.csv")
    assert (m["task_type"] == "multiclass").all()
    if students is None:
        assert m["condition"].tolist() == ["fewshot"]
    else:
        assert sorted(m["condition"]) == sorted(
            ["fewshot", "human-100", "human-100", "llm-fake", "llm-fake", "llm-fake-cons67",
             "soft-fake", "soft-fake"])
        for model, cond in (("tiny", "soft-fake"), ("tfidf", "llm-fake-cons67")):
            pred = pd.read_parquet(res / "students" / model / cond / "predictions.parquet")
            assert set(pred["label"]) <= set(WORDS) and pred["p_positive"].isna().all()
            probs = pd.DataFrame([json.loads(v) for v in pred["p_labels"]])
            assert sorted(probs.columns) == sorted(WORDS)
            assert np.allclose(probs.sum(axis=1), 1.0)
        tf = m[m["model"] == "tfidf"].set_index("condition")
        assert tf.loc["human-100", "f1"] > 0.5  # macro-F1 of a learnable 3-way task
        gaps = pd.read_csv(res / "metrics_gaps_per_class.csv")
        assert set(gaps["class"]) >= set(WORDS)
    pc = pd.read_csv(res / "metrics_per_class.csv")
    assert sorted(set(pc["class"])) == sorted(WORDS)
    cm = pd.read_csv(res / "metrics_confusion.csv")
    assert cm.loc[cm["condition"] == "fewshot", "n"].sum() == 100
    agree = pd.read_csv(res / "metrics_agreement.csv").set_index("kind")
    assert set(agree.index) == {"teacher-human", "human-human"}
    assert 0 < agree.loc["human-human", "alpha"] < 1 and agree.loc["human-human", "n"] == 100
