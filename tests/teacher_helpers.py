"""Shared pieces of the teacher tests: a tiny task's splits, a teacher spec, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import ROOT, codebook_dict, synthetic_rows, write_codebook


def make_task(tmp: Path, n_val: int = 24, n_test: int = 20, n_pool: int = 30, seed: int = 0):
    """A codebook (labels yes/no, keyword 'tax' marks yes) and its splits; returns (cb, splits)."""
    rows = synthetic_rows(n_val + n_test + n_pool, 0.4, seed=seed)
    df = pd.DataFrame(rows)
    df["label"] = df["code"].map({1: "yes", 0: "no"})
    df = df[["id", "text", "label"]]
    d = tmp / "splits"
    d.mkdir(parents=True, exist_ok=True)
    df.iloc[:n_val].to_parquet(d / "validation.parquet", index=False)
    df.iloc[n_val:n_val + n_test].to_parquet(d / "test.parquet", index=False)
    pool = df.iloc[n_val + n_test:].copy()
    pool["rank"] = range(len(pool))
    pool.to_parquet(d / "train_pool.parquet", index=False)
    cb = codebook_dict("topic", "raw/topic.csv")
    cb["prompt"] = {"instruction": "Is the text about taxes or public money? Answer yes or no.",
                    "item_prefix": "Text: ", "answer_prefix": "Answer:"}
    path = write_codebook(tmp / "config" / "tasks", cb)
    return path, d


def spec_dict(base_url: str, **kw) -> dict:
    d = {"name": "fake", "provider": "openai", "base_url": base_url, "model": "fake-model",
         "mode": "completion", "samples": 3, "temperature": 0.6, "max_tokens": 3, "few_shot": 4,
         "concurrency": 4, "max_usd": 0, "timeout_s": 5, "max_retries": 6,
         "price": {"input_per_mtok": 0, "output_per_mtok": 0}}
    d.update(kw)
    return d


def label_cmd(spec: dict, cb: Path, splits: Path, split: str, out_dir: Path, cache: Path,
              extra=()) -> list[str]:
    return [sys.executable, "-m", "annodistill.cli", "teacher", "label", "--spec", json.dumps(spec),
            "--codebook", str(cb), "--splits-dir", str(splits), "--split", split,
            "--out", str(out_dir / f"labels_{split}.parquet"),
            "--cost", str(out_dir / f"cost_{split}.json"), "--cache-dir", str(cache),
            "--no-progress", *extra]


def env(extra: dict | None = None) -> dict:
    import os

    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "workflow") + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra or {})
    return e


def run_label(*args, extra_env=None, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(label_cmd(*args, **kw), capture_output=True, text=True,
                          env=env(extra_env), cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"label failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc
