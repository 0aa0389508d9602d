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
        # a stricter gate that stops: only the gate reruns (the labels stay, nothing is bought),
        # it fails, and the training set is no longer a target: a finished state, not an error
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["teachers"] = _teacher_cfg(srv.base_url, {"min_f1": 1.0, "on_fail": "stop"})
        cfg_path.write_text(yaml.safe_dump(cfg))
        train_mtime = (out / "labels_train.parquet").stat().st_mtime
        proc = run_snakemake(tmp_path, "--cores", "1", "teacher", env=env)
        assert len(srv.requests) == n_req  # nothing bought twice
        assert not json.loads((out / "gate.json").read_text())["passed"]
        log = (tmp_path / "logs/alpha/teacher/fake/gate.log").read_text()
        assert "FAILED" in log and "will not be labelled" in log
        assert (out / "labels_train.parquet").stat().st_mtime == train_mtime
        # labelling the training set by hand against a stopped gate still refuses
        from teacher_helpers import run_label, spec_dict

        spec = spec_dict(srv.base_url, name="fake", gate={"min_f1": 1.0, "on_fail": "stop"})
        proc = run_label(spec, tmp_path / "config/tasks/alpha.yaml",
                         tmp_path / "results/alpha/splits", "train", tmp_path / "byhand",
                         tmp_path / "cache/llm", extra=["--llm-train-size", "100",
                                                         "--gate", str(out / "gate.json")],
                         check=False, extra_env={"FAKE_WF_KEY": "sk-wf-secret-value"})
        assert proc.returncode != 0
        assert "failed the validation gate" in proc.stderr and "not labelled" in proc.stderr
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert b"sk-wf-secret-value" not in p.read_bytes(), p


def test_missing_api_key_fails_at_dag_build(tmp_path, env_with_venv):
    """The key's variable is declared to Snakemake (`envvars:`): without it, building the DAG
    fails with its name, before any job (nothing is fetched, split or labelled)."""
    env = {k: v for k, v in env_with_venv.items() if k != "FAKE_WF_KEY"}
    make_study(tmp_path, tasks=("alpha",),
               extra={"teachers": _teacher_cfg("http://127.0.0.1:9/v1",
                                                {"min_f1": 0.1, "on_fail": "warn"})})
    for args in (("-n",), ("--cores", "1")):
        proc = run_snakemake(tmp_path, *args, env=env, check=False)
        assert proc.returncode != 0
        assert "FAKE_WF_KEY" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
    # the key set: the DAG builds
    run_snakemake(tmp_path, "-n", env={**env, "FAKE_WF_KEY": "x"})
