"""Codebooks with K >= 2 labels: codebook checks, ingest of real files (drop, compressed inputs,
per-coder ratings), per-class metrics and agreement against the libraries, and a three-class task
through the teacher stage on the loopback server."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_codebook
from fake_openai_server import FakeOpenAI
from sklearn.metrics import (cohen_kappa_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from annodistill import agreement as ag
from annodistill.config import codebook_from_dict, load_codebook
from annodistill.data.ingest import ingest, read_coders
from annodistill.errors import InputError
from annodistill.evaluate import metrics as M

LABELS3 = ["against", "neutral", "favour"]


def stance_codebook(path="raw/stance.csv", fmt="csv", positive=None, **label) -> dict:
    cb = {"name": "stance", "description": "The stance of the text towards the policy.",
          "source": {"path": path, "format": fmt, "id_column": "id", "text_column": "text",
                     "label": {"column": "code", **(label or {"map": {"0": "against",
                                                                       "1": "neutral",
                                                                       "2": "favour"}})}},
          "labels": [{"name": n, "definition": f"the text is {n}", "verbalizer": n}
                     for n in LABELS3]}
    if positive:
        cb["positive"] = positive
    return cb


# ---- codebook ------------------------------------------------------------------------------

def test_positive_optional_for_k3_required_for_binary():
    cb = codebook_from_dict(stance_codebook(), "stance.yaml")
    assert cb.positive is None and not cb.is_binary and cb.label_names == LABELS3
    assert codebook_from_dict(stance_codebook(positive="favour"), "x").positive == "favour"
    binary = stance_codebook()
    binary["labels"] = binary["labels"][:2]
    binary["source"]["label"] = {"column": "code", "map": {"0": "against", "1": "neutral"}}
    with pytest.raises(InputError, match="binary codebook needs `positive`") as e:
        codebook_from_dict(binary, "b.yaml")
    assert "\n" not in str(e.value) and "b.yaml" in str(e.value)
    with pytest.raises(InputError, match="not one of the labels"):
        codebook_from_dict(stance_codebook(positive="maybe"), "x")


@pytest.mark.parametrize("label, match", [
    ({"map": {"0": "against", "1": "neutral", "2": "favour"}, "drop": ["2"]}, "mapped and dropped"),
    ({"map": {"0": "against", "1": "other"}}, "produces 'other'"),
    ({"bins": [{"label": "against", "below": 1}, {"label": "favour", "below": 0},
               {"label": "neutral"}]}, "must increase"),
    ({"bins": [{"label": "against", "below": 1}, {"label": "favour"}, {"label": "neutral"}]},
     "every entry but the last"),
    ({"threshold": {"at_most": 0, "then": "against", "else": "favour"}, "drop": ["x"]},
     "(`drop` applies to a `map`|oneOf|valid)"),
])
def test_label_rule_errors_are_one_line(label, match):
    with pytest.raises(InputError, match=match) as e:
        codebook_from_dict(stance_codebook(**label), "c.yaml")
    assert "\n" not in str(e.value) and "c.yaml" in str(e.value)


# ---- ingest: drop, bins, compressed files --------------------------------------------------

def _raw_rows(n=30):
    rng = np.random.default_rng(0)
    return [{"id": f"i{k}", "text": f"text number {k}", "code": str(rng.integers(0, 4))}
            for k in range(n)]


def _csv(rows, sep=","):
    return "id{0}text{0}code\n".format(sep) + "".join(
        f"{r['id']}{sep}{r['text']}{sep}{r['code']}\n" for r in rows)


def test_drop_counts_rows_outside_the_study(tmp_path):
    rows = _raw_rows()
    (tmp_path / "s.csv").write_text(_csv(rows))
    cb = codebook_from_dict(stance_codebook(map={"0": "against", "1": "neutral", "2": "favour"},
                                            drop=["3"]), "s.yaml")
    df, summary = ingest(cb, tmp_path / "s.csv")
    n3 = sum(r["code"] == "3" for r in rows)
    assert n3 > 0 and summary["dropped_by_label_map"] == n3 and len(df) == len(rows) - n3
    assert set(df["label"]) <= set(LABELS3) and summary["positive_share"] is None
    assert sum(summary["label_counts"].values()) == len(df)
    # a value neither mapped nor dropped names file, row and field
    rows[4]["code"] = "7"
    (tmp_path / "s.csv").write_text(_csv(rows))
    with pytest.raises(InputError) as e:
        ingest(cb, tmp_path / "s.csv")
    msg = str(e.value)
    assert "s.csv" in msg and "6" in msg and "code" in msg and "dropped" in msg and "\n" not in msg


def test_bins_map_a_number_to_k_labels(tmp_path):
    (tmp_path / "b.csv").write_text("id,text,code\na,one,-2\nb,two,0\nc,three,0.5\nd,four,3\n")
    cb = codebook_from_dict(stance_codebook(bins=[{"label": "against", "below": -0.5},
                                                  {"label": "neutral", "below": 0.5},
                                                  {"label": "favour"}]), "b.yaml")
    df, _ = ingest(cb, tmp_path / "b.csv")
    assert df["label"].tolist() == ["against", "neutral", "favour", "favour"]


def _compress(path, kind, data: bytes):
    if kind == "gz":
        path.write_bytes(gzip.compress(data))
    elif kind == "bz2":
        path.write_bytes(bz2.compress(data))
    elif kind == "xz":
        path.write_bytes(lzma.compress(data))
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("inner/data.txt", data)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zip"])
def test_compressed_inputs_read_directly(tmp_path, fmt, kind):
    rows = [r for r in _raw_rows() if r["code"] != "3"]
    if fmt == "jsonl":
        data = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        data = _csv(rows, "\t" if fmt == "tsv" else ",")
    plain = tmp_path / f"plain.{fmt}"
    plain.write_text(data)
    packed = tmp_path / f"packed.{fmt}.{kind}"
    _compress(packed, kind, data.encode())
    cb = codebook_from_dict(stance_codebook(fmt=fmt), "c.yaml")
    want, _ = ingest(cb, plain)
    got, summary = ingest(cb, packed)
    pd.testing.assert_frame_equal(got, want)
    assert summary["n_clean"] == len(rows)


def test_compressed_errors_name_file_and_row(tmp_path):
    cb = codebook_from_dict(stance_codebook(), "c.yaml")
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(b"id,text,code\na,one,0\nb,two\n"))
    with pytest.raises(InputError, match=r"bad\.csv\.gz.*row 3") as e:
        ingest(cb, bad)
    assert "\n" not in str(e.value)
    two = tmp_path / "two.csv.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", "id,text,code\n")
        zf.writestr("b.csv", "id,text,code\n")
    with pytest.raises(InputError, match=r"two\.csv\.zip.*exactly one file.*2 \(a\.csv, b\.csv\)") as e:
        ingest(cb, two)
    assert "\n" not in str(e.value)
    broken = tmp_path / "broken.csv.xz"
    broken.write_bytes(b"not xz at all")
    with pytest.raises(InputError, match=r"broken\.csv\.xz.*cannot decompress"):
        ingest(cb, broken)


def test_compressed_parquet(tmp_path):
    df = pd.DataFrame(_raw_rows())
    df = df[df["code"] != "3"]
    df.to_parquet(tmp_path / "p.parquet", index=False)
    (tmp_path / "p.parquet.gz").write_bytes(gzip.compress((tmp_path / "p.parquet").read_bytes()))
    cb = codebook_from_dict(stance_codebook(fmt="parquet"), "c.yaml")
    pd.testing.assert_frame_equal(ingest(cb, tmp_path / "p.parquet.gz")[0],
                                  ingest(cb, tmp_path / "p.parquet")[0])


# ---- per-coder ratings -----------------------------------------------------------------------

def _coders_cb(**coders):
    cb = stance_codebook()
    cb["source"]["coders"] = {"path": "raw/ratings.tsv", "format": "tsv", "header": False,
                              "columns": ["id", "mean", "sd", "ratings"], "id_column": "id",
                              "ratings": "list", "list_column": "ratings",
                              "label": {"bins": [{"label": "against", "below": -0.5},
                                                 {"label": "neutral", "below": 0.5},
                                                 {"label": "favour"}]}}
    cb["source"]["coders"].update(coders)
    cb["source"]["coders"] = {k: v for k, v in cb["source"]["coders"].items() if v is not None}
    return codebook_from_dict(cb, "c.yaml")


def test_coders_list_file_like_vader(tmp_path):
    # VADER's *_anonDataRatings.txt: id, mean, sd, a Python/JSON list of ratings (a BOM first)
    (tmp_path / "r.tsv").write_text("\ufeffa\t1\t0\t[1, 2, -1]\nb\t0\t0\t[0, 0]\n"
                                    "zz\t0\t0\t[0, 1]\n", encoding="utf-8")
    df, s = read_coders(_coders_cb(), tmp_path / "r.tsv", ["a", "b", "c"])
    assert df.columns.tolist() == ["id", "coder", "label"]
    assert df[df["id"] == "a"]["label"].tolist() == ["favour", "favour", "against"]
    assert s["n_items"] == 2 and s["n_rows_not_in_clean"] == 1 and s["n_ratings"] == 5
    (tmp_path / "bad.tsv").write_text("a\t1\t0\t[1, x]\n")
    with pytest.raises(InputError, match=r"bad\.tsv.*row 1.*ratings"):
        read_coders(_coders_cb(), tmp_path / "bad.tsv", ["a"])


def test_coders_long_and_wide(tmp_path):
    (tmp_path / "long.csv").write_text("item,who,r\na,c1,-1\na,c2,1\nb,c1,0\n")
    cb = _coders_cb(path="raw/long.csv", format="csv", header=True, ratings="long",
                    coder_column="who", rating_column="r", id_column="item", columns=None,
                    list_column=None)
    df, _ = read_coders(cb, tmp_path / "long.csv", ["a", "b"])
    assert df.values.tolist() == [["a", "c1", "against"], ["a", "c2", "favour"],
                                  ["b", "c1", "neutral"]]
    with pytest.raises(InputError, match="needs `rating_columns`"):
        _coders_cb(ratings="wide")


# ---- metrics against scikit-learn --------------------------------------------------------------

def _random(k, n, rng, missing=0.05):
    labels = tuple(f"c{i}" for i in range(k))
    y = rng.choice(np.array(labels, dtype=object), n)
    p = np.where(rng.random(n) < 0.6, y, rng.choice(np.array(labels, dtype=object), n))
    p = np.array([None if rng.random() < missing else v for v in p], dtype=object)
    return labels, y, p


@pytest.mark.parametrize("k", [3, 4, 6])
def test_per_class_and_confusion_match_sklearn(k):
    rng = np.random.default_rng(k)
    for rep in range(5):
        labels, y, p = _random(k, 80, rng)
        scheme = M.Scheme(labels)
        pp = np.array([v if v is not None else "none" for v in p], dtype=object)
        rows = M.per_class_scores(y, p, scheme, M.Bootstrap(50, seed=rep))
        P, R, F, S = precision_recall_fscore_support(y, pp, labels=list(labels), average=None,
                                                     zero_division=np.nan)
        for i, r in enumerate(rows):
            assert r["class"] == labels[i] and r["support"] == S[i]
            np.testing.assert_allclose([r["precision"], r["recall"], r["f1"]], [P[i], R[i], F[i]],
                                       equal_nan=True)
            assert r["f1_lo"] <= r["f1"] <= r["f1_hi"]
        macro = M.sklearn_scores(y, p, scheme)
        assert macro["f1"] == pytest.approx(f1_score(y, pp, labels=list(labels), average="macro"))
        assert macro["accuracy"] == pytest.approx(np.mean(y == pp))
        cells = M.confusion(y, p, scheme)
        cm = confusion_matrix(y, pp, labels=list(labels) + ["none"])
        got = np.array([c["n"] for c in cells]).reshape(k, k + 1)
        np.testing.assert_array_equal(got, cm[:k])


def test_vectorised_per_class_equals_sklearn_on_resamples():
    rng = np.random.default_rng(1)
    labels, y, p = _random(4, 60, rng)
    scheme = M.Scheme(labels)
    yt, yp = scheme.encode(list(y)), scheme.encode(list(p))
    idx = rng.integers(0, 60, size=(20, 60))
    batch = M.coded_per_class(yt[idx], yp[idx], 4)
    for b in range(20):
        ref = M.sklearn_per_class(y[idx[b]], p[idx[b]], scheme)
        np.testing.assert_allclose(batch[b], np.stack([ref[m] for m in M.CLASS_METRICS], -1),
                                   equal_nan=True)


def test_per_class_gap_point_is_difference_of_seed_means():
    rng = np.random.default_rng(2)
    labels, y, _ = _random(3, 70, rng)
    scheme = M.Scheme(labels)
    a = [_random(3, 70, rng)[2] for _ in range(2)]
    b = [_random(3, 70, rng)[2]]
    rows = M.paired_gap_per_class(y, a, b, scheme, M.Bootstrap(100))
    for r in rows:
        i = labels.index(r["class"])
        va = np.nanmean([M.sklearn_per_class(y, x, scheme)[r["metric"]][i] for x in a])
        vb = M.sklearn_per_class(y, b[0], scheme)[r["metric"]][i]
        assert r["gap"] == pytest.approx(va - vb)
        assert r["gap_lo"] <= r["gap_hi"]


def test_binary_scheme_needs_positive():
    with pytest.raises(ValueError):
        M.Scheme(("a", "b"))
    assert M.Scheme(("a", "b", "c")).headline_metric.startswith("macro-F1")


# ---- agreement against the libraries ---------------------------------------------------------

def test_pair_agreement_matches_sklearn_and_krippendorff():
    import krippendorff

    rng = np.random.default_rng(3)
    labels, y, p = _random(3, 90, rng, missing=0.1)
    out = ag.pair_agreement(list(p), list(y), list(labels), ag.Resampling(200, seed=0))
    both = np.array([v is not None for v in p])
    assert out["n"] == both.sum() and out["n_missing"] == (~both).sum()
    assert out["kappa"] == pytest.approx(cohen_kappa_score(y[both], p[both].astype(str)))
    code = {lab: i for i, lab in enumerate(labels)}
    rel = np.array([[code[v] if v is not None else np.nan for v in p],
                    [code[v] for v in y]], dtype=float)
    assert out["alpha"] == pytest.approx(krippendorff.alpha(reliability_data=rel,
                                                            level_of_measurement="nominal"))
    assert out["kappa_lo"] <= out["kappa"] <= out["kappa_hi"]
    assert out["alpha_lo"] <= out["alpha"] <= out["alpha_hi"]


def test_coders_agreement_matches_krippendorff_and_statsmodels():
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    rng = np.random.default_rng(4)
    labels = ["a", "b", "c"]
    truth = rng.integers(0, 3, 40)
    rows = []
    for i, t in enumerate(truth):
        for c in range(5 if i % 3 else 7):  # unequal numbers of ratings per item
            lab = t if rng.random() < 0.7 else rng.integers(0, 3)
            rows.append((f"i{i}", f"c{c}", labels[lab]))
    coders = pd.DataFrame(rows, columns=["id", "coder", "label"])
    ids = [f"i{i}" for i in range(40)]
    out = ag.coders_agreement(coders, ids, labels, ag.Resampling(100, seed=1))
    table = ag.count_table(coders, ids, labels)
    assert out["alpha"] == pytest.approx(krippendorff.alpha(value_counts=table,
                                                            level_of_measurement="nominal"))
    eq, m = ag.equal_raters(table, seed=1)
    assert m == 5 and (eq.sum(axis=1) == 5).all() and (eq <= table).all()
    assert out["kappa"] == pytest.approx(fleiss_kappa(eq, method="fleiss"))
    assert out["alpha_lo"] <= out["alpha"] <= out["alpha_hi"]
    # equal counts: no subsampling, Fleiss' kappa of the full table
    five = coders[coders["coder"].isin([f"c{c}" for c in range(5)])]
    t5 = ag.count_table(five, ids, labels)
    assert ag.equal_raters(t5, 0)[0].tolist() == t5.tolist()


# ---- a three-class task through the teacher stage ----------------------------------------------

def _three_class_task(tmp, n_val=30, n_test=24):
    rng = np.random.default_rng(5)
    words = {"against": "ban", "neutral": "report", "favour": "support"}
    rows = []
    for i in range(n_val + n_test):
        lab = LABELS3[rng.integers(0, 3)]
        rows.append({"id": f"s{i:03d}", "text": f"people {words[lab]} the plan {i}",
                     "label": lab})
    df = pd.DataFrame(rows)
    d = tmp / "splits"
    d.mkdir(parents=True)
    df.iloc[:n_val].to_parquet(d / "validation.parquet", index=False)
    df.iloc[n_val:].to_parquet(d / "test.parquet", index=False)
    cb = stance_codebook()
    cb["prompt"] = {"instruction": "What is the stance? Answer against, neutral or favour.",
                    "item_prefix": "Text: ", "answer_prefix": "Stance:"}
    return write_codebook(tmp / "config" / "tasks", cb), d


def _strict_json(path):
    def bad(x):
        raise ValueError(f"non-standard JSON constant {x} in {path}")
    return json.loads(path.read_text(), parse_constant=bad)


@pytest.mark.parametrize("mode, logprobs", [("completion", True), ("chat", False)])
def test_three_class_task_through_the_teacher_stage(tmp_path, mode, logprobs):
    from teacher_helpers import env, label_cmd, spec_dict

    cb, splits = _three_class_task(tmp_path)
    out = tmp_path / "out"
    # the fake model answers 'against' for 'ban', 'favour' for 'support', else 'neutral'
    with FakeOpenAI(verbs=("against", "favour", "neutral"), keywords=("ban", "support"),
                    noise=0.15) as srv:
        spec = spec_dict(srv.base_url, mode=mode, logprobs=logprobs, structured=mode == "chat",
                         top_logprobs=5, samples=3, few_shot=3)
        for split in ("validation", "test"):
            proc = subprocess.run(label_cmd(spec, cb, splits, split, out, tmp_path / "cache"),
                                  capture_output=True, text=True, env=env(), cwd=ROOT)
            assert proc.returncode == 0, proc.stderr[-3000:]
        gate = subprocess.run(
            [sys.executable, "-m", "annodistill.cli", "teacher", "gate", "--spec",
             json.dumps({**spec, "gate": {"min_f1": 0.3}}), "--codebook", str(cb),
             "--labels", str(out / "labels_validation.parquet"), "--validation",
             str(splits / "validation.parquet"), "--out", str(out / "gate.json")],
            capture_output=True, text=True, env=env(), cwd=ROOT)
        assert gate.returncode == 0, gate.stderr[-3000:]
    lab = pd.read_parquet(out / "labels_test.parquet")
    assert set(lab["label"].dropna()) <= set(LABELS3) and lab["label"].notna().all()
    assert lab["p_positive"].isna().all()  # no positive class named
    for s, src in zip(lab["p_labels"], lab["p_source"]):
        p = json.loads(s)
        assert list(p) == LABELS3 and sum(p.values()) == pytest.approx(1.0)
        assert src == ("logprobs" if logprobs else "votes")
    # the modal label has the largest probability
    for s, label in zip(lab["p_labels"], lab["label"]):
        p = json.loads(s)
        assert p[label] == max(p.values())
    if logprobs:  # the fake puts 0.8 on its answer and 0.1 on each other verbalizer
        assert any(json.loads(s)[lab_] == pytest.approx(0.8) for s, lab_ in
                   zip(lab["p_labels"], lab["label"]))
    g = _strict_json(out / "gate.json")
    val = pd.read_parquet(splits / "validation.parquet")
    tl = pd.read_parquet(out / "labels_validation.parquet").merge(
        val[["id", "label"]].rename(columns={"label": "human"}), on="id")
    pred = tl["label"].fillna("none").astype(str)
    assert g["headline_metric"] == "macro-F1"
    assert g["f1"] == pytest.approx(f1_score(tl["human"], pred, labels=LABELS3, average="macro"))
    assert g["macro_f1"] == g["f1"] and set(g["per_class"]) == set(LABELS3)
    assert g["kappa"] == pytest.approx(cohen_kappa_score(tl["human"][pred != "none"],
                                                         pred[pred != "none"]))
    assert g["agreement"]["kappa_ci"][0] <= g["kappa"] <= g["agreement"]["kappa_ci"][1]
    assert g["passed"] and g["positive"] is None and "auc_p_positive" not in g


def test_binary_p_labels_agree_with_p_positive(tmp_path):
    from teacher_helpers import make_task, run_label, spec_dict

    cb, splits = make_task(tmp_path, n_test=12)
    with FakeOpenAI() as srv:
        run_label(spec_dict(srv.base_url, logprobs=True, top_logprobs=5), cb, splits, "test",
                  tmp_path / "out", tmp_path / "cache")
    lab = pd.read_parquet(tmp_path / "out" / "labels_test.parquet")
    for s, pp in zip(lab["p_labels"], lab["p_positive"]):
        p = json.loads(s)
        assert list(p) == ["yes", "no"] and sum(p.values()) == pytest.approx(1.0)
        assert p["yes"] == pytest.approx(pp)


def test_vader_codebooks_have_coders():
    for path in sorted((ROOT / "config" / "tasks").glob("vader_*.yaml")):
        cb = load_codebook(path)
        assert cb.coders is not None and cb.coders["path"].endswith("_anonDataRatings.txt")
        assert yaml.safe_load(path.read_text())["source"]["coders"]["ratings"] == "list"


# ---- evaluation of a three-class task with coders; a mixed study -------------------------------

def test_evaluate_task_three_classes_with_coders(tmp_path):
    import krippendorff
    from evaluate_synthetic import write_task as write_eval_task

    from annodistill.evaluate.task import TaskInputs, evaluate_task

    labels = ("pos", "neg", "neutral")
    p = write_eval_task(tmp_path, "tri", n_test=60, n_pool=120, human_sizes=(100,),
                        llm_size=100, seeds=(0, 1), models=("bert",), labels=labels)
    test = pd.read_parquet(p["test"])
    rng = np.random.default_rng(0)
    rows = [(i, f"c{c}", lab if rng.random() < 0.8 else labels[rng.integers(0, 3)])
            for i, lab in zip(test["id"], test["label"]) for c in range(4)]
    coders = pd.DataFrame(rows, columns=["id", "coder", "label"])
    coders.to_parquet(tmp_path / "coders.parquet", index=False)
    res = evaluate_task(TaskInputs(task="tri", test=str(p["test"]), scheme=M.Scheme(labels),
                                   predictions=[str(x) for x in p["predictions"]],
                                   teacher_test=[str(x) for x in p["teacher_test"]],
                                   llm_train_size=100, coders=str(tmp_path / "coders.parquet")),
                        M.Bootstrap(100))
    m = res.metrics
    assert (m["task_type"] == "multiclass").all() and (m["headline_metric"].str.startswith("macro")).all()
    # per class: one row per run and class; the confusion matrix of each run sums to the test set
    assert len(res.per_class) == len(m) * 3
    sums = res.confusion.groupby(["model", "condition", "seed"], dropna=False)["n"].sum()
    assert (sums == len(test)).all()
    pred = pd.read_parquet(p["predictions"][0])
    run = pred[pred["seed"] == 0].set_index("id").loc[test["id"], "label"]
    model, cond = p["predictions"][0].parent.parent.name, p["predictions"][0].parent.name
    pc = res.per_class[(res.per_class["model"] == model) & (res.per_class["condition"] == cond)
                       & (res.per_class["seed"] == 0)].set_index("class")
    P, R, F, _ = precision_recall_fscore_support(test["label"], run, labels=list(labels),
                                                 average=None, zero_division=np.nan)
    np.testing.assert_allclose(pc.loc[list(labels), "recall"], R)
    assert set(res.gaps_per_class["class"]) == set(labels)
    # agreement: the teacher against the humans, and the coders among themselves
    a = res.agreement.set_index("kind")
    teach = pd.read_parquet(p["teacher_test"][0]).set_index("id").loc[test["id"], "label"]
    ok = teach.notna().to_numpy()
    assert a.loc["teacher-human", "kappa"] == pytest.approx(
        cohen_kappa_score(test["label"][ok], teach[ok].astype(str)))
    table = ag.count_table(coders, test["id"], list(labels))
    assert a.loc["human-human", "alpha"] == pytest.approx(
        krippendorff.alpha(value_counts=table, level_of_measurement="nominal"))
    assert a.loc["human-human", "n"] == len(test)
    assert a.loc["human-human", "kappa_method"].startswith("Fleiss (4 ratings")


def test_mixed_study_summarises_each_task_type(tmp_path):
    from evaluate_synthetic import write_task as write_eval_task

    from annodistill.evaluate.summary import SummaryInputs, build_summary
    from annodistill.evaluate.task import TaskInputs, evaluate_task

    files: dict[str, list[str]] = {}
    for i, (t, labels) in enumerate((("b1", ("yes", "no")), ("b2", ("yes", "no")),
                                     ("m1", ("a", "b", "c")), ("m2", ("a", "b", "c", "d")))):
        p = write_eval_task(tmp_path, t, seed=i, n_test=60, n_pool=120, human_sizes=(100,),
                            llm_size=100, seeds=(0,), models=("bert",), labels=labels,
                            positive=labels[0])
        scheme = M.Scheme(labels, labels[0] if len(labels) == 2 else None)
        res = evaluate_task(TaskInputs(task=t, test=str(p["test"]), scheme=scheme,
                                       predictions=[str(x) for x in p["predictions"]],
                                       teacher_test=[str(x) for x in p["teacher_test"]],
                                       llm_train_size=100), M.Bootstrap(50))
        for name in ("metrics", "gaps", "per_class", "gaps_per_class", "agreement"):
            f = tmp_path / t / f"{name}.csv"
            f.parent.mkdir(exist_ok=True)
            getattr(res, name).to_csv(f, index=False)
            files.setdefault(name, []).append(str(f))
    out = tmp_path / "summary"
    build_summary(SummaryInputs(metrics=files["metrics"], gaps=files["gaps"],
                                per_class=files["per_class"],
                                gaps_per_class=files["gaps_per_class"],
                                agreement=files["agreement"],
                                reference=str(ROOT / "resources/paper_reference.yaml"),
                                n_resamples=100), out)
    head = pd.read_csv(out / "headline.csv")
    few = head[head["condition"] == "fewshot"].set_index("task_type")
    assert set(few.index) == {"binary", "multiclass"}
    assert few.loc["binary", "n_tasks"] == 2 and few.loc["multiclass", "n_tasks"] == 2
    assert few.loc["multiclass", "headline_metric"] == "macro-F1"
    m = pd.concat(pd.read_csv(f) for f in files["metrics"])
    fm = m[(m["condition"] == "fewshot") & m["task"].isin(["m1", "m2"])]["f1"]
    assert few.loc["multiclass", "f1_median"] == pytest.approx(fm.median())
    gm = pd.read_csv(out / "gaps_median.csv")
    assert set(gm["task_type"]) == {"binary", "multiclass"}
    assert "F1 is" in (out / "headline.md").read_text()
    agm = pd.read_csv(out / "agreement_median.csv")
    assert set(agm["task_type"]) == {"binary", "multiclass"}
    assert len(pd.read_csv(out / "per_class.csv")) > 0
    # per-class gaps across tasks: classes matched by name (m1 and m2 share a, b, c)
    cgm = pd.read_csv(out / "gaps_per_class_median.csv")
    gpc = pd.concat(pd.read_csv(f) for f in files["gaps_per_class"])
    sel = gpc[(gpc["class"] == "a") & (gpc["metric"] == "f1") & (gpc["comparison"] == "fewshot")
              & (gpc["model"] == "bert") & (gpc["condition"] == "llm-gpt")]
    row = cgm[(cgm["class"] == "a") & (cgm["metric"] == "f1") & (cgm["comparison"] == "fewshot")
              & (cgm["model"] == "bert") & (cgm["condition"] == "llm-gpt")].iloc[0]
    assert row["n_tasks"] == 2 and row["median_gap"] == pytest.approx(sel["gap"].median())
