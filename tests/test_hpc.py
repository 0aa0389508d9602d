"""HPC pieces that need no cluster: the profiles Snakemake finds from the project root, and the
model pre-fetch for compute nodes without internet (against a real, offline Hugging Face cache)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from test_slurm import jobs_in
from test_workflow import make_study

sys.path.insert(0, str(ROOT / "workflow"))
from annodistill.hub import model_refs  # noqa: E402


def snakemake_from_root(workdir: Path, *args: str, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "SLURM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "snakemake", *args, "-d", str(workdir),
           "--configfile", str(workdir / "config" / "config.yaml")]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)


def test_profiles_found_from_project_root(tmp_path):
    make_study(tmp_path, tasks=("alpha",), extra={"students": {"models": {
        "tfidf": {"kind": "tfidf", "grid": {"C": [1.0]}}}}})
    proc = snakemake_from_root(tmp_path, "--profile", "slurm", "-n", "-p",
                               env_extra={"SBATCH_PARTITION": "gpu-test",
                                          "SBATCH_ACCOUNT": "proj42",
                                          "ANNODISTILL_TRAIN_PARTITION": "train-test"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in out, out[:500]
    # partition and account from the environment, per-rule memory from the workflow profile
    ingest = out[out.index("rule ingest:"):]
    ingest = ingest[:ingest.index("\n\n")]
    assert "slurm_partition=gpu-test" in ingest and "slurm_account=proj42" in ingest, ingest
    assert "mem_mb=4000" in ingest and "runtime=20" in ingest, ingest
    train = out[out.index("rule train_student:"):]
    train = train[:train.index("\n\n")]
    assert "slurm_partition=train-test" in train, train
    # without them: no partition or account at all (the cluster's defaults apply)
    proc = snakemake_from_root(tmp_path, "--profile", "slurm", "-n", "-p", "data")
    assert proc.returncode == 0 and "slurm_partition" not in proc.stdout + proc.stderr


def test_slurm_profile_settings():
    prof = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue"  # sacct hangs without accounting
    assert prof["retries"] >= 1 and prof["latency-wait"] >= 30 and prof["jobs"] >= 10
    assert "attempt" in prof["default-resources"]["mem_mb"]
    wf = yaml.safe_load((ROOT / "workflow/profiles/default/config.yaml").read_text())
    assert "default-resources" not in wf  # it would drop the machine profile's partition
    for rule, res in wf["set-resources"].items():
        assert "slurm_partition" not in res and "slurm_account" not in res, rule
        assert "attempt" in str(res.get("mem_mb", "attempt")), rule
    assert (ROOT / "profiles" / "default" / "config.yaml").resolve() == \
        (ROOT / "workflow/profiles/default/config.yaml").resolve()


def test_model_refs_of_the_paper_config():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    refs = model_refs(cfg, root=ROOT)
    students = {r["name"]: r for r in refs if r["role"] == "student"}
    hub = {r["ref"] for r in refs if r["kind"] == "hub"}
    assert "tfidf" not in students
    expected = {m["path"] for name, m in cfg["students"]["models"].items() if m.get("kind") != "tfidf"}
    assert hub >= expected and expected
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert all(r["kind"] == "local" for r in model_refs(demo, root=ROOT) if r["role"] == "student")


def fake_hub_cache(hf_home: Path, repo: str) -> Path:
    """A Hugging Face cache holding one snapshot of `repo`, laid out as huggingface_hub writes it."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    base = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(sha)
    return snap


def run_prefetch(tmp_path: Path, cfg: dict, hf_home: Path):
    cfg_path = tmp_path / "study.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT / "workflow"))
    return subprocess.run([sys.executable, "-m", "annodistill.hub", "prefetch-models",
                           "--config", str(cfg_path), "--manifest", str(tmp_path / "m.json"),
                           "--root", str(tmp_path)], capture_output=True, text=True, env=env)


def study_with(models: dict) -> dict:
    return {"tasks": ["alpha"], "split": {"test_size": 10, "validation_size": 5,
                                          "train_sizes": [5], "llm_train_size": 5},
            "students": {"models": models}}


def test_prefetch_offline_uses_the_cache_and_fails_clearly_without(tmp_path):
    hf_home = tmp_path / "hf"
    (tmp_path / "local-model").mkdir()
    models = {"cached": {"kind": "encoder", "path": "org/cached-model"},
              "folder": {"kind": "encoder", "path": "local-model"},
              "tfidf": {"kind": "tfidf"}}
    snap = fake_hub_cache(hf_home, "org/cached-model")
    proc = run_prefetch(tmp_path, study_with(models), hf_home)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "m.json").read_text())
    rows = {r["name"]: r for r in manifest["models"]}
    assert set(rows) == {"cached", "folder"}
    assert Path(rows["cached"]["local_path"]) == snap and rows["folder"]["kind"] == "local"

    # a model that is not in the cache: exit 2, one line naming it, no manifest
    (tmp_path / "m.json").unlink()
    models["missing"] = {"kind": "encoder", "path": "org/not-fetched"}
    proc = run_prefetch(tmp_path, study_with(models), hf_home)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "model 'missing'" in last and "org/not-fetched" in last and "HF_HUB_OFFLINE" in last
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_added_model_runs_only_its_jobs(tmp_path, env_with_venv):
    """A finished study plus one new model: only the new model's training and what aggregates it
    (each task's metrics, the tables and figures) are scheduled; data and old models are not."""
    from test_workflow import run_snakemake

    tfidf = {"kind": "tfidf", "grid": {"C": [1.0]}}
    make_study(tmp_path, extra={"students": {"models": {"tfidf": tfidf}}})
    run_snakemake(tmp_path, "--cores", "2", env=env_with_venv)
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n", env=env_with_venv).stdout
    make_study(tmp_path, extra={"students": {"models": {
        "tfidf": tfidf, "tfidf-bigram": dict(tfidf, grid={"C": [1.0], "ngram_range": [[1, 2]]})}}})
    proc = run_snakemake(tmp_path, "-n", env=env_with_venv)
    jobs = jobs_in(proc.stdout)
    rules = [r for r, _, _ in jobs]
    train = [w for r, w, _ in jobs if r == "train_student"]
    assert train and all(w["model"] == "tfidf-bigram" for w in train), proc.stdout[-3000:]
    assert len(train) == 2 * 2  # 2 tasks x human-50, human-100
    assert set(rules) - {"train_student"} <= {"metrics", "summary", "plot", "all"}, rules
