"""What triggers a rerun, and what a stopped gate leaves: the real `snakemake` on a tiny study.

One study (two tasks, the loopback teacher, the TF-IDF student) is run once; then
- every operational setting (throughput, limits, budget, price, key variable, cache folder,
  devices, resources) is changed: `snakemake -n` schedules nothing;
- one task's prompt is changed: only that task's labelling and what depends on its labels;
- the split seed is changed: everything of each task from the split on;
- the paid label files are write-protected: a relabelling stops at them until `chmod u+w`.
A second study has a task whose teacher gate stops and one whose ingest fails: the other tasks'
tables, figures and report are complete and the missing runs are listed, with the reason.
"""
from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_codebook
from fake_openai_server import FakeOpenAI
from test_workflow import make_study, run_snakemake

# the real workflow end to end: in `make test`; left out of the minimum-versions check
pytestmark = pytest.mark.slow

KEY_ENV = "FAKE_RERUN_KEY"
KEY = "sk-rerun-secret"
JOB_RE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)", re.M)


def study_cfg(base_url: str, gate: dict | None = None) -> dict:
    return {
        "split": {"seed": 1, "test_size": 60, "validation_size": 30, "train_sizes": [40],
                  "llm_train_size": 40},
        "teachers": {"cache_dir": "cache/llm", "seed": 7, "models": {"fake": {
            "provider": "openai", "base_url": base_url, "model": "fake-model",
            "api_key_env": KEY_ENV, "mode": "completion", "samples": 2, "max_tokens": 3,
            "temperature": 0.6, "few_shot": 4, "concurrency": 4, "timeout_s": 10,
            "max_retries": 4, "max_usd": 1, "price": {"input_per_mtok": 0, "output_per_mtok": 0},
            "gate": gate or {"min_f1": 0.0, "on_fail": "warn"}}}},
        "students": {"seeds": [1], "conditions": {"human": True, "llm": True, "soft": False,
                                                  "llm_consistency": []},
                     "models": {"tfidf": {"kind": "tfidf", "grid": {"C": [1.0]},
                                          "resources": {"threads": 1, "mem_mb": 500,
                                                        "runtime": 5}}}},
        "evaluation": {"bootstrap": {"n_resamples": 50, "confidence": 0.95, "seed": 1},
                       "task_bootstrap": {"n_resamples": 50, "seed": 1},
                       "headline": {"model": "tfidf", "teacher": None, "equal_size": None}},
    }


def write_cfg(tmp_path, cfg: dict) -> None:
    path = tmp_path / "config" / "config.yaml"
    full = yaml.safe_load(path.read_text())
    full.update(copy.deepcopy(cfg))
    path.write_text(yaml.safe_dump(full, sort_keys=False))


def scheduled(proc) -> set[str]:
    """The jobs a dry run schedules, as 'rule[wildcards]'."""
    out = set()
    for m in JOB_RE.finditer(proc.stdout + proc.stderr):
        wc = re.search(r"^    wildcards: (.*)$", m.group(2), re.M)
        out.add(f"{m.group(1)}[{wc.group(1) if wc else ''}]")
    return out


def unprotect(root, *tasks) -> None:
    """What a user does to relabel on purpose: `chmod u+w results/<task>/teacher/*/labels_*`."""
    for task in tasks:
        for p in (root / "results" / task / "teacher").glob("*/labels_*.parquet"):
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def nothing_to_do(proc) -> bool:
    return "Nothing to be done" in proc.stdout + proc.stderr


@pytest.fixture
def env(env_with_venv):
    return {**env_with_venv, KEY_ENV: KEY}


def test_only_what_changes_results_reruns(tmp_path, env):
    with FakeOpenAI(api_key=KEY) as srv:
        base = study_cfg(srv.base_url)
        make_study(tmp_path, tasks=("alpha", "beta"), n=220, extra=copy.deepcopy(base))
        run_snakemake(tmp_path, "--cores", "2", env=env)
        assert (tmp_path / "results/summary/headline.csv").exists()
        bought = len(srv.requests)
        assert bought > 0
        assert nothing_to_do(run_snakemake(tmp_path, "-n", env=env))

        # (a) every operational setting at once: nothing is scheduled
        ops = copy.deepcopy(base)
        t = ops["teachers"]["models"]["fake"]
        t.update(concurrency=1, requests_per_minute=600, tokens_per_minute=100000, timeout_s=30,
                 max_retries=2, max_usd=50, api_key_env="FAKE_RERUN_KEY2",
                 price={"input_per_mtok": 5, "output_per_mtok": 15},
                 batch={"enabled": False, "poll_s": 5, "max_wait_s": 60},
                 resources={"gpu": 0, "mem_mb": 1234, "runtime": 7})
        ops["teachers"]["cache_dir"] = "cache/llm-moved"
        ops["students"].update(device="cpu", eval_batch_size=7, save_models=False)
        ops["students"]["models"]["tfidf"]["resources"] = {"threads": 2, "mem_mb": 900,
                                                          "runtime": 9}
        write_cfg(tmp_path, ops)
        env2 = {**env, "FAKE_RERUN_KEY2": KEY}
        proc = run_snakemake(tmp_path, "-n", env=env2)
        assert nothing_to_do(proc), sorted(scheduled(proc))
        # ... and the job reads them at run time: the new key variable is required up front
        proc = run_snakemake(tmp_path, "-n", env=env, check=False)
        assert proc.returncode != 0 and "FAKE_RERUN_KEY2" in proc.stdout + proc.stderr
        write_cfg(tmp_path, base)

        # (b) one task's prompt: its labelling and what depends on its labels, nothing else.
        # The paid labels are write-protected (Snakemake's protected()): as they would be
        # rewritten, the DAG build stops, naming them, until the protection is removed on purpose
        # (`chmod u+w`). Root ignores write permissions, and so does Snakemake's check.
        for split in ("validation", "test", "train"):
            labels = tmp_path / f"results/alpha/teacher/fake/labels_{split}.parquet"
            assert not labels.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        cb_path = tmp_path / "config/tasks/alpha.yaml"
        original = cb_path.read_text()
        cb = yaml.safe_load(original)
        cb["prompt"] = {"instruction": "Does the text talk about public money? yes or no."}
        write_codebook(tmp_path / "config" / "tasks", cb)
        if os.geteuid() != 0:
            proc = run_snakemake(tmp_path, "-n", env=env, check=False)
            assert proc.returncode != 0
            assert "Write-protected output files" in proc.stdout + proc.stderr
            assert "alpha/teacher/fake/labels_validation.parquet" in proc.stdout + proc.stderr
            unprotect(tmp_path, "alpha")
        jobs = scheduled(run_snakemake(tmp_path, "-n", env=env))
        assert "teacher_label[task=alpha, teacher=fake, teacher_split=validation]" in jobs, jobs
        assert "teacher_label[task=alpha, teacher=fake, teacher_split=test]" in jobs, jobs
        assert "metrics[task=alpha]" in jobs and "summary[]" in jobs, jobs
        allowed = re.compile(r"(teacher_label|teacher_gate|teacher_label_train|metrics)"
                             r"\[task=alpha.*|train_student\[task=alpha, model=tfidf, "
                             r"condition=llm-fake\]|(summary|plot|figures|all|prevalence|budget|"
                             r"cost_f1|disagreements)\[\]")  # cross-task aggregates: seconds
        assert all(allowed.fullmatch(j) for j in jobs), sorted(jobs)
        assert len(srv.requests) == bought  # nothing bought by dry runs
        cb_path.write_text(original)
        assert nothing_to_do(run_snakemake(tmp_path, "-n", env=env))

        # (c) the split seed: every task from the split on (not the ingest)
        seed = copy.deepcopy(base)
        seed["split"]["seed"] = 2
        write_cfg(tmp_path, seed)
        unprotect(tmp_path, "alpha", "beta")
        jobs = scheduled(run_snakemake(tmp_path, "-n", env=env))
        for task in ("alpha", "beta"):
            assert f"split[task={task}]" in jobs
            assert f"teacher_label[task={task}, teacher=fake, teacher_split=test]" in jobs
            assert f"train_student[task={task}, model=tfidf, condition=human-40]" in jobs
            assert f"metrics[task={task}]" in jobs
            assert f"ingest[task={task}]" not in jobs
    for p in tmp_path.rglob("*"):  # the key is in no file, job script or Snakemake record
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p


def test_stopped_gate_and_failed_task_are_reported_not_fatal(tmp_path, env):
    """beta's human labels are the opposite of what the teacher answers: its gate stops; gamma's
    data is broken: its ingest fails. alpha's (and beta's) tables, figures and report are
    complete, and beta's missing LLM runs and the excluded gamma are listed, with why."""
    with FakeOpenAI(api_key=KEY, noise=0.0) as srv:
        make_study(tmp_path, tasks=("alpha", "beta", "gamma"), n=220,
                   extra=study_cfg(srv.base_url, gate={"min_f1": 0.5, "on_fail": "stop"}))
        raw = tmp_path / "raw/gamma.csv"
        raw.write_text(raw.read_text().replace(",0\n", ",x\n", 1))
        for task in ("alpha", "beta"):  # every positive text carries the fake's keyword
            raw = tmp_path / f"raw/{task}.csv"
            df = pd.read_csv(raw, dtype=str)
            pos = df["code"] == "1"
            df.loc[pos, "text"] = df.loc[pos, "text"].str.replace(
                r"\b(budget|tariff|deficit|spending)\b", "tax", regex=True)
            df.to_csv(raw, index=False)
        cb_path = tmp_path / "config/tasks/beta.yaml"
        cb = yaml.safe_load(cb_path.read_text())
        cb["source"]["label"]["map"] = {"1": "no", "0": "yes"}
        write_codebook(tmp_path / "config" / "tasks", cb)
        # a failed job stops only what depends on it (--keep-going); the tables need every task
        proc = run_snakemake(tmp_path, "--cores", "2", "--keep-going", env=env, check=False)
        assert proc.returncode != 0
        assert (tmp_path / "results/alpha/metrics.csv").exists()
        assert (tmp_path / "results/beta/metrics.csv").exists()
        assert not (tmp_path / "results/summary/meta.json").exists()
        # leaving the failed task out, with the reason: the rest is reported
        cfg_path = tmp_path / "config/config.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["evaluation"]["exclude_tasks"] = {"gamma": "raw data has a label outside the codebook"}
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        proc = run_snakemake(tmp_path, "--cores", "2", env=env)
        out = proc.stdout + proc.stderr
    gate = json.loads((tmp_path / "results/beta/teacher/fake/gate.json").read_text())
    assert gate["passed"] is False and gate["on_fail"] == "stop"
    assert json.loads((tmp_path / "results/alpha/teacher/fake/gate.json").read_text())["passed"]
    # beta's training set was not bought, its LLM-label student not trained; alpha's were
    assert not (tmp_path / "results/beta/teacher/fake/labels_train.parquet").exists()
    assert not (tmp_path / "results/beta/students/tfidf/llm-fake").exists()
    assert (tmp_path / "results/alpha/students/tfidf/llm-fake/predictions.parquet").exists()
    assert "the training set will not be labelled" in (
        tmp_path / "logs/beta/teacher/fake/gate.log").read_text()
    # every table and figure is there; beta is scored on what it has
    for f in ("summary/headline.csv", "summary/headline.md", "summary/meta.json",
              "figures/median_f1.png", "alpha/metrics.csv", "beta/metrics.csv"):
        assert (tmp_path / "results" / f).exists(), f
    metrics = pd.read_csv(tmp_path / "results/beta/metrics.csv")
    assert "human-40" in set(metrics["condition"]) and "llm-fake" not in set(metrics["condition"])
    meta = json.loads((tmp_path / "results/summary/meta.json").read_text())
    assert meta["tasks"] == ["alpha", "beta"]
    assert [(m["task"], m["teacher"]) for m in meta["missing"]] == [("gamma", None),
                                                                    ("beta", "fake")]
    assert "label outside the codebook" in meta["missing"][0]["reason"]
    assert "gate stopped" in meta["missing"][1]["reason"]
    assert "MISSING" in (tmp_path / "results/summary/headline.md").read_text()
    head = pd.read_csv(tmp_path / "results/summary/headline.csv")
    llm = head[head["condition"] == "llm-fake"]
    assert len(llm) == 1 and int(llm["n_tasks"].iloc[0]) == 1
    assert "MISSING task beta" in out  # the summary job says it as it runs
    # the headline printed in the terminal says it too
    proc = subprocess.run([sys.executable, "-m", "annodistill.cli", "evaluate", "headline"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT / "workflow")})
    assert proc.returncode == 0, proc.stderr
    assert "MISSING task beta" in proc.stdout and "gate stopped" in proc.stdout
    assert "MISSING task gamma" in proc.stdout
    # nothing left to do: a stopped gate is a finished state, not a failure to retry
    assert nothing_to_do(run_snakemake(tmp_path, "-n", env=env))
