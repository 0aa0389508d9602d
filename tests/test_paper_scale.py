"""The paper-scale study (config/paper.yaml: 14 tasks, the paper's models and conditions, a 27-point
grid, 3 seeds) as a dry run on stand-in data: the DAG builds and schedules at most a few hundred
jobs. Build time is measured in benchmarks/bench_dag.py, not here.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from conftest import ROOT, synthetic_rows

PAPER = ROOT / "config" / "paper.yaml"
MAX_JOBS = 500  # "a few hundred"


def make_paper_study(dest: Path, n_rows: int = 2000) -> Path:
    """Stand-in raw files for every task of config/paper.yaml under `dest`; returns the config.

    Each codebook's source (CSV with id, text, label 1/0) gets a generated file of `n_rows` rows,
    enough for the paper's split sizes (500 test + 250 validation + 1,000 pool)."""
    cfg = yaml.safe_load(PAPER.read_text())
    task_dir = dest / cfg["task_dir"]
    task_dir.mkdir(parents=True)
    for k, task in enumerate(cfg["tasks"]):
        src = ROOT / cfg["task_dir"] / f"{task}.yaml"
        shutil.copy2(src, task_dir / src.name)
        source = yaml.safe_load(src.read_text())["source"]
        raw = dest / source["path"]
        raw.parent.mkdir(parents=True, exist_ok=True)
        label_col = source["label"]["column"]
        with open(raw, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=[source["id_column"], source["text_column"],
                                               label_col])
            w.writeheader()
            for r in synthetic_rows(n_rows, 0.3, seed=k):
                w.writerow({source["id_column"]: r["id"], source["text_column"]: r["text"],
                            label_col: r["code"]})
    # files the config names outside the tasks (e.g. the evaluation's paper reference)
    for section in ("evaluation",):
        for value in (cfg.get(section) or {}).values():
            if isinstance(value, str) and (ROOT / value).is_file():
                (dest / value).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / value, dest / value)
    path = dest / "config" / "paper.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def dry_run(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(ROOT / "Snakefile"),
           "-d", str(workdir), "--configfile", str(configfile), "-n", "--quiet", "rules"]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(workdir),
           "HF_HUB_OFFLINE": "1",
           # the GPT-4 teacher's key variable must be set to build the DAG (envvars:); a dry run
           # sends nothing, so any value does
           "OPENAI_API_KEY": "sk-dry-run-only"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)


def job_counts(output: str) -> Counter:
    """The `Job stats` table of a dry run."""
    counts = Counter()
    block = output.split("Job stats:", 1)[-1]
    for line in block.splitlines():
        m = re.match(r"^([A-Za-z_][\w]*)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_paper_scale_dag(tmp_path):
    cfg_path = make_paper_study(tmp_path)
    proc = dry_run(tmp_path, cfg_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    total = sum(counts.values())
    cfg = yaml.safe_load(cfg_path.read_text())
    n_tasks = len(cfg["tasks"])
    assert n_tasks == 14
    assert counts["ingest"] == n_tasks and counts["split"] == n_tasks, counts
    assert 0 < total <= MAX_JOBS, counts
    # one training job per (task, model, condition): every seed and grid point inside the job
    if "train_student" in counts:
        assert counts["train_student"] % n_tasks == 0, counts
    # one task's named target schedules only that task's jobs: 1/14 of the per-task work
    one_proc = dry_run(tmp_path, cfg_path, "task_task01")
    assert one_proc.returncode == 0, one_proc.stdout[-3000:] + one_proc.stderr[-3000:]
    one = job_counts(one_proc.stdout + one_proc.stderr)
    per_task = {r: c for r, c in counts.items() if c % n_tasks == 0 and c >= n_tasks}
    for rule, c in per_task.items():
        assert one[rule] == c // n_tasks, (rule, one, counts)
    assert not {"summary", "plot"} & set(one), one  # the cross-task aggregates are not asked for
