"""The selection split: where the grid winner is chosen. Never the test set.

- `same_source` (default): a seeded, stratified share of the condition's own training table is
  held out; its labels come from the same source as the training labels (LLM labels for an LLM
  condition: a researcher without extra human labels has nothing else).
- `human_validation`: the human validation sample (results/{task}/splits/validation.parquet,
  the teacher's validation items); the whole training table is used for training.

Functions here receive training/validation frames only; the test set is not a parameter of any
function in this module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ..errors import InputError

SOURCES = ("same_source", "human_validation")


def carve(table: pd.DataFrame, *, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the training table into (train, selection), stratified by the hard label if possible."""
    n = len(table)
    n_sel = max(2, int(round(fraction * n)))
    if n - n_sel < 2:
        raise InputError(f"{n} training items are too few to hold out a selection split of "
                         f"{fraction:.0%}")
    counts = table["label"].value_counts()
    strat = table["label"] if (len(counts) > 1 and counts.min() >= 2) else None
    idx = np.arange(n)
    tr, sel = train_test_split(idx, test_size=n_sel, random_state=seed, shuffle=True,
                               stratify=strat)
    return (table.iloc[np.sort(tr)].reset_index(drop=True),
            table.iloc[np.sort(sel)].reset_index(drop=True))


def human_validation(path: str | Path, *, positive: str, label_names: list[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError("human validation sample not found", path=str(path))
    df = pd.read_parquet(path)
    for col in ("id", "text", "label"):
        if col not in df.columns:
            raise InputError(f"validation sample lacks column {col!r}", path=str(path), field=col)
    bad = ~df["label"].isin(label_names)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"label {df['label'].iloc[i]!r} is not one of {label_names}",
                         path=str(path), row=i, field="label")
    df = df[["id", "text", "label"]].copy()
    df["target"] = (df["label"] == positive).astype(float)
    return df.reset_index(drop=True)
