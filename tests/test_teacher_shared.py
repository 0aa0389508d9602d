"""The response cache and the spend ledger shared by many processes (journal.py, cache.py,
ledger.py): torn and corrupt records, SIGKILL of writers, several labelling processes buying
overlapping answers at once against the real loopback server with some killed mid-run, the
study-wide max_usd across processes, worst-case billing of timeouts, Batch rounds, migration of
the old SQLite cache, and `teacher estimate` showing spent / reserved / remaining."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
from fake_openai_server import FakeOpenAI
from teacher_helpers import env, label_cmd, make_task, run_label, spec_dict

from annodistill.config import load_task
from annodistill.teacher import journal
from annodistill.teacher.cache import ResponseCache
from annodistill.teacher.ledger import Ledger
from annodistill.teacher.run import label_split
from annodistill.teacher.spec import spec_from_dict

PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}


def _spec(base_url, **kw):
    d = spec_dict(base_url, **kw)
    return spec_from_dict(d.pop("name"), d)


def _records(cache) -> list[tuple[str, dict]]:
    return list(ResponseCache(cache).records())


# ---- the journal format ----

def test_torn_and_corrupt_records_are_never_accepted(tmp_path):
    w = journal.ShardWriter(tmp_path)
    w.append([journal.encode(f"k{i}", {"i": i, "text": "x\ty\nz"}) for i in range(5)])
    good = journal.encode("k5", {"i": 5})
    bad = bytearray(journal.encode("k6", {"i": 6}))
    bad[-3] ^= 0x01  # a flipped bit: the checksum no longer matches
    w.append([good, bytes(bad), journal.encode("k7", {"i": 7})])
    w.append([journal.encode("k8", {"i": 8})[:-9]])  # torn: a writer killed mid-line
    r = journal.JournalReader(tmp_path)
    got = dict(r.poll())
    assert sorted(got) == [f"k{i}" for i in (0, 1, 2, 3, 4, 5, 7)]
    assert got["k1"] == {"i": 1, "text": "x\ty\nz"} and r.corrupt == 1
    # nobody appends to a dead writer's shard; a new writer gets its own, so the torn line stays
    # last and harms nothing; polling again takes in only what is new
    w2 = journal.ShardWriter(tmp_path)
    w2.append([journal.encode("k9", {"i": 9})])
    assert w2.path != w.path and dict(r.poll()) == {"k9": {"i": 9}}


WRITER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from annodistill.teacher.cache import ResponseCache
c = ResponseCache(sys.argv[1])
i = 0
while True:
    key = f"{sys.argv[3]}-{i:06d}"
    c.put(key, endpoint="e", model="m", sample=0, request={"prompt": "p" * 3000},
          response={"text": key * 50}, billed_usd=i)
    print(key, flush=True)   # only after put returned, i.e. after the fsync
    i += 1
"""


def test_sigkill_of_writers_never_corrupts_earlier_answers(tmp_path):
    from conftest import ROOT

    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache), str(ROOT / "workflow"),
                               f"w{j}"], stdout=subprocess.PIPE, text=True) for j in range(3)]
    durable = []
    for j, p in enumerate(procs):
        for _ in range(60 + 37 * j):  # kill each at a different point
            durable.append(p.stdout.readline().strip())
        os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        rest = p.stdout.read().split()
        p.wait()
        durable += rest  # printed after its fsync, before the kill
    got = {k: rec for k, rec in _records(cache)}
    assert set(durable) <= set(got)
    for k, rec in got.items():  # nothing half-written was taken for an answer
        assert rec["response"] == {"text": k * 50} and rec["request"] == {"prompt": "p" * 3000}
    c = ResponseCache(cache)
    assert c.count() == len(got) and c.corrupt == 0  # a torn last line is not counted corrupt


# ---- many labelling processes at once, some killed ----

def _wait_stable(srv, cache, at_least, timeout=90):
    """Until every answer the server delivered is durable in the cache (the rest are stalled)."""
    deadline = time.monotonic() + timeout
    n, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if len(srv.answered) < at_least:
            continue
        count = len(_records(cache)) if cache.exists() else 0
        if count == len(srv.answered) == n:
            if time.monotonic() - since > 1.0:
                return n
        else:
            n, since = count, time.monotonic()
    raise AssertionError(f"cache never caught up: {n} cached, {len(srv.answered)} answered")


def test_concurrent_labellers_with_kills_buy_each_answer_once(tmp_path):
    cb, splits = make_task(tmp_path, n_test=30)
    cache = tmp_path / "cache"
    with FakeOpenAI() as ref_srv:
        run_label(spec_dict(ref_srv.base_url, price=PRICE, max_usd=1000.0), cb, splits, "test",
                  tmp_path / "ref", tmp_path / "ref_cache")
    reference = pd.read_parquet(tmp_path / "ref/labels_test.parquet")

    with FakeOpenAI(latency_s=0.03, stall_after=35) as srv:
        spec = spec_dict(srv.base_url, price=PRICE, max_usd=1000.0, timeout_s=2, concurrency=3)
        outs = [tmp_path / f"out{j}" for j in range(4)]
        procs = [subprocess.Popen(label_cmd(spec, cb, splits, "test", o, cache),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
                 for o in outs]
        n = _wait_stable(srv, cache, 35)
        assert 35 <= n < 90
        # two of the four die with their requests in flight (claims and reservations held)
        for p in procs[:2]:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        srv.stall_after = None
        srv.release.set()  # stalled requests die unanswered (never paid); survivors retry
        for p in procs[2:]:
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err.decode()[-3000:]
        for o in outs[:2]:  # the killed ones, rerun: everything is cached by now
            assert not (o / "labels_test.parquet").exists()
            run_label(spec, cb, splits, "test", o, cache)
        assert srv.n_duplicates() == 0, "an answer was paid twice"
        assert len(set(srv.answered)) == len(srv.answered) == 90
    keys = Counter(k for k, _ in _records(cache))
    assert len(keys) == 90 and set(keys.values()) == {1}, "an answer stored twice"
    for o in outs:
        pd.testing.assert_frame_equal(pd.read_parquet(o / "labels_test.parquet"), reference)
    survivors = [json.loads((o / "cost_test.json").read_text()) for o in outs[2:]]
    # each answer a survivor did not buy itself came from the cache, another job's included
    assert all(r["requests_sent"] + r["cache_hits"] == 90 for r in survivors)
    assert sum(r["requests_sent"] for r in survivors) <= 90
    reruns = [json.loads((o / "cost_test.json").read_text()) for o in outs[:2]]
    assert all(r["requests_sent"] == 0 and r["cache_hits"] == 90 for r in reruns)
    # the ledger holds every billed answer; what the killed ones had in flight counts at worst
    t = Ledger(cache, "fake", 1000.0).totals()
    billed = sum(rec["billed_usd"] for _, rec in _records(cache))
    assert t["reserved"] == 0 and t["spent"] >= billed - 1e-9


# ---- the study-wide ledger ----

def _reserver(cache, n_ok, barrier):
    led = Ledger(cache, "t", 1.0)
    barrier.wait()
    ok = 0
    while led.try_reserve(0.03) is not None:
        ok += 1
    n_ok.put(ok)


def test_processes_together_never_reserve_past_the_cap(tmp_path):
    ctx = mp.get_context("fork")
    q, barrier = ctx.Queue(), ctx.Barrier(4)
    ps = [ctx.Process(target=_reserver, args=(tmp_path, q, barrier)) for _ in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
    total = sum(q.get(timeout=5) for _ in ps)
    assert total == 33  # floor(1.0 / 0.03): not one more, not one less
    t = Ledger(tmp_path, "t", 1.0).totals()
    # the reservers exited without settling: their reservations count as spent (worst case)
    assert t["spent"] == pytest.approx(0.99) and t["reserved"] == 0
    assert t["remaining"] == pytest.approx(0.01)


def test_two_labelling_jobs_share_one_max_usd(tmp_path):
    cb, splits = make_task(tmp_path, n_val=40, n_test=40)
    cache = tmp_path / "cache"
    test_texts = set(pd.read_parquet(splits / "test.parquet")["text"])
    with FakeOpenAI(latency_s=0.3) as srv:  # slow enough that both jobs are buying at once
        spec = spec_dict(srv.base_url, price=PRICE, max_usd=3.0, concurrency=4)
        procs = [subprocess.Popen(label_cmd(spec, cb, splits, split, tmp_path / "out", cache),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
                 for split in ("validation", "test")]
        errs = [p.communicate(timeout=120)[1].decode() for p in procs]
        assert all(p.returncode == 3 for p in procs), errs
        assert all("max_usd" in e and "the whole study" in e for e in errs)
        billed = billed_list(cache)
        t = Ledger(cache, "fake", 3.0).totals()
        assert sum(billed) <= t["spent"] <= 3.0 + 1e-9 and t["reserved"] == 0
        assert sum(billed) > 1.5  # the cap is used, not merely feared
        # both jobs bought (each alone would have been allowed the whole 1.0)
        split_of = Counter(srv.item_text(rec["request"]) in test_texts
                           for _, rec in _records(cache))
        assert split_of[True] > 0 and split_of[False] > 0
        # raising max_usd (operational) lets both finish; nothing is bought twice
        spec["max_usd"] = 100.0
        for split in ("validation", "test"):
            run_label(spec, cb, splits, split, tmp_path / "out", cache)
        assert srv.n_duplicates() == 0 and len(srv.answered) == (40 - 4) * 3 + 40 * 3


def billed_list(cache):
    return [rec["billed_usd"] for _, rec in _records(cache)]


def test_timeout_counts_at_its_worst_case(tmp_path):
    cb, splits = make_task(tmp_path, n_test=20)
    cache = tmp_path / "cache"
    with FakeOpenAI(fault_rates={"timeout": 0.2}, timeout_s=1.0) as srv:
        spec = _spec(srv.base_url, price=PRICE, max_usd=100.0, timeout_s=0.4)
        report = label_split(spec=spec, cb=load_task("topic", cb.parent), splits_dir=splits,
                             split="test", out=tmp_path / "out/labels_test.parquet",
                             cost_out=tmp_path / "out/cost_test.json", cache_dir=cache,
                             progress=False)
    n_timeouts = sum(1 for r in srv.requests if r["fault"] == "timeout")
    assert n_timeouts > 0 and report["retries"]["timeout"] == n_timeouts
    led = Ledger(cache, "fake", 100.0)
    led.refresh()
    unknown = [s["usd"] for s in led.settlements.values() if s["how"] == "unknown"]
    assert len(unknown) == n_timeouts
    billed = sum(billed_list(cache))
    # a timed-out attempt is never released at $0: it counts what it could have cost
    worst_max = max(unknown)
    assert min(unknown) > max(billed_list(cache)) and worst_max > 0
    t = led.totals()
    assert t["spent"] == pytest.approx(billed + sum(unknown))
    assert report["usd_unknown_billing"] == pytest.approx(sum(unknown))
    assert report["study_spend"]["spent"] == pytest.approx(t["spent"])


def test_batch_rounds_and_resumed_runs_share_the_budget(tmp_path):
    cb, splits = make_task(tmp_path, n_val=24, n_test=20)
    cache = tmp_path / "cache"
    price = {"input_per_mtok": 10.0, "output_per_mtok": 10.0}
    with FakeOpenAI(batch_polls=2) as srv:
        spec = spec_dict(srv.base_url, price=price, max_usd=5.0,
                         batch={"enabled": True, "poll_s": 0.01, "max_wait_s": 0})
        proc = run_label(spec, cb, splits, "test", tmp_path / "out", cache, check=False)
        assert proc.returncode == 3 and "rerun later" in proc.stderr
        t = Ledger(cache, "fake", 5.0).totals()
        worst_test = t["reserved"]
        assert worst_test > 0 and t["spent"] == 0  # the pending batch holds its worst case
        # a second job of the same teacher may only use what the pending batch leaves
        spec["max_usd"] = worst_test * 1.5
        proc = run_label(spec, cb, splits, "validation", tmp_path / "out", cache, check=False)
        assert proc.returncode == 3 and "max_usd" in proc.stderr and "pending" in proc.stderr
        assert srv.batch_creations == 1
        # the resumed run collects its batch: the reservation becomes what was billed
        run_label(spec, cb, splits, "test", tmp_path / "out", cache)
        t2 = Ledger(cache, "fake", spec["max_usd"]).totals()
        billed = sum(billed_list(cache))
        assert t2["reserved"] == 0 and t2["spent"] == pytest.approx(billed) and billed < worst_test
        proc = run_label(spec, cb, splits, "validation", tmp_path / "out", cache, check=False)
        assert proc.returncode == 3 and "rerun later" in proc.stderr  # now it fits: submitted
        run_label(spec, cb, splits, "validation", tmp_path / "out", cache)
        assert srv.batch_creations == 2 and srv.n_duplicates() == 0
    t3 = Ledger(cache, "fake", spec["max_usd"]).totals()
    assert t3["spent"] == pytest.approx(sum(billed_list(cache)))
    assert t3["spent"] <= spec["max_usd"] and t3["reserved"] == 0


def test_estimate_shows_spent_reserved_remaining(tmp_path):
    from conftest import ROOT

    cb, splits = make_task(tmp_path)
    cache = tmp_path / "cache"
    led = Ledger(cache, "fake", 2.0)
    led.settle(led.try_reserve(0.5), 0.25, "billed")
    led.try_reserve(0.125, batch=True)  # a pending batch
    spec = spec_dict("http://127.0.0.1:9/v1", price=PRICE, max_usd=2.0)
    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "teacher", "estimate",
                           "--spec", json.dumps(spec), "--codebook", str(cb), "--splits-dir",
                           str(splits), "--llm-train-size", "10", "--cache-dir", str(cache),
                           "--out", str(tmp_path / "estimate.json")],
                          capture_output=True, text=True, env=env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "spent $0.2500, reserved $0.1250, remaining $1.6250" in proc.stdout
    e = json.loads((tmp_path / "estimate.json").read_text())
    assert e["ledger"] == {"max_usd": 2.0, "spent": 0.25, "reserved": 0.125, "remaining": 1.625}


# ---- the old SQLite cache ----

OLD_SCHEMA = """
CREATE TABLE responses (key TEXT PRIMARY KEY, created REAL NOT NULL, endpoint TEXT NOT NULL,
  model TEXT NOT NULL, sample INTEGER NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL,
  billed_usd REAL NOT NULL);
CREATE TABLE batches (job TEXT PRIMARY KEY, batch_id TEXT NOT NULL, input_file_id TEXT NOT NULL,
  n_requests INTEGER NOT NULL, reserved_usd REAL NOT NULL, created REAL NOT NULL,
  collected INTEGER NOT NULL DEFAULT 0);
"""


def test_old_sqlite_cache_is_imported_read_only(tmp_path):
    cb, splits = make_task(tmp_path)
    with FakeOpenAI() as srv:
        spec = _spec(srv.base_url)
        kw = dict(spec=spec, cb=load_task("topic", cb.parent), splits_dir=splits, split="test",
                  out=tmp_path / "out/labels_test.parquet", progress=False,
                  cost_out=tmp_path / "out/cost_test.json")
        label_split(cache_dir=tmp_path / "new", **kw)
        n = len(srv.answered)
        old = tmp_path / "old"
        old.mkdir()
        db = sqlite3.connect(old / "responses.sqlite")
        db.executescript(OLD_SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
        for k, rec in _records(tmp_path / "new"):
            db.execute("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (k, rec["t"], rec["endpoint"], rec["model"], rec["sample"],
                        json.dumps(rec["request"]), json.dumps(rec["response"]), rec["billed_usd"]))
        db.execute("INSERT INTO batches VALUES ('job1', 'batch-9', 'file-9', 3, 0.5, 1.0, 0)")
        db.commit()
        db.close()  # a clean close checkpoints the WAL and removes it
        before = (old / "responses.sqlite").read_bytes()
        report = label_split(cache_dir=old, **kw)
        assert len(srv.answered) == n and report["cache_hits"] == n == report["requests"]
    assert (old / "responses.sqlite").read_bytes() == before  # read, never written
    assert ResponseCache(old).batch_get("job1")["batch_id"] == "batch-9"
    assert len(_records(old)) == n  # imported once, even when opened again


def test_compaction_keeps_every_answer_and_never_touches_a_live_shard(tmp_path):
    cache = tmp_path / "cache"
    for j in range(5):  # five finished jobs (sealed shards)
        with ResponseCache(cache) as c:
            for i in range(4):
                c.put(f"{j}-{i}", endpoint="e", model="m", sample=i, request={"j": j},
                      response={"a": f"{j}-{i}"}, billed_usd=0.0)
            c.batch_put(f"job{j % 2}", f"batch-{j}", f"file-{j}", 4, 0.1)
    live = ResponseCache(cache)  # a running job: its shard must stay where it is
    live.put("live-0", endpoint="e", model="m", sample=0, request={}, response={"a": "x"},
             billed_usd=0.0)
    reader = ResponseCache(cache)  # a job that read everything before the compaction
    assert reader.count() == 21
    # a compaction that died before its rename leaves only a temporary file, never read
    (cache / "shards" / ".merged.tmp-dead").write_bytes(b"garbage\n")
    assert ResponseCache(cache, compact_at=5).count() == 21  # opening it compacts
    names = sorted(p.name for p in (cache / "shards").glob("*.jsonl"))
    assert names == sorted(["merged.jsonl", live.writer.path.name])
    live.put("live-1", endpoint="e", model="m", sample=1, request={}, response={"a": "y"},
             billed_usd=0.0)
    fresh = ResponseCache(cache)
    assert fresh.count() == 22 and fresh.get("3-2")["a"] == "3-2"
    assert fresh.batch_get("job0")["batch_id"] == "batch-4"  # latest state per job kept
    assert fresh.batch_get("job1")["batch_id"] == "batch-3"
    reader.refresh()  # its shards vanished: it rereads the merged file and misses nothing
    assert reader.count() == 22
    live.close()
