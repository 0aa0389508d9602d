"""The teacher rules under the real `snakemake`, on a tiny study, against the loopback server."""
from __future__ import annotations

import json

import pandas as pd
import yaml
from fake_openai_server import FakeOpenAI
from test_workflow import make_study, run_snakemake


def _teacher_cfg(base_url: str, gate: dict) -> dict:
    return {"cache_dir": "cache/llm", "seed": 7, "models": {"fake": {
        "provider": "openai", "base_url": base_url, "model": "fake-model",
        "api_key_env": "FAKE_WF_KEY", "mode": "completion", "samples": 2, "max_tokens": 3,
        "few_shot": 4, "concurrency": 4, "max_usd": 0, "gate": gate}}}


def test_teacher_stage_end_to_end(tmp_path, env_with_venv):
    env = {**env_with_venv, "FAKE_WF_KEY": "sk-wf-secret-value"}
    with FakeOpenAI(api_key="sk-wf-secret-value") as srv:
        cfg_path = make_study(tmp_path, tasks=("alpha",),
                              extra={"teachers": _teacher_cfg(srv.base_url,
                                                              {"min_f1": 0.1, "on_fail": "warn"})})
        run_snakemake(tmp_path, "--cores", "2", "teacher", env=env)
        out = tmp_path / "results/alpha/teacher/fake"
        gate = json.loads((out / "gate.json").read_text())
        assert gate["passed"] and gate["n"] == 46 and 0 < gate["f1"] <= 1
        for split, n in (("validation", 46), ("test", 100), ("train", 100)):
            lab = pd.read_parquet(out / f"labels_{split}.parquet")
            assert len(lab) == n and lab["label"].notna().all()
            cost = json.loads((out / f"cost_{split}.json").read_text())
            assert cost["usd"] == 0 and cost["requests"] == 2 * n
        train = pd.read_parquet(out / "labels_train.parquet")
        pool = pd.read_parquet(tmp_path / "results/alpha/splits/train_pool.parquet")
        assert set(train["id"]) == set(pool.loc[pool["rank"] < 100, "id"].astype(str))
        n_req = len(srv.requests)
        assert n_req == 2 * (46 + 100 + 100)
        # the dry-run rule: everything is cached, nothing left to buy
        run_snakemake(tmp_path, "--cores", "1", "cost_estimate", env=env)
        est = json.loads((out / "estimate.json").read_text())
        assert est["total"]["to_request"] == 0 and est["total"]["cached"] == n_req
        # a stricter gate that stops: the labels are re-derived from the cache, the gate fails and
        # the training set is not labelled, with a clear message
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["teachers"] = _teacher_cfg(srv.base_url, {"min_f1": 1.0, "on_fail": "stop"})
        cfg_path.write_text(yaml.safe_dump(cfg))
        proc = run_snakemake(tmp_path, "--cores", "1", "teacher", env=env, check=False)
        assert proc.returncode != 0
        assert len(srv.requests) == n_req  # nothing bought twice
        assert not json.loads((out / "gate.json").read_text())["passed"]
        log = (tmp_path / "logs/alpha/teacher/fake/label_train.log").read_text()
        assert "failed the validation gate" in log and "not labelled" in log
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert b"sk-wf-secret-value" not in p.read_bytes(), p
