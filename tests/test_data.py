"""Data stage: ingest (every format, every bad-input case), splits (determinism, no leakage)."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT, codebook_dict, synthetic_rows, write_codebook

from annodistill.config import codebook_from_dict, load_study, load_task, validate_study
from annodistill.data.ingest import ingest
from annodistill.data.splits import make_splits, training_set
from annodistill.errors import InputError


def _cb(path, fmt="csv", **kw):
    return codebook_from_dict(codebook_dict("topic", str(path), fmt, **kw), "topic.yaml")


def _write_csv(path, rows, sep=",", header=True):
    lines = []
    if header:
        lines.append(sep.join(["id", "text", "code"]))
    for r in rows:
        lines.append(sep.join([str(r["id"]), r["text"], str(r["code"])]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ROWS = [{"id": "a1", "text": "Tax  rise\tannounced ", "code": 1},
        {"id": "a2", "text": "Football tonight", "code": 0},
        {"id": "a3", "text": "Budget &amp; deficit", "code": 1}]


# ---------------------------------------------------------------- formats and normalisation
def test_ingest_same_table_from_every_format(tmp_path):
    rows = synthetic_rows(50)
    csv_p = _write_csv(tmp_path / "t.csv", rows)
    tsv_p = _write_csv(tmp_path / "t.tsv", rows, sep="\t", header=False)
    jsonl_p = tmp_path / "t.jsonl"
    jsonl_p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq_p = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(pq_p)
    tables = [ingest(_cb(csv_p), csv_p)[0],
              ingest(_cb(tsv_p, "tsv", header=False, columns=["id", "text", "code"]), tsv_p)[0],
              ingest(_cb(jsonl_p, "jsonl"), jsonl_p)[0],
              ingest(_cb(pq_p, "parquet"), pq_p)[0]]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], t)
    assert list(tables[0].columns) == ["id", "text", "label"]
    assert set(tables[0]["label"]) == {"yes", "no"}


def test_text_normalised_and_html_unescaped(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS))
    df, summary = ingest(_cb(p, "jsonl", html_unescape=True), p)
    texts = dict(zip(df["id"], df["text"]))
    assert texts["a1"] == "Tax rise announced"
    assert texts["a3"] == "Budget & deficit"
    assert summary["label_counts"] == {"yes": 2, "no": 1}
    assert summary["positive_share"] == pytest.approx(2 / 3)


def test_threshold_label_rule(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("1\t-1.5\tawful\n2\t-1.0\tbad\n3\t0.2\tfine\n4\t2\tgreat\n")
    cb = codebook_dict("topic", str(p), "tsv", header=False, columns=["id", "score", "text"],
                       label={"column": "score",
                              "threshold": {"at_most": -1.0, "then": "yes", "else": "no"}})
    df, _ = ingest(codebook_from_dict(cb, "x.yaml"), p)
    assert dict(zip(df["id"], df["label"])) == {"1": "yes", "2": "yes", "3": "no", "4": "no"}


def test_ids_default_to_row_numbers(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,code\nalpha,1\nbeta,0\n")
    cb = codebook_dict("topic", str(p), "csv", id_column=None)
    df, _ = ingest(codebook_from_dict(cb, "x.yaml"), p)
    assert list(df["id"]) == ["2", "3"]  # the line numbers in the file


def test_duplicates(tmp_path):
    rows = ROWS + [dict(ROWS[0]),                                          # same id, same content
                   {"id": "b1", "text": "Football tonight", "code": 0},    # same text, same label
                   {"id": "c1", "text": "Mixed message", "code": 1},
                   {"id": "c2", "text": "Mixed  message", "code": 0}]      # same text, other label
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    df, s = ingest(_cb(p, "jsonl"), p)
    assert s["duplicates_dropped"] == {"repeated_id": 1, "repeated_text": 1, "conflicting_text": 2}
    assert sorted(df["id"]) == ["a1", "a2", "a3"]
    assert df["text"].is_unique


# ---------------------------------------------------------------- bad input: one clear error
@pytest.mark.parametrize("case, content, match", [
    ("empty text", "id,text,code\na,hello,1\nb,   ,0\n", r"t\.csv, row 3, field 'text': empty text"),
    ("label outside", "id,text,code\na,hello,1\nb,bye,7\n", r"row 3, field 'code': label '7' is outside the codebook"),
    ("dup id other label", "id,text,code\na,hello,1\na,hello,0\n", r"row 3, field 'id': duplicate id 'a' with a different label"),
    ("dup id other text", "id,text,code\na,hello,1\na,other,1\n", r"row 3, field 'id': duplicate id 'a' with a different text"),
    ("ragged row", "id,text,code\na,hello,1\nb,bye\n", r"row 3: expected 3 CSV fields"),
    ("missing column", "id,body,code\na,hello,1\n", r"field 'text': column 'text' .* not found"),
    ("no rows", "id,text,code\n", r"no data rows"),
])
def test_bad_csv_refused_with_place(tmp_path, case, content, match):
    p = tmp_path / "t.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=match):
        ingest(_cb(p), p)


def test_undecodable_bytes_name_the_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"id,text,code\na,hello,1\nb,caf\xe9,0\n")
    with pytest.raises(InputError, match=r"row 3: undecodable bytes"):
        ingest(_cb(p), p)


def test_non_text_and_missing_file(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"id": "a", "text": "ok", "code": 1}\n{"id": "b", "text": 42, "code": 0}\n')
    with pytest.raises(InputError, match=r"row 2, field 'text': expected text, found int"):
        ingest(_cb(p, "jsonl"), p)
    with pytest.raises(InputError, match=r"nope\.csv: raw data file not found"):
        ingest(_cb(tmp_path / "nope.csv"), tmp_path / "nope.csv")


def test_threshold_needs_numbers(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,text,score\na,hello,-2\nb,bye,n/a\n")
    cb = codebook_dict("topic", str(p), label={"column": "score", "threshold":
                                                {"at_least": 1, "then": "yes", "else": "no"}})
    with pytest.raises(InputError, match=r"row 3, field 'score': expected a number"):
        ingest(codebook_from_dict(cb, "x.yaml"), p)


def test_codebook_errors(tmp_path):
    bad = codebook_dict("topic", "x.csv")
    bad["positive"] = "maybe"
    with pytest.raises(InputError, match="positive class 'maybe'"):
        codebook_from_dict(bad, "topic.yaml")
    bad = codebook_dict("topic", "x.csv", label={"column": "code", "map": {"1": "yes", "0": "nah"}})
    with pytest.raises(InputError, match="produces 'nah'"):
        codebook_from_dict(bad, "topic.yaml")
    with pytest.raises(InputError, match="no codebook for task 'nosuch'"):
        load_task("nosuch", tmp_path)


def test_cli_error_is_one_line_and_leaves_nothing(tiny_task, tmp_path, env_with_venv):
    cb, raw = tiny_task
    raw.write_text(raw.read_text().replace(",1\n", ",9\n", 1))
    out = tmp_path / "out" / "clean.parquet"
    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "data", "ingest",
                           "--codebook", str(cb), "--out", str(out),
                           "--summary", str(tmp_path / "out" / "s.json")],
                          capture_output=True, text=True, env=env_with_venv, cwd=ROOT)
    assert proc.returncode == 2
    assert "label '9' is outside the codebook" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "out" / "s.json").exists()


# ---------------------------------------------------------------- config validation
def test_study_configs_validate():
    for name in ("config/config.yaml", "config/paper.yaml"):
        cfg = load_study(ROOT / name)
        for t in cfg["tasks"]:
            if name == "config/config.yaml":
                load_task(t, ROOT / cfg["task_dir"])


@pytest.mark.parametrize("patch, match", [
    ({"split": {"test_size": -5, "validation_size": 10, "train_sizes": [10], "llm_train_size": 10}}, "minimum"),
    ({"split": {"test_size": "many", "validation_size": 10, "train_sizes": [10], "llm_train_size": 10}}, "not of type"),
    ({"tasks": ["bad name!"]}, "does not match"),
    ({"colour": "blue"}, "Additional properties"),
])
def test_bad_study_config_fails_validation(patch, match):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg.update(patch)
    with pytest.raises(InputError, match=match):
        validate_study(cfg, "cfg")


# ---------------------------------------------------------------- splits
def _clean(n=600, share=0.3, seed=0):
    rows = synthetic_rows(n, share, seed)
    return pd.DataFrame({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows],
                         "label": ["yes" if r["code"] else "no" for r in rows]})


SIZES = dict(test_size=150, validation_size=100, train_sizes=[50, 100, 200], llm_train_size=200)


def test_splits_disjoint_nested_and_deterministic():
    clean = _clean()
    a = make_splits(clean, seed=7, **SIZES)
    b = make_splits(clean.sample(frac=1, random_state=3), seed=7, **SIZES)  # row order irrelevant
    for k in ("test", "validation", "train_pool"):
        pd.testing.assert_frame_equal(a["frames"][k], b["frames"][k])
    assert a["manifest"] == b["manifest"]
    f = a["frames"]
    test, val, pool = set(f["test"]["id"]), set(f["validation"]["id"]), set(f["train_pool"]["id"])
    assert len(test) == 150 and len(val) == 100 and len(pool) == 200
    assert not test & val and not test & pool and not val & pool   # no leakage
    m = f["membership"]
    assert m["id"].is_unique and set(m["id"]) == set(clean["id"])
    assert (m["split"] == "test").sum() == 150
    # nested human sets; the LLM set is the same texts as the largest human set
    ranks = f["train_pool"].set_index("id")["rank"]
    assert sorted(ranks) == list(range(200))
    c = make_splits(clean, seed=8, **SIZES)
    assert set(c["frames"]["test"]["id"]) != test


def test_splits_stratified_keep_shares():
    clean = _clean(1000, 0.2)
    res = make_splits(clean, seed=1, stratify=True, **SIZES)
    share = (res["frames"]["test"]["label"] == "yes").mean()
    assert share == pytest.approx((clean["label"] == "yes").mean(), abs=0.01)


def test_split_size_errors():
    clean = _clean(300)
    with pytest.raises(InputError, match="too few items: 300 available"):
        make_splits(clean, seed=1, **SIZES)
    rare = _clean(600, 0.0)
    rare.loc[:3, "label"] = "yes"
    with pytest.raises(InputError, match="too few items of class 'yes'"):
        make_splits(rare, seed=1, **SIZES, labels=["yes", "no"])


def test_training_set_reads_prefix(tmp_path):
    res = make_splits(_clean(), seed=3, **SIZES)
    res["frames"]["train_pool"].to_parquet(tmp_path / "train_pool.parquet")
    ts = training_set(tmp_path, 50)
    assert list(ts["rank"]) == list(range(50))
    with pytest.raises(InputError, match="pool holds 200"):
        training_set(tmp_path, 500)
