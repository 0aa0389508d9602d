"""Student stage: conditions, selection, the training loop on every architecture, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score
from students_helpers import (MINILM, codebook, make_splits, read_run, stand_in_teacher,
                              tiny_model)

from annodistill.contracts import (PREDICTION_COLUMNS, condition_names, parse_condition,
                                   teacher_names, teacher_of)
from annodistill.errors import InputError
from annodistill.students.conditions import training_table
from annodistill.students.run import run_job
from annodistill.students.selection import carve_ids, selection_key
from annodistill.students.spec import model_conditions, model_spec

TINY_GRID = {"learning_rate": [1e-3], "batch_size": [8], "epochs": [1, 2]}


# ---------------------------------------------------------------- conditions and config
def test_condition_names_roundtrip():
    names = condition_names({"human": True, "llm": True, "llm_consistency": [67, 100],
                             "soft": True}, [100, 400], ["gemma", "gpt-4o"])
    assert names == ["human-100", "human-400", "llm-gemma", "llm-gemma-cons67",
                     "llm-gemma-cons100", "soft-gemma", "llm-gpt-4o", "llm-gpt-4o-cons67",
                     "llm-gpt-4o-cons100", "soft-gpt-4o"]
    c = parse_condition("llm-gpt-4o-cons67")
    assert (c.kind, c.teacher, c.threshold) == ("llm_consistency", "gpt-4o", 67)
    assert parse_condition("soft-gpt-4o").teacher == "gpt-4o"
    assert parse_condition("human-250").n == 250
    assert [teacher_of(n) for n in names[2:6]] == ["gemma"] * 4
    with pytest.raises(InputError, match="unknown condition"):
        parse_condition("weak-1")


def test_model_restricts_conditions_and_inherits_settings():
    st = {"seeds": [1, 2], "conditions": {"llm_consistency": [67]},
          "models": {"big": {"kind": "encoder", "path": "x", "seeds": [7],
                             "grid": {"learning_rate": [1e-5], "batch_size": [8], "epochs": [1]},
                             "conditions": {"human_sizes": [1000], "llm_consistency": [],
                                            "soft": False}},
                     "tfidf": {"kind": "tfidf"}}}
    assert model_conditions(st, "big", [250, 1000], ["t"]) == ["human-1000", "llm-t"]
    assert model_conditions(st, "tfidf", [250, 1000], ["t"]) == [
        "human-250", "human-1000", "llm-t", "llm-t-cons67", "soft-t"]
    assert model_spec(st, "big")["seeds"] == [7] and model_spec(st, "tfidf")["seeds"] == [1, 2]
    with pytest.raises(InputError, match="human_sizes"):
        model_conditions({"models": {}, "conditions": {"human_sizes": [5]}}, "x", [10], [])


def test_teacher_names_one_grammar():
    assert teacher_names({}) == []
    assert teacher_names({"teachers": {"models": {"a": {}, "b": {}}}}) == ["a", "b"]
    # the teacher stage's `active` list decides which teachers label, so students follow it
    assert teacher_names({"teachers": {"models": {"a": {}, "b": {}}, "active": ["b"]}}) == ["b"]
    with pytest.raises(InputError, match="-cons<digits>"):
        teacher_names({"teachers": {"models": {"gpt-cons5": {}}}})
    # the teacher stage uses the same function
    from annodistill.teacher import spec as tspec
    assert tspec.teacher_names is teacher_names


def test_training_tables(tmp_path):
    split = make_splits(tmp_path / "splits")
    lab = stand_in_teacher(split, tmp_path / "labels_train.parquet", 120, null=0.1, seed=3)
    raw = pd.read_parquet(lab)
    kw = dict(train_pool=split / "train_pool.parquet", positive="yes", label_names=["yes", "no"])
    t = training_table(parse_condition("human-50"), **kw)
    human, c = t.train, t.counts
    assert len(human) == 50 and c["n_dropped_no_label"] == 0
    pool = pd.read_parquet(split / "train_pool.parquet").set_index("id")
    assert (human["target_0"] == (pool.loc[human["id"], "label"] == "yes").to_numpy()).all()
    np.testing.assert_allclose(t.targets(human).sum(axis=1), 1.0)

    t = training_table(parse_condition("llm-t"), teacher_labels=lab, **kw)
    llm, c = t.train, t.counts
    assert c["n_dropped_no_label"] == raw["label"].isna().sum() > 0
    assert len(llm) == raw["label"].notna().sum()
    # texts come from the pool, targets from the teacher
    merged = llm.merge(raw, on="id")
    assert (llm["text"] == pool.loc[llm["id"], "text"].to_numpy()).all()
    assert (merged["target_0"] == (merged["label_y"] == "yes")).all()
    # the base ids are every labelled text, in rank order, whatever was dropped
    assert t.base_ids == raw["id"].tolist()

    t = training_table(parse_condition("llm-t-cons100"), teacher_labels=lab, **kw)
    cons, c = t.train, t.counts
    assert len(cons) == (raw["consistency"] >= 1.0).sum()
    assert c["n_dropped_consistency"] == len(llm) - len(cons) > 0
    assert len(t.select) == len(llm)  # selection rows are never consistency-filtered

    t = training_table(parse_condition("soft-t"), teacher_labels=lab, **kw)
    soft = t.train
    assert soft["target_0"].between(0, 1).all() and not soft["target_0"].isin([0, 1]).all()
    np.testing.assert_allclose(t.targets(soft).sum(axis=1), 1.0)
    # without probabilities the positive vote share comes from label + consistency
    lab2 = stand_in_teacher(split, tmp_path / "l2.parquet", 120, null=0.1, seed=3, with_p=False)
    t2 = training_table(parse_condition("soft-t"), teacher_labels=lab2, **kw)
    assert t2.counts["n_from_consistency"] == len(t2.train)
    np.testing.assert_allclose(t2.train["target_0"].to_numpy(), soft["target_0"].to_numpy())


def test_bad_teacher_labels_are_named(tmp_path):
    split = make_splits(tmp_path / "splits")
    kw = dict(train_pool=split / "train_pool.parquet", positive="yes", label_names=["yes", "no"])
    lab = stand_in_teacher(split, tmp_path / "l.parquet", 60)
    df = pd.read_parquet(lab)
    bad = df.copy()
    bad.loc[3, "id"] = pd.read_parquet(split / "test.parquet")["id"].iloc[0]
    bad.to_parquet(tmp_path / "leak.parquet")
    with pytest.raises(InputError, match=r"leak.parquet, row \d+, field 'id': id .* not in the "
                                         r"training pool"):
        training_table(parse_condition("llm-t"), teacher_labels=tmp_path / "leak.parquet", **kw)
    bad = df.copy()
    bad.loc[2, "label"] = "maybe"
    bad.to_parquet(tmp_path / "lab.parquet")
    with pytest.raises(InputError, match="field 'label': label 'maybe'"):
        training_table(parse_condition("llm-t"), teacher_labels=tmp_path / "lab.parquet", **kw)
    df.drop(columns=["consistency"]).to_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(InputError, match="lacks column"):
        training_table(parse_condition("soft-t"), teacher_labels=tmp_path / "nocol.parquet", **kw)


def test_carve_is_seeded_label_blind_and_disjoint():
    ids = [f"r{i:04d}" for i in range(150)]
    tr, se = carve_ids(ids, fraction=0.2, seed=1)
    assert (tr, se) == carve_ids(ids, fraction=0.2, seed=1) and len(se) == 30
    assert not set(tr) & set(se) and sorted(tr + se) == ids
    assert carve_ids(ids, fraction=0.2, seed=2)[1] != se
    with pytest.raises(InputError, match="too few"):
        carve_ids(ids[:3], fraction=0.5, seed=1)


def test_constant_predictor_never_wins_selection():
    """Positive-class F1 rewards 'always positive' on mostly-positive labels; selection does not."""
    const = {"selection_macro_f1": 0.44, "selection_f1": 0.88, "selection_accuracy": 0.79,
             "selection_loss": 0.5, "selection_constant": True}
    learned = {"selection_macro_f1": 0.40, "selection_f1": 0.70, "selection_accuracy": 0.6,
               "selection_loss": 0.9, "selection_constant": False}
    for metric in ("macro_f1", "f1", "accuracy", "loss"):
        assert max([const, learned], key=lambda r: selection_key(r, metric)) is learned
    # among non-constant points the metric decides, ties by loss
    a = dict(learned, selection_macro_f1=0.6, selection_loss=0.7)
    b = dict(learned, selection_macro_f1=0.6, selection_loss=0.6)
    assert max([a, b], key=lambda r: selection_key(r, "macro_f1")) is b
    with pytest.raises(InputError, match="selection_metric"):
        selection_key(a, "auc")


def test_paired_by_construction(tmp_path):
    """Every condition of equal size trains on the same ids and selects on the same ids."""
    split = make_splits(tmp_path / "splits", n_pool=150)
    lab = stand_in_teacher(split, tmp_path / "labels_train.parquet", 150, null=0.1, seed=5)
    recs = {}
    for cond in ("human-150", "llm-t", "llm-t-cons80", "soft-t"):
        _, rec = _job(tmp_path, split, f"tfidf_{cond}", _tfidf_spec(), condition=cond,
                      labels=None if cond.startswith("human") else lab)
        recs[cond] = rec
    for seed_idx in (0, 1):
        seeds = {c: r["seeds"][seed_idx] for c, r in recs.items()}
        assert len({s["train_ids_sha256"] for s in seeds.values()}) == 1
        assert len({s["selection_ids_sha256"] for s in seeds.values()}) == 1
        # filtering (no label, low consistency) only removes items from the same ids
        assert seeds["llm-t-cons80"]["n_train"] < seeds["llm-t"]["n_train"] < \
            seeds["human-150"]["n_train"]
    # a different seed carves differently
    assert recs["llm-t"]["seeds"][0]["train_ids_sha256"] != recs["llm-t"]["seeds"][1][
        "train_ids_sha256"]
    # the used subset of the consistency condition is a subset of the llm condition's ids
    from annodistill.students.selection import carve_ids as carve

    t = training_table(parse_condition("llm-t-cons80"), train_pool=split / "train_pool.parquet",
                       label_names=["yes", "no"], positive="yes", teacher_labels=lab)
    tr_ids, _ = carve(t.base_ids, fraction=0.2, seed=1)
    used = set(t.train["id"]) & set(tr_ids)
    from annodistill.contracts import ids_digest
    assert ids_digest(used) == recs["llm-t-cons80"]["seeds"][0]["used_train_ids_sha256"]


# ---------------------------------------------------------------- jobs end to end
def _job(tmp_path, split, name, spec, condition="human-120", labels=None, test_path=None):
    out = tmp_path / name
    rec = run_job(task="topic", model_name=name.split("_")[0], condition=condition, spec=spec,
                  codebook=codebook(tmp_path), splits_dir=split,
                  out_predictions=out / "predictions.parquet", out_run=out / "run.json",
                  teacher_labels=labels, threads=1, test_path=test_path)
    return out, rec


def _tfidf_spec(**kw):
    spec = {"kind": "tfidf", "seeds": [1, 2], "grid": {"C": [0.1, 1.0, 10.0]}}
    spec.update(kw)
    return model_spec({"models": {"tfidf": spec}}, "tfidf")


def test_tfidf_every_condition_and_contract(tmp_path):
    split = make_splits(tmp_path / "splits")
    lab = stand_in_teacher(split, tmp_path / "labels_train.parquet", 150)
    test = pd.read_parquet(split / "test.parquet")
    for cond in ("human-60", "llm-t", "llm-t-cons80", "soft-t"):
        out, rec = _job(tmp_path, split, f"tfidf_{cond}", _tfidf_spec(), condition=cond,
                        labels=None if cond.startswith("human") else lab)
        pred, run = read_run(out)
        assert list(pred.columns) == PREDICTION_COLUMNS
        assert pred["seed"].dtype == "int64" and sorted(pred["seed"].unique()) == [1, 2]
        assert len(pred) == 2 * len(test) and set(pred["id"]) == set(test["id"])
        assert ((pred["p_positive"] >= 0.5) == (pred["label"] == "yes")).all()
        p_labels = pd.DataFrame([json.loads(v) for v in pred["p_labels"]])
        np.testing.assert_allclose(p_labels["yes"], pred["p_positive"])
        np.testing.assert_allclose(p_labels.sum(axis=1), 1.0)
        assert [s["seed"] for s in run["seeds"]] == [1, 2]
        s = run["seeds"][0]
        assert len(s["grid"]) == 3 and s["chosen"]["C"] in (0.1, 1.0, 10.0)
        assert s["selection_source"] == "same_source" and s["n_selection"] > 0
        best = max(s["grid"], key=lambda g: selection_key(g, "macro_f1"))
        assert best["C"] == s["chosen"]["C"]
        m = pred.merge(test, on="id")  # mean over both seeds (48 training items for human-60)
        assert accuracy_score(m["label_y"], m["label_x"]) > 0.8, cond


def test_human_validation_selection(tmp_path):
    split = make_splits(tmp_path / "splits")
    out, rec = _job(tmp_path, split, "tfidf_hv", _tfidf_spec(selection="human_validation"))
    s = rec["seeds"][0]
    assert s["selection_source"] == "human_validation"
    assert s["n_selection"] == 40 and s["n_train"] == 120


def _poisoned_tests(split, tmp_path):
    """The test set with every label flipped, and with no label column at all."""
    test = pd.read_parquet(split / "test.parquet")
    flipped = test.assign(label=np.where(test["label"] == "yes", "no", "yes"))
    flipped.to_parquet(tmp_path / "test_flipped.parquet")
    test.drop(columns=["label"]).to_parquet(tmp_path / "test_nolabel.parquet")
    return [tmp_path / "test_flipped.parquet", tmp_path / "test_nolabel.parquet"]


@pytest.mark.parametrize("kind", ["tfidf", "encoder"])
def test_test_labels_never_reach_training_or_selection(tmp_path, kind):
    split = make_splits(tmp_path / "splits", n_pool=100)
    if kind == "tfidf":
        spec = _tfidf_spec()
    else:
        spec = model_spec({"models": {"bert": {"kind": "encoder", "seeds": [3],
                                               "path": str(tiny_model(tmp_path / "m", "bert")),
                                               "grid": TINY_GRID}}}, "bert")
    out, rec = _job(tmp_path, split, f"{kind}_ref", spec, condition="human-100")
    ref = read_run(out)
    for i, poisoned in enumerate(_poisoned_tests(split, tmp_path)):
        out, rec = _job(tmp_path, split, f"{kind}_p{i}", spec, condition="human-100",
                        test_path=poisoned)
        pred, run = read_run(out)
        pd.testing.assert_frame_equal(pred, ref[0])
        assert [s["grid"] for s in run["seeds"]] == [s["grid"] for s in ref[1]["seeds"]]


ARCHS = ["bert", "roberta", "distilbert", "xlnet", "mistral"]


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_trains_through_the_same_loop(tmp_path, arch):
    split = make_splits(tmp_path / "splits", n_pool=80, n_test=40)
    folder = tiny_model(tmp_path / arch, arch)
    kind = "decoder-lora" if arch == "mistral" else "encoder"
    m = {"kind": kind, "path": str(folder), "grid": TINY_GRID, "max_length": 32,
         "seeds": [1]}
    if kind == "decoder-lora":
        m["lora"] = {"r": 4, "alpha": 8}
    lab = stand_in_teacher(split, tmp_path / "labels.parquet", 80)
    out, rec = _job(tmp_path, split, f"{arch}_soft", model_spec({"models": {arch: m}}, arch),
                    condition="soft-t", labels=lab)
    pred, run = read_run(out)
    assert len(pred) == 40 and pred["p_positive"].between(0, 1).all()
    assert pred["p_positive"].nunique() > 1
    s = run["seeds"][0]
    assert [(g["epochs"]) for g in s["grid"]] == [1, 2]
    assert s["examples"] == 3 * s["n_train"] and s["examples_per_s"] > 0  # runs of 1 and 2 epochs
    assert run["device"] == "cpu"


def test_lora_trains_adapters_and_head_only(tmp_path):
    import torch

    from annodistill.students.models import build_model

    folder = tiny_model(tmp_path / "mistral", "mistral")
    model = build_model(str(folder), {"kind": "decoder-lora", "lora": {"r": 4}}, seed=1,
                        device=torch.device("cpu"), pad_token_id=0)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(("lora_" in n) or ("score" in n) for n in names)
    assert any("score" in n for n in names) and any("lora_A" in n for n in names)


def test_determinism_identical_rerun(tmp_path):
    split = make_splits(tmp_path / "splits", n_pool=80, n_test=40)
    spec = model_spec({"models": {"bert": {"kind": "encoder", "seeds": [1, 2],
                                           "path": str(tiny_model(tmp_path / "m", "bert")),
                                           "grid": {"learning_rate": [1e-3, 3e-4],
                                                    "batch_size": [8], "epochs": [1]}}}}, "bert")
    a, _ = _job(tmp_path, split, "bert_a", spec, condition="human-80")
    b, _ = _job(tmp_path, split, "bert_b", spec, condition="human-80")
    pa, ra = read_run(a)
    pb, rb = read_run(b)
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)
    assert [s["grid"] for s in ra["seeds"]] == [s["grid"] for s in rb["seeds"]]
    # different seeds give different models
    assert not np.array_equal(pa[pa.seed == 1]["p_positive"], pa[pa.seed == 2]["p_positive"])


def test_shared_epochs_is_opt_in(tmp_path):
    split = make_splits(tmp_path / "splits", n_pool=60, n_test=30)
    spec = model_spec({"models": {"bert": {"kind": "encoder", "share_epochs": True,
                                           "path": str(tiny_model(tmp_path / "m", "bert")),
                                           "grid": TINY_GRID}}}, "bert")
    _, rec = _job(tmp_path, split, "bert_shared", spec, condition="human-60")
    s = rec["seeds"][0]
    assert [g["epochs"] for g in s["grid"]] == [1, 2]
    assert s["examples"] == 2 * s["n_train"]  # one 2-epoch run scored after epoch 1 and 2


def test_independent_epoch_runs_by_default(tmp_path):
    split = make_splits(tmp_path / "splits", n_pool=60, n_test=30)
    spec = model_spec({"models": {"bert": {"kind": "encoder",
                                           "path": str(tiny_model(tmp_path / "m", "bert")),
                                           "grid": TINY_GRID}}}, "bert")
    _, rec = _job(tmp_path, split, "bert_ind", spec, condition="human-60")
    s = rec["seeds"][0]
    assert [g["epochs"] for g in s["grid"]] == [1, 2]
    assert s["examples"] == 3 * s["n_train"]  # 1 + 2 epochs, two runs


def test_minilm_end_to_end_cli(tmp_path):
    """The real offline student (all-MiniLM-L6-v2) through the CLI on a small learnable sample."""
    split = make_splits(tmp_path / "splits", n_pool=150, n_test=80)
    from conftest import codebook_dict, write_codebook

    cb = write_codebook(tmp_path / "tasks", codebook_dict("topic", "raw.csv"))
    spec = model_spec({"models": {"minilm": {"kind": "encoder", "path": MINILM, "max_length": 32,
                                             "grid": {"learning_rate": [2e-4], "batch_size": [16],
                                                      "epochs": [2, 3]}}}}, "minilm")
    import json

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "students", "train",
                           "--task", "topic", "--model-name", "minilm", "--condition", "human-150",
                           "--spec", json.dumps(spec), "--codebook", str(cb),
                           "--splits-dir", str(split), "--predictions",
                           str(out / "predictions.parquet"), "--run-json", str(out / "run.json"),
                           "--threads", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pred, run = read_run(out)
    test = pd.read_parquet(split / "test.parquet")
    m = pred.merge(test, on="id")
    assert accuracy_score(m["label_y"], m["label_x"]) >= 0.9
    assert run["seeds"][0]["n_train"] == 120 and run["kind"] == "encoder"


def test_cli_bad_input_is_one_line(tmp_path):
    split = make_splits(tmp_path / "splits")
    from conftest import codebook_dict, write_codebook

    cb = write_codebook(tmp_path / "tasks", codebook_dict("topic", "raw.csv"))
    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "students", "train",
                           "--task", "topic", "--model-name", "tfidf", "--condition", "llm-t",
                           "--spec", '{"kind": "tfidf"}', "--codebook", str(cb),
                           "--splits-dir", str(split), "--teacher-labels",
                           str(tmp_path / "missing.parquet"), "--predictions",
                           str(tmp_path / "o/p.parquet"), "--run-json", str(tmp_path / "o/r.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "missing.parquet: teacher labels not found" in proc.stderr
    assert not (tmp_path / "o" / "p.parquet").exists()


def test_save_models_only_when_asked(tmp_path):
    split = make_splits(tmp_path / "splits", n_pool=60, n_test=30)
    out, rec = _job(tmp_path, split, "tfidf_nosave", _tfidf_spec(), condition="human-60")
    assert not list(out.glob("model-seed*")) and "model_dir" not in rec["seeds"][0]
    spec = model_spec({"models": {"bert": {"kind": "encoder", "save_models": True,
                                           "path": str(tiny_model(tmp_path / "m", "bert")),
                                           "grid": {"learning_rate": [1e-3], "batch_size": [8],
                                                    "epochs": [1]}}}}, "bert")
    out, rec = _job(tmp_path, split, "bert_save", spec, condition="human-60")
    saved = out / "model-seed1"
    assert rec["seeds"][0]["model_dir"] == str(saved)
    assert (saved / "config.json").exists() and (saved / "tokenizer_config.json").exists()
    # the saved weights are the winner: reloading them reproduces the test predictions
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(saved)
    model = AutoModelForSequenceClassification.from_pretrained(saved).eval()
    test = pd.read_parquet(split / "test.parquet")
    with torch.inference_mode():
        enc = tok(test["text"].tolist()[:5], padding=True, return_tensors="pt")
        p = torch.softmax(model(**enc).logits, -1)[:, model.config.label2id["yes"]].numpy()
    assert model.config.id2label == {0: "yes", 1: "no"}  # the codebook's labels, in order
    pred, _ = read_run(out)
    np.testing.assert_allclose(pred["p_positive"].to_numpy()[:5], p, rtol=1e-4, atol=1e-5)


def test_fake_gpu_falls_back_to_cpu_with_one_line(monkeypatch, caplog):
    import torch

    from annodistill.students.models import choose_device

    if torch.cuda.is_available():
        pytest.skip("a real GPU is present")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level("WARNING"):
        assert choose_device().type == "cpu"
    assert [r.getMessage() for r in caplog.records] == [
        "CUDA_VISIBLE_DEVICES=0 but torch sees no usable GPU: training on CPU"]
    with pytest.raises(InputError, match="no usable GPU"):
        choose_device("cuda")


def test_consistency_threshold_in_whole_percent(tmp_path):
    split = make_splits(tmp_path / "splits")
    lab = pd.DataFrame({"id": pd.read_parquet(split / "train_pool.parquet")["id"][:3],
                        "label": ["yes", "no", "yes"], "consistency": [1 / 3, 2 / 3, 1.0],
                        "p_positive": [None, None, None]})
    lab.to_parquet(tmp_path / "l.parquet")
    kw = dict(train_pool=split / "train_pool.parquet", positive="yes", label_names=["yes", "no"],
              teacher_labels=tmp_path / "l.parquet")
    assert len(training_table(parse_condition("llm-t-cons67"), **kw).train) == 2
    assert len(training_table(parse_condition("llm-t-cons100"), **kw).train) == 1
    t = training_table(parse_condition("soft-t"), **kw)
    np.testing.assert_allclose(t.train["target_0"], [1 / 3, 1 / 3, 1.0])
    assert t.counts["n_from_consistency"] == 3


def test_single_class_teacher_labels_give_a_recorded_constant_student(tmp_path):
    """A teacher that answers one label to everything: no crash, a constant student, recorded."""
    split = make_splits(tmp_path / "splits")
    lab = stand_in_teacher(split, tmp_path / "labels_train.parquet", 150, flip=0.0, null=0.0)
    df = pd.read_parquet(lab)
    df["label"], df["consistency"], df["p_positive"] = "yes", 1.0, 1.0
    df.to_parquet(lab, index=False)
    out, rec = _job(tmp_path, split, "tfidf_allyes", _tfidf_spec(), condition="llm-t", labels=lab)
    pred, run = read_run(out)
    assert (pred["label"] == "yes").all() and (pred["p_positive"] == 1.0).all()
    assert all(s["chosen"]["degenerate"] == "single-class training labels" for s in run["seeds"])
    assert all(s["degenerate"] == "one predicted class" for s in run["seeds"])


# ---------------------------------------------------------------- K > 2 labels
def _three_class(tmp_path):
    """Splits with a learnable 3-label scheme (tax / sport / other) and a stand-in teacher whose
    p_labels are soft K-vectors."""
    from annodistill.config import codebook_from_dict

    split = make_splits(tmp_path / "splits", n_pool=150, n_test=60)
    for name in ("train_pool", "validation", "test"):
        df = pd.read_parquet(split / f"{name}.parquet")
        df["label"] = np.where(df["label"] == "yes", "tax",
                               np.where(df["text"].str.contains("football|concert"), "leisure",
                                        "other"))
        df.to_parquet(split / f"{name}.parquet", index=False)
    pool = pd.read_parquet(split / "train_pool.parquet")
    rng = np.random.default_rng(0)
    labels = ["tax", "leisure", "other"]
    rows = []
    for _, r in pool.iterrows():
        p = np.full(3, 0.1)
        p[labels.index(r["label"])] = 0.8
        p = rng.dirichlet(p * 20)
        rows.append({"id": r["id"], "label": labels[int(p.argmax())],
                     "consistency": float(p.max()), "p_positive": None,
                     "p_labels": json.dumps(dict(zip(labels, map(float, p))))})
    lab = tmp_path / "labels_train.parquet"
    pd.DataFrame(rows).to_parquet(lab, index=False)
    cb = codebook_from_dict({
        "name": "topic3", "description": "What is the text about?",
        "source": {"path": "raw.csv", "format": "csv", "id_column": "id", "text_column": "text",
                   "label": {"column": "code", "map": {"0": "tax", "1": "leisure", "2": "other"}}},
        "labels": [{"name": n, "definition": n, "verbalizer": n} for n in labels],
        "positive": "tax"},  # named: one-vs-rest numbers in evaluation; students stay 3-way
        "topic3.yaml", expected_name="topic3")
    return split, lab, cb, labels


@pytest.mark.parametrize("kind", ["tfidf", "encoder"])
def test_three_labels_every_condition(tmp_path, kind):
    split, lab, cb, labels = _three_class(tmp_path)
    if kind == "tfidf":
        spec = _tfidf_spec(class_weight="balanced")
    else:
        spec = model_spec({"models": {"bert": {"kind": "encoder", "seeds": [1],
                                               "path": str(tiny_model(tmp_path / "m", "bert")),
                                               "grid": TINY_GRID}}}, "bert")
    test = pd.read_parquet(split / "test.parquet")
    for cond in ("human-150", "llm-t", "soft-t"):
        out = tmp_path / f"{kind}_{cond}"
        rec = run_job(task="topic3", model_name=kind, condition=cond, spec=spec, codebook=cb,
                      splits_dir=split, out_predictions=out / "predictions.parquet",
                      out_run=out / "run.json", teacher_labels=None if cond == "human-150"
                      else lab)
        pred, run = read_run(out)
        assert list(pred.columns) == PREDICTION_COLUMNS and pred["p_positive"].isna().all()
        probs = pd.DataFrame([json.loads(v) for v in pred["p_labels"]])[labels].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        assert (np.array(labels)[probs.argmax(axis=1)] == pred["label"]).all()
        assert set(pred["label"]) <= set(labels)
        s = rec["seeds"][0]
        assert s["chosen"]["selection_metric"] == "macro_f1"
        assert abs(sum(s["train_label_shares"].values()) - 1) < 1e-9
        if kind == "tfidf":
            m = pred[pred.seed == 1].merge(test, on="id")
            assert accuracy_score(m["label_y"], m["label_x"]) > 0.8, cond
    # soft K-vector targets reach training as distributions
    t = training_table(parse_condition("soft-t"), train_pool=split / "train_pool.parquet",
                       label_names=labels, teacher_labels=lab)
    y = t.targets(t.train)
    assert y.shape[1] == 3 and not np.isin(y, (0.0, 1.0)).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    assert t.counts["n_from_p_labels"] == len(t.train)


def test_balanced_class_weights_hard_and_soft_alike():
    from sklearn.utils.class_weight import compute_class_weight

    from annodistill.students.conditions import class_weights

    hard = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], float)
    np.testing.assert_allclose(class_weights(hard, "balanced"),
                               compute_class_weight("balanced", classes=np.array([0, 1]),
                                                    y=np.array([0, 0, 0, 1])))
    soft = np.array([[0.75, 0.25]] * 4)  # the same label mass, spread as distributions
    np.testing.assert_allclose(class_weights(soft, "balanced"), class_weights(hard, "balanced"))
    np.testing.assert_allclose(class_weights(soft, None), [1, 1])
