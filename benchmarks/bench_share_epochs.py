"""Benchmark: the epoch-sharing shortcut (`share_epochs: true`) against independent grid runs.

The paper trains every grid point (learning rate, batch size, epochs) as its own run with its own
linear schedule; `share_epochs: true` instead scores one run of the largest epoch count after each
listed epoch (an approximation: the "4 epochs" point is an 8-epoch schedule stopped half-way).
This runs the same student job both ways, in the same process, on each task's human-label
condition and prints training seconds, the ratio, the chosen grid point and the test F1 / macro-F1
of each (scikit-learn).

    .venv/bin/python benchmarks/bench_share_epochs.py --tasks vader_tweets vader_nyt

Needs results/<task>/splits (run `snakemake data` or the demo first).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from annodistill.config import load_study, load_task  # noqa: E402
from annodistill.students.run import run_job  # noqa: E402
from annodistill.students.spec import model_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--tasks", nargs="+", default=["vader_tweets", "vader_nyt"])
    ap.add_argument("--condition", default=None, help="default: human-<largest train size>")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cfg = load_study(ROOT / args.config)
    cond = args.condition or f"human-{max(cfg['split']['train_sizes'])}"
    rows = []
    for task in args.tasks:
        cb = load_task(task, ROOT / cfg.get("task_dir", "config/tasks"))
        test = pd.read_parquet(ROOT / "results" / task / "splits" / "test.parquet")
        for share in (False, True):
            spec = model_spec(cfg["students"], args.model)
            spec["share_epochs"] = share
            with tempfile.TemporaryDirectory() as tmp:
                rec = run_job(task=task, model_name=args.model, condition=cond, spec=spec,
                              codebook=cb, splits_dir=ROOT / "results" / task / "splits",
                              out_predictions=Path(tmp) / "p.parquet",
                              out_run=Path(tmp) / "r.json", threads=args.threads)
                pred = pd.read_parquet(Path(tmp) / "p.parquet").merge(
                    test[["id", "label"]], on="id", suffixes=("", "_human"))
            avg = "binary" if cb.is_binary else "macro"
            kw = {"pos_label": cb.positive} if cb.is_binary else {}
            rows.append({"task": task, "condition": cond, "share_epochs": share,
                         "train_seconds": sum(s["train_seconds"] for s in rec["seeds"]),
                         "chosen": json.dumps(rec["seeds"][0]["chosen"]),
                         "f1": f1_score(pred["label_human"], pred["label"], average=avg,
                                        zero_division=0, **kw),
                         "macro_f1": f1_score(pred["label_human"], pred["label"],
                                              average="macro", zero_division=0)})
    df = pd.DataFrame(rows)
    base = df[~df["share_epochs"]].set_index("task")["train_seconds"]
    df["time_ratio_vs_independent"] = df["train_seconds"] / df["task"].map(base)
    pd.set_option("display.width", 200)
    print(df.to_string(index=False))
    if args.json:
        Path(args.json).write_text(df.to_json(orient="records", indent=2) + "\n")


if __name__ == "__main__":
    main()
