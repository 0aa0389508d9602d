"""Leak-free splits, the paper's protocol, deterministic per (task, seed).

From the clean table we draw, in this order and without overlap:
1. the held-out human **test** set (`test_size`): scored only, never in a prompt, training or
   model selection;
2. the human **validation** sample (`validation_size`, the paper's 250): validates the LLM teacher
   and is its few-shot pool;
3. the **training pool**, a seeded ordering (`rank`) of up to max(train_sizes, llm_train_size)
   items: the human training set of size n is `rank < n`, the LLM-labelled set is
   `rank < llm_train_size`. Sets are nested, so the largest human set and the LLM set of the same
   size are the same texts with different labels (the paired design).
Items left over are `unused`. With `stratify`, the test and validation samples keep the label
shares of the whole table (scikit-learn's stratified split).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ..contracts import ids_digest  # noqa: F401 - the manifest's id hash
from ..errors import InputError
from ..io import read_parquet

MIN_PER_CLASS = 2


def make_splits(clean: pd.DataFrame, *, seed: int, test_size: int, validation_size: int,
                train_sizes: list[int], llm_train_size: int, stratify: bool = False,
                labels: list[str] | None = None, where: str = "clean table") -> dict:
    """Return {'test', 'validation', 'train_pool', 'membership'} frames and the manifest dict."""
    pool_size = max(max(train_sizes), llm_train_size)
    need = test_size + validation_size + pool_size
    n = len(clean)
    if need > n:
        raise InputError(f"too few items: {n} available, the split sizes need {need} "
                         f"(test {test_size} + validation {validation_size} + training pool "
                         f"{pool_size})", path=where)
    labels = labels or sorted(clean["label"].unique())
    counts = clean["label"].value_counts()
    for lab in labels:
        if counts.get(lab, 0) < 3 * MIN_PER_CLASS:
            raise InputError(f"too few items of class {lab!r} ({counts.get(lab, 0)}) for a test, "
                             f"validation and training set with at least {MIN_PER_CLASS} each",
                             path=where, field="label")
    df = clean.sort_values("id", kind="stable").reset_index(drop=True)
    strat = df["label"] if stratify else None
    rest, test = train_test_split(df, test_size=test_size, random_state=seed, shuffle=True,
                                  stratify=strat)
    strat = rest["label"] if stratify else None
    rest, validation = train_test_split(rest, test_size=validation_size,
                                        random_state=seed + 1, shuffle=True, stratify=strat)
    rng = np.random.default_rng(seed + 2)
    rest = rest.sort_values("id", kind="stable")
    order = rng.permutation(len(rest))
    pool = rest.iloc[order[:pool_size]].reset_index(drop=True)
    pool["rank"] = np.arange(len(pool), dtype="int64")
    unused = rest.iloc[order[pool_size:]]

    def check(frame: pd.DataFrame, name: str) -> None:
        c = frame["label"].value_counts()
        for lab in labels:
            if c.get(lab, 0) < MIN_PER_CLASS:
                raise InputError(f"too few items of class {lab!r} in the {name} ({c.get(lab, 0)} "
                                 f"of {len(frame)}; at least {MIN_PER_CLASS} needed): use larger "
                                 "sizes, `stratify: true`, or another seed", path=where,
                                 field="label")

    check(test, "test set")
    check(validation, "validation sample")
    for size in sorted(set(train_sizes) | {llm_train_size}):
        check(pool[pool["rank"] < size], f"training set of size {size}")

    test = test.sort_values("id", kind="stable").reset_index(drop=True)
    validation = validation.sort_values("id", kind="stable").reset_index(drop=True)
    membership = pd.concat([
        pd.DataFrame({"id": test["id"], "split": "test", "rank": pd.NA}),
        pd.DataFrame({"id": validation["id"], "split": "validation", "rank": pd.NA}),
        pd.DataFrame({"id": pool["id"], "split": "train_pool", "rank": pool["rank"]}),
        pd.DataFrame({"id": unused["id"], "split": "unused", "rank": pd.NA}),
    ], ignore_index=True)
    membership["rank"] = membership["rank"].astype("Int64")
    membership = membership.sort_values("id", kind="stable").reset_index(drop=True)

    def describe(frame: pd.DataFrame) -> dict:
        c = frame["label"].value_counts()
        return {"n": len(frame), "label_counts": {lab: int(c.get(lab, 0)) for lab in labels},
                "ids_sha256": ids_digest(frame["id"])}

    manifest = {
        "seed": seed, "stratify": stratify,
        "sizes": {"test": test_size, "validation": validation_size,
                  "train_sizes": sorted(train_sizes), "llm_train_size": llm_train_size},
        "n_clean": n, "n_unused": len(unused),
        "splits": {"test": describe(test), "validation": describe(validation),
                   "train_pool": describe(pool)},
        "training_sets": {f"human-{s}": describe(pool[pool["rank"] < s])
                          for s in sorted(train_sizes)},
        "llm_train": describe(pool[pool["rank"] < llm_train_size]),
    }
    frames = {"test": test[["id", "text", "label"]],
              "validation": validation[["id", "text", "label"]],
              "train_pool": pool[["id", "text", "label", "rank"]], "membership": membership}
    return {"frames": frames, "manifest": manifest}


def training_set(split_dir: str | Path, n: int) -> pd.DataFrame:
    """The first n items of the training pool (the human training set of size n)."""
    pool = read_parquet(Path(split_dir) / "train_pool.parquet")
    if n > len(pool):
        raise InputError(f"training set of size {n} requested, the pool holds {len(pool)}",
                         path=str(Path(split_dir) / "train_pool.parquet"))
    return pool[pool["rank"] < n].sort_values("rank").reset_index(drop=True)
