"""The student rule through the real `snakemake` on a tiny generated study."""
from __future__ import annotations

import json

import pandas as pd
from students_helpers import tiny_model
from test_workflow import make_study, run_snakemake


def test_students_rule_end_to_end(tmp_path, env_with_venv):
    model = tiny_model(tmp_path / "models" / "bert", "bert")
    students = {
        "seeds": [1, 2],
        "models": {
            "tiny": {"kind": "encoder", "path": str(model), "max_length": 32,
                     "grid": {"learning_rate": [1e-3], "batch_size": [16], "epochs": [1]},
                     "conditions": {"human_sizes": [100]},
                     "resources": {"threads": 1, "mem_mb": 500, "runtime": 5}},
            "tfidf": {"kind": "tfidf", "grid": {"C": [1.0, 10.0]}},
        },
    }
    make_study(tmp_path, tasks=("alpha",), extra={"students": students})
    run_snakemake(tmp_path, "--cores", "2", "students", env=env_with_venv)
    base = tmp_path / "results/alpha/students"
    done = sorted(p.parent.relative_to(base).as_posix() for p in base.glob("*/*/run.json"))
    assert done == ["tfidf/human-100", "tfidf/human-50", "tiny/human-100"]
    test = pd.read_parquet(tmp_path / "results/alpha/splits/test.parquet")
    pred = pd.read_parquet(base / "tiny/human-100/predictions.parquet")
    assert len(pred) == 2 * len(test) and set(pred["id"]) == set(test["id"])
    run = json.loads((base / "tiny/human-100/run.json").read_text())
    assert run["threads"] == 1 and [s["seed"] for s in run["seeds"]] == [1, 2]
    proc = run_snakemake(tmp_path, "--cores", "1", "students", "-n", env=env_with_venv)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # a changed grid re-runs exactly the jobs of that model
    students["models"]["tfidf"]["grid"]["C"] = [3.0]
    make_study(tmp_path, tasks=("alpha",), extra={"students": students})
    proc = run_snakemake(tmp_path, "--cores", "1", "students", "-n", env=env_with_venv)
    out = proc.stdout + proc.stderr
    assert "model=tfidf, condition=human-50" in out and "model=tiny" not in out


def test_bad_students_config_fails_at_dag_build(tmp_path, env_with_venv):
    make_study(tmp_path, tasks=("alpha",),
               extra={"students": {"models": {"m": {"kind": "svm"}}}})
    proc = run_snakemake(tmp_path, "-n", env=env_with_venv, check=False)
    assert proc.returncode != 0 and "svm" in proc.stdout + proc.stderr
