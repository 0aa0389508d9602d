"""The real `snakemake` on a tiny generated study in a temporary directory; `snakemake --lint`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from conftest import ROOT, write_task

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_study(workdir: Path, tasks=("alpha", "beta"), n=400, extra: dict | None = None) -> Path:
    for k, t in enumerate(tasks):
        write_task(workdir, t, n, 0.3, seed=k)
    cfg = {"study": "tiny", "tasks": list(tasks), "task_dir": "config/tasks", "fetch_vader": False,
           "split": {"seed": 1, "test_size": 100, "validation_size": 50, "train_sizes": [50, 100],
                     "llm_train_size": 100}}
    cfg.update(extra or {})
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args, env=None, check=True):
    cmd = SNAKEMAKE + ["-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                       "--configfile", str(workdir / "config" / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def test_data_stage_end_to_end(tmp_path, env_with_venv):
    make_study(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", "data", env=env_with_venv)
    for t in ("alpha", "beta"):
        m = yaml.safe_load((tmp_path / f"results/{t}/splits/manifest.json").read_text())
        assert m["splits"]["test"]["n"] == 100
        test = set(pd.read_parquet(tmp_path / f"results/{t}/splits/test.parquet")["id"])
        pool = set(pd.read_parquet(tmp_path / f"results/{t}/splits/train_pool.parquet")["id"])
        assert not test & pool
    # nothing left to do on a rerun
    proc = run_snakemake(tmp_path, "--cores", "1", "data", "-n", env=env_with_venv)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_fails_at_dag_build(tmp_path, env_with_venv):
    make_study(tmp_path, extra={"tasks": ["alpha", "nosuch"]})
    proc = run_snakemake(tmp_path, "-n", env=env_with_venv, check=False)
    assert proc.returncode != 0
    assert "no codebook for task 'nosuch'" in proc.stdout + proc.stderr
    make_study(tmp_path, extra={"split": {"test_size": 0, "validation_size": 5,
                                          "train_sizes": [5], "llm_train_size": 5}})
    proc = run_snakemake(tmp_path, "-n", env=env_with_venv, check=False)
    assert proc.returncode != 0 and "test_size" in proc.stdout + proc.stderr


def test_bad_data_fails_cleanly(tmp_path, env_with_venv):
    make_study(tmp_path, tasks=("alpha",))
    raw = tmp_path / "raw" / "alpha.csv"
    raw.write_text(raw.read_text().replace(",0\n", ",x\n", 1))
    proc = run_snakemake(tmp_path, "--cores", "1", "data", env=env_with_venv, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs/alpha/ingest.log").read_text()
    assert "field 'code': label 'x' is outside the codebook" in log
    assert not (tmp_path / "results/alpha/data/clean.parquet").exists()


def test_lint_clean(env_with_venv):
    proc = subprocess.run(SNAKEMAKE + ["--lint"], cwd=ROOT, capture_output=True, text=True,
                          env=env_with_venv)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_study_plans_from_a_fresh_checkout(tmp_path, env_with_venv):
    """On a fresh clone nothing is fetched yet: the default study's DAG must still build,
    starting from fetch_vader (a regression test: ingest once needed a file no rule made)."""
    import shutil

    shutil.copytree(ROOT / "config", tmp_path / "config")
    proc = run_snakemake(tmp_path, "-n", "--quiet", "rules", env=env_with_venv)
    out = proc.stdout + proc.stderr
    assert "fetch_vader" in out and "train_student" in out and "summary" in out


def test_jobs_run_the_python_that_runs_snakemake(tmp_path, env_with_venv):
    """`<venv>/bin/snakemake` without an activated venv: the jobs must not fall back to whatever
    `python` is first on PATH (here: one without the study's packages)."""
    import os

    snakemake = Path(sys.executable).parent / "snakemake"
    assert snakemake.exists(), snakemake
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "python").write_text("#!/bin/sh\necho 'the python on PATH was used' >&2\nexit 97\n")
    (decoy / "python").chmod(0o755)
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in env_with_venv.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(decoy), *path])
    make_study(tmp_path / "study", tasks=("alpha",))
    work = tmp_path / "study"
    proc = subprocess.run([str(snakemake), "-s", str(ROOT / "Snakefile"), "-d", str(work),
                           "--configfile", str(work / "config" / "config.yaml"), "--cores", "1",
                           "data"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (work / "results/alpha/splits/manifest.json").exists()
