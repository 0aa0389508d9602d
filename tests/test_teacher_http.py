"""The teacher against a real loopback OpenAI-compatible server (tests/fake_openai_server.py):
faults, SIGKILL resume, the key, the spending cap, the Batch API. No client is monkeypatched."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
from fake_openai_server import FakeOpenAI
from teacher_helpers import env, label_cmd, make_task, run_label, spec_dict

from annodistill.config import load_task
from annodistill.teacher.cache import ResponseCache
from annodistill.teacher.run import label_split
from annodistill.teacher.spec import spec_from_dict

KEY = "sk-test-7f3a9c1e5b2d-NEVER-WRITE-ME"


def _spec(base_url, **kw):
    d = spec_dict(base_url, **kw)
    return spec_from_dict(d.pop("name"), d)


def _label(tmp, cb, splits, spec, split="test", **kw):
    return label_split(spec=spec, cb=load_task("topic", cb.parent), splits_dir=splits, split=split,
                       out=tmp / "out" / f"labels_{split}.parquet",
                       cost_out=tmp / "out" / f"cost_{split}.json", cache_dir=tmp / "cache",
                       progress=False, **kw)


def test_faults_every_item_labelled_or_unparseable(tmp_path):
    cb, splits = make_task(tmp_path, n_test=30)
    faults = {"429": 0.08, "500": 0.05, "503": 0.05, "timeout": 0.03, "drop": 0.05,
              "empty": 0.04, "malformed": 0.04, "outside": 0.04}
    with FakeOpenAI(fault_rates=faults, retry_after_s=0.3, timeout_s=1.5) as srv:
        report = _label(tmp_path, cb, splits, _spec(srv.base_url, timeout_s=0.5))
    labels = pd.read_parquet(tmp_path / "out/labels_test.parquet")
    test = pd.read_parquet(splits / "test.parquet")
    assert list(labels["id"]) == list(test["id"].astype(str))
    assert (labels["n_answers"] == 3).all()
    hit = {f["fault"] for f in srv.requests if f["fault"]}
    assert hit >= set(faults), f"not every fault was injected: {hit}"
    # every answer either parses to a label or is counted unparseable, with its raw text kept
    n_bad = 0
    for row in labels.itertuples():
        answers = json.loads(row.answers)
        bad = [a for a in answers if (a or "").strip() not in ("yes", "no")]
        assert row.n_unparseable == len(bad)
        n_bad += len(bad)
        good = [a.strip() for a in answers if (a or "").strip() in ("yes", "no")]
        if good:
            assert row.label == max(set(good), key=lambda w: (good.count(w), -good.index(w)))
            assert row.consistency == pytest.approx(good.count(row.label) / len(good))
        else:
            assert pd.isna(row.label) and pd.isna(row.consistency)
    finals = sum(1 for f in srv.requests if f["fault"] in ("empty", "malformed", "outside"))
    assert n_bad == finals == report["n_unparseable_answers"] > 0
    raw = " ".join(labels["answers"])
    assert "I think the answer is" in raw and "maybe" in raw
    # transient faults were retried, never answered twice; Retry-After was honoured
    assert srv.n_duplicates() == 0
    assert set(report["retries"]) >= {"429", "500", "503", "connection", "timeout"}
    by_pair: dict = {}
    for r in srv.requests:
        by_pair.setdefault((r["text"], r["seed"]), []).append(r)
    for reqs in by_pair.values():
        if reqs[0]["fault"] == "429":
            assert reqs[1]["t"] - reqs[0]["t"] >= 0.3 - 0.02


def test_rerun_sends_no_request(tmp_path):
    cb, splits = make_task(tmp_path)
    with FakeOpenAI() as srv:
        spec = _spec(srv.base_url)
        first = _label(tmp_path, cb, splits, spec, split="validation")
        n = len(srv.requests)
        second = _label(tmp_path, cb, splits, spec, split="validation")
    assert n == first["requests"] == 60 and len(srv.requests) == n
    assert second["requests_sent"] == 0 and second["cache_hits"] == 60
    # validation = 24 minus the 4 few-shot examples, which never get scored
    lab = pd.read_parquet(tmp_path / "out/labels_validation.parquet")
    assert len(lab) == 20 and not set(lab["id"]) & set(first["few_shot_ids"])


def test_test_items_never_in_a_prompt(tmp_path):
    cb, splits = make_task(tmp_path)
    with FakeOpenAI() as srv:
        spec = _spec(srv.base_url)
        for split in ("validation", "test"):
            _label(tmp_path, cb, splits, spec, split=split)
    test_texts = set(pd.read_parquet(splits / "test.parquet")["text"])
    records = list(ResponseCache(tmp_path / "cache").records())
    assert len(records) == 120
    for _, rec in records:
        prompt = rec["request"]["prompt"]
        shots, item = prompt.rsplit("Text: ", 1)
        assert not any(t in shots for t in test_texts)


def test_fail_fast_on_401_and_404_and_key_scrubbed(tmp_path):
    cb, splits = make_task(tmp_path)
    with FakeOpenAI(api_key="the-right-key") as srv:
        spec = spec_dict(srv.base_url, api_key_env="FAKE_TEACHER_KEY", concurrency=2)
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache",
                         extra_env={"FAKE_TEACHER_KEY": KEY}, check=False)
        assert proc.returncode == 3
        assert "HTTP 401" in proc.stderr and "FAKE_TEACHER_KEY" in proc.stderr
        assert KEY not in proc.stderr and "***" in proc.stderr  # the server echoed it
        assert all(r["attempt"] == 0 for r in srv.requests) and len(srv.requests) <= 2
        spec["model"] = "no-such-model"
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache",
                         extra_env={"FAKE_TEACHER_KEY": "the-right-key"}, check=False)
        assert proc.returncode == 3 and "HTTP 404" in proc.stderr
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache",
                         extra_env={"FAKE_TEACHER_KEY": ""}, check=False)
        assert proc.returncode == 3 and "FAKE_TEACHER_KEY" in proc.stderr and "not set" in proc.stderr
    assert not (tmp_path / "out/labels_test.parquet").exists()


def test_key_appears_in_no_written_file(tmp_path):
    cb, splits = make_task(tmp_path)
    out, cache, logs = tmp_path / "out", tmp_path / "cache", tmp_path / "logs"
    logs.mkdir()
    with FakeOpenAI(api_key=KEY) as srv:
        spec = spec_dict(srv.base_url, api_key_env="FAKE_TEACHER_KEY", logprobs=True)
        for split in ("validation", "test"):
            proc = run_label(spec, cb, splits, split, out, cache,
                             extra_env={"FAKE_TEACHER_KEY": KEY})
            (logs / f"{split}.log").write_text(proc.stderr + proc.stdout)
        assert len(srv.answered) == 120
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p
        assert b"the-right-key" not in p.read_bytes()


def test_max_usd_holds_and_nothing_paid_twice(tmp_path):
    cb, splits = make_task(tmp_path, n_test=20)
    price = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}
    with FakeOpenAI() as srv:
        spec = spec_dict(srv.base_url, price=price, max_usd=1.0, concurrency=4)
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache", check=False)
        assert proc.returncode == 3 and "max_usd" in proc.stderr
        assert not (tmp_path / "out/labels_test.parquet").exists()
        first = len(srv.answered)
        billed = [rec["billed_usd"] for _, rec in ResponseCache(tmp_path / "cache").records()]
        spent = (sum(billed), len(billed))
        assert 0 < first == spent[1] < 60
        assert spent[0] <= 1.0
        assert spent[0] > 0.5  # the cap is used, not merely feared
        spec["max_usd"] = 100.0
        run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache")
        assert srv.n_duplicates() == 0 and len(srv.answered) == 60
    cost = json.loads((tmp_path / "out/cost_test.json").read_text())
    assert cost["cache_hits"] == first and cost["requests_sent"] == 60 - first
    labels = pd.read_parquet(tmp_path / "out/labels_test.parquet")
    assert cost["usd_all_answers"] == pytest.approx(labels["cost_usd"].sum())
    assert cost["usd_all_answers"] == pytest.approx(spent[0] + cost["usd"], rel=1e-6)


def test_sigkill_mid_run_then_resume(tmp_path):
    cb, splits = make_task(tmp_path, n_test=30)
    out, cache = tmp_path / "out", tmp_path / "cache"
    # the uninterrupted reference, on its own cache and server
    with FakeOpenAI() as ref_srv:
        run_label(spec_dict(ref_srv.base_url), cb, splits, "test", tmp_path / "ref",
                  tmp_path / "ref_cache")
    reference = pd.read_parquet(tmp_path / "ref/labels_test.parquet")

    with FakeOpenAI(latency_s=0.02, stall_after=40) as srv:
        spec = spec_dict(srv.base_url)
        proc = subprocess.Popen(label_cmd(spec, cb, splits, "test", out, cache),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        deadline = time.monotonic() + 60
        n, stable_since = -1, None
        while time.monotonic() < deadline:  # wait until every delivered answer is committed
            time.sleep(0.05)
            if not cache.exists() or len(srv.answered) < 40:
                continue
            count = sum(1 for _ in ResponseCache(cache).records())
            if count == len(srv.answered) == n:
                if time.monotonic() - stable_since > 0.5:  # the rest are stalled, unanswered
                    break
            else:
                n, stable_since = count, time.monotonic()
        assert 40 <= n == len(srv.answered) < 90, (n, len(srv.answered))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (out / "labels_test.parquet").exists()
        srv.stall_after = None
        srv.release.set()  # the stalled requests die unanswered (never paid)
        report = run_label(spec, cb, splits, "test", out, cache)
        assert report.returncode == 0
        assert srv.n_duplicates() == 0
        assert len(set(srv.answered)) == 90
    cost = json.loads((out / "cost_test.json").read_text())
    assert cost["cache_hits"] == n and cost["requests_sent"] == 90 - n
    resumed = pd.read_parquet(out / "labels_test.parquet")
    pd.testing.assert_frame_equal(resumed, reference)


def test_chat_structured_with_logprobs(tmp_path):
    cb, splits = make_task(tmp_path)
    with FakeOpenAI() as srv:
        spec = _spec(srv.base_url, mode="chat", structured=True, logprobs=True, samples=2)
        _label(tmp_path, cb, splits, spec)
    labels = pd.read_parquet(tmp_path / "out/labels_test.parquet")
    assert labels["label"].notna().all() and (labels["p_source"] == "logprobs").all()
    # the fake gives its answer probability 0.8
    for row in labels.itertuples():
        answers = [json.loads(a)["label"] for a in json.loads(row.answers)]
        expect = sum(0.8 if a == "yes" else 0.2 for a in answers) / len(answers)
        assert row.p_positive == pytest.approx(expect)


def test_batch_api_resumable_across_invocations(tmp_path):
    cb, splits = make_task(tmp_path)
    price = {"input_per_mtok": 10.0, "output_per_mtok": 10.0}
    with FakeOpenAI(batch_polls=3) as srv:
        spec = spec_dict(srv.base_url, price=price, max_usd=5.0,
                         batch={"enabled": True, "poll_s": 0.01, "max_wait_s": 0})
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache", check=False)
        assert proc.returncode == 3 and "rerun later" in proc.stderr
        assert srv.batch_creations == 1
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache", check=False)
        assert proc.returncode == 3 and srv.batch_creations == 1
        run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache")
        assert srv.batch_creations == 1 and srv.n_duplicates() == 0
        # a rerun buys nothing
        run_label(spec, cb, splits, "test", tmp_path / "out", tmp_path / "cache")
        assert srv.batch_creations == 1
    labels = pd.read_parquet(tmp_path / "out/labels_test.parquet")
    assert len(labels) == 20 and labels["label"].notna().all()
    usage = sum(json.loads(line)["response"]["body"]["usage"]["prompt_tokens"]
                for line in srv.files["file-out-1"].decode().splitlines())
    out_tok = 60
    assert labels["cost_usd"].sum() == pytest.approx(0.5 * 10.0 * (usage + out_tok) / 1e6)
