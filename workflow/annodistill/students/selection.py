"""The selection split and the selection score: where the grid winner is chosen. Never the test set.

Selection sources:
- `same_source` (default): a seeded share of the condition's **base ids** is held out (`carve_ids`).
  The carve depends only on the ids (in rank order), the fraction and the seed, never on a label,
  so `human-N`, `llm-<t>`, `llm-<t>-cons<k>` and `soft-<t>` of equal size train on the same texts
  and select on the same held-out texts (the paired design); the held-out labels come from the
  condition's own source (LLM labels for an LLM condition: a researcher without extra human labels
  has nothing else).
- `human_validation`: the human validation sample (results/{task}/splits/validation.parquet,
  the teacher's validation items); every base id is used for training.

The score (`selection_key`): a grid point whose selection predictions are all one class never beats
one that predicts several classes; then the configured metric (`selection_metric`, default
`macro_f1` over the codebook's labels, which a constant predictor cannot win the way it can win the
positive-class F1 when the source's labels are mostly positive); ties go to the lower loss, then to
grid order. Metrics come from scikit-learn.

Functions here receive training/validation frames only; the test set is not a parameter of any
function in this module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from ..contracts import SPLIT_COLUMNS
from ..errors import InputError
from ..io import read_parquet_columns

SOURCES = ("same_source", "human_validation")
METRICS = ("macro_f1", "f1", "accuracy", "loss")


def carve_ids(base_ids: list[str], *, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split the base ids (rank order) into (train ids, selection ids): label-blind and seeded."""
    n = len(base_ids)
    n_sel = max(2, int(round(fraction * n)))
    if n - n_sel < 2:
        raise InputError(f"{n} training items are too few to hold out a selection split of "
                         f"{fraction:.0%}")
    order = np.random.default_rng(seed).permutation(n)
    sel = set(order[:n_sel].tolist())
    return ([b for i, b in enumerate(base_ids) if i not in sel],
            [b for i, b in enumerate(base_ids) if i in sel])


def human_validation(path: str | Path, *, label_names: list[str]) -> pd.DataFrame:
    """The human validation sample as a selection frame (id, text, label, target_0..K-1)."""
    from .conditions import target_columns

    path = Path(path)
    df = read_parquet_columns(path, SPLIT_COLUMNS, "human validation sample")
    bad = ~df["label"].isin(label_names)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"label {df['label'].iloc[i]!r} is not one of {label_names}",
                         path=str(path), row=i, field="label")
    df = df[SPLIT_COLUMNS].assign(id=df["id"].astype(str)).reset_index(drop=True)
    for j, col in enumerate(target_columns(len(label_names))):
        df[col] = (df["label"] == label_names[j]).astype(float)
    return df


def selection_scores(probs: np.ndarray, labels: np.ndarray, targets: np.ndarray) -> dict:
    """Scores of (n, K) predicted probabilities against the selection labels (codes 0..K-1) and
    target distributions: macro-F1 over all K labels, accuracy, the cross-entropy against the
    targets, and whether the predictions are one class."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    classes = list(range(k))
    t = np.clip(targets, 0, 1)
    t = t / t.sum(axis=1, keepdims=True)
    pc = np.clip(probs, 1e-7, 1.0)
    loss = float(np.mean(-(t * np.log(pc / pc.sum(axis=1, keepdims=True))).sum(axis=1)))
    return {"macro_f1": float(f1_score(labels, pred, labels=classes, average="macro",
                                       zero_division=0)),
            "accuracy": float(accuracy_score(labels, pred)),
            "loss": loss,
            "constant": bool(len(np.unique(pred)) < 2)}


def grid_record(probs: np.ndarray, labels: np.ndarray, targets: np.ndarray,
                positive_index: int | None) -> dict:
    """The selection columns of one grid point's record (run.json `grid`)."""
    sc = selection_scores(probs, labels, targets)
    f1 = sc["macro_f1"]
    if positive_index is not None:
        pred = probs.argmax(axis=1)
        f1 = float(f1_score(labels == positive_index, pred == positive_index, zero_division=0))
    return {"selection_macro_f1": sc["macro_f1"], "selection_f1": f1,
            "selection_accuracy": sc["accuracy"], "selection_loss": sc["loss"],
            "selection_constant": sc["constant"]}


def selection_key(rec: dict, metric: str) -> tuple:
    """Sort key of a grid point (larger is better); see the module docstring."""
    if metric not in METRICS:
        raise InputError(f"selection_metric must be one of {METRICS}, got {metric!r}",
                         field="selection_metric")
    value = -rec["selection_loss"] if metric == "loss" else rec[f"selection_{metric}"]
    return (not rec["selection_constant"], value if value is not None else -np.inf,
            -rec["selection_loss"])

