"""Training conditions: the training table each condition name stands for.

Condition names are owned by `annodistill.contracts` (parse_condition, condition_names):
- `human-{n}`: human labels, the first n items of the training pool (`rank < n`);
- `llm-{teacher}`: teacher labels on the LLM set; items with a null label are dropped and counted;
- `llm-{teacher}-cons{t}`: the same, only items that `contracts.keeps_consistency` keeps at t
  (whole percent: `cons67` keeps 2 of 3 equal answers);
- `soft-{teacher}`: the target is the teacher's distribution over the codebook's labels: the
  `p_labels` column where the teacher wrote one; for binary tasks otherwise `p_positive`, else the
  vote share derived from `label` and `consistency`.

`training_table(...)` returns a `TrainingTable`: the condition's **base ids** (the texts the
condition is defined on, in rank order, before any label-dependent filtering: the same ids for
`human-N` and every LLM condition of size N), the training frame (`id`, `text`, `label`, and one
target column per codebook label, `target_0..target_{K-1}`, a probability distribution), and the
selection frame (for `same_source` selection: the same rows, but never consistency-filtered, so
every condition selects on the same held-out ids).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts import POOL_COLUMNS, Condition, keeps_consistency
from ..errors import InputError
from ..io import read_parquet_columns


def class_weights(targets: np.ndarray, class_weight: str | None) -> np.ndarray:
    """Per-label loss weights (K,): ones, or scikit-learn's 'balanced' weights computed over the
    target mass of each label (each item's unit weight split over the labels by its target
    distribution), so hard and soft targets are reweighted alike."""
    from sklearn.utils.class_weight import compute_class_weight

    k = targets.shape[1]
    if class_weight in (None, "none"):
        return np.ones(k)
    if class_weight != "balanced":
        raise InputError(f"class_weight must be 'balanced' or null, got {class_weight!r}",
                         field="class_weight")
    present = np.flatnonzero(targets.sum(axis=0) > 0)
    sub = targets[:, present]
    rows, cols = np.nonzero(sub > 0)
    w = compute_class_weight("balanced", classes=np.arange(len(present)), y=cols,
                             sample_weight=sub[rows, cols])
    out = np.ones(k)
    out[present] = w
    return out


def target_columns(k: int) -> list[str]:
    return [f"target_{j}" for j in range(k)]


@dataclass
class TrainingTable:
    base_ids: list[str]              # the condition's texts in rank order (label-independent)
    train: pd.DataFrame              # id, text, label, target_0..target_{K-1}
    select: pd.DataFrame             # the rows selection may use (no consistency filter)
    counts: dict = field(default_factory=dict)

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        cols = [c for c in frame.columns if c.startswith("target_")]
        return frame[cols].to_numpy(dtype=np.float64)


def _one_hot(labels: pd.Series, label_names: list[str], where: str) -> np.ndarray:
    index = {n: j for j, n in enumerate(label_names)}
    bad = ~labels.isin(label_names)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"label {labels.iloc[i]!r} is not one of {label_names}", path=where, row=i,
                         field="label")
    out = np.zeros((len(labels), len(label_names)))
    out[np.arange(len(labels)), [index[v] for v in labels]] = 1.0
    return out


def _with_targets(df: pd.DataFrame, targets: np.ndarray) -> pd.DataFrame:
    df = df[["id", "text", "label"]].reset_index(drop=True).copy()
    for j, col in enumerate(target_columns(targets.shape[1])):
        df[col] = targets[:, j]
    return df


def _soft_targets(lab: pd.DataFrame, label_names: list[str], positive: str | None,
                  where: str) -> tuple[np.ndarray, dict]:
    """(n, K) teacher distributions; rows without one are NaN. Also counts by source."""
    k = len(label_names)
    out = np.full((len(lab), k), np.nan)
    counts = {"n_from_p_labels": 0, "n_from_p_positive": 0, "n_from_consistency": 0}
    if "p_labels" in lab.columns:
        for i, raw in enumerate(lab["p_labels"]):
            if not isinstance(raw, str) or not raw:
                continue
            try:
                d = json.loads(raw)
                vec = np.array([float(d.get(n, 0.0)) for n in label_names])
            except (ValueError, TypeError, AttributeError):
                raise InputError(f"p_labels {raw!r} is not a JSON object of label -> probability",
                                 path=where, row=i, field="p_labels") from None
            if (vec < -1e-9).any() or abs(vec.sum() - 1.0) > 1e-3:
                raise InputError(f"p_labels {raw!r} is not a distribution over {label_names}",
                                 path=where, row=i, field="p_labels")
            out[i] = np.clip(vec, 0, 1) / np.clip(vec, 0, 1).sum()
            counts["n_from_p_labels"] += 1
    if k == 2 and positive is not None:
        pos_j = label_names.index(positive)
        has_label = lab["label"].notna().to_numpy()
        cons = lab["consistency"].astype(float).to_numpy()
        p = lab["p_positive"].astype(float).to_numpy()
        bad = (p < 0) | (p > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"p_positive {p[i]} outside [0, 1]", path=where, row=i,
                             field="p_positive")
        is_pos = (lab["label"] == positive).fillna(False).to_numpy(dtype=bool)
        vote = np.where(is_pos, cons, 1.0 - cons)
        for i in np.flatnonzero(np.isnan(out).any(axis=1)):
            if not np.isnan(p[i]):
                q, src = p[i], "n_from_p_positive"
            elif has_label[i] and not np.isnan(cons[i]):
                q, src = vote[i], "n_from_consistency"
            else:
                continue
            out[i, pos_j], out[i, 1 - pos_j] = q, 1.0 - q
            counts[src] += 1
    return out, counts


def training_table(cond: Condition, *, train_pool: str | Path, label_names: list[str],
                   positive: str | None = None,
                   teacher_labels: str | Path | None = None) -> TrainingTable:
    """The training table of a condition, its base ids and counts (n_source, n_dropped, ...)."""
    pool = read_parquet_columns(train_pool, POOL_COLUMNS, "training pool")
    pool = pool.assign(id=pool["id"].astype(str))
    if cond.kind == "human":
        if cond.n > len(pool):
            raise InputError(f"training set of size {cond.n} requested, the pool holds "
                             f"{len(pool)}", path=str(train_pool))
        df = pool[pool["rank"] < cond.n].sort_values("rank").reset_index(drop=True)
        df = _with_targets(df, _one_hot(df["label"], label_names, str(train_pool)))
        counts = {"n_source": len(df), "n_dropped_no_label": 0, "n_dropped_consistency": 0}
        return TrainingTable(df["id"].tolist(), df, df, counts)

    if teacher_labels is None:
        raise InputError(f"condition {cond.name!r} needs the teacher's labels_train.parquet")
    where = str(teacher_labels)
    lab = read_parquet_columns(teacher_labels, ["id", "label", "consistency", "p_positive"],
                               "teacher labels")
    lab = lab.assign(id=lab["id"].astype(str))
    if lab["id"].duplicated().any():
        i = int(np.flatnonzero(lab["id"].duplicated().to_numpy())[0])
        raise InputError(f"duplicate id {lab['id'].iloc[i]!r}", path=where, row=i, field="id")
    unknown = ~lab["id"].isin(pool["id"])
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError(f"id {lab['id'].iloc[i]!r} is not in the training pool (a teacher label "
                         f"for an item outside the pool: test or validation leak?)", path=where,
                         row=i, field="id")
    lab = lab.merge(pool[["id", "text", "rank"]], on="id", how="left")
    lab = lab.sort_values("rank").reset_index(drop=True)
    base_ids = lab["id"].tolist()
    counts = {"n_source": len(lab), "n_dropped_no_label": 0, "n_dropped_consistency": 0}
    if cond.kind in ("llm", "llm_consistency"):
        has_label = lab["label"].notna().to_numpy()
        counts["n_dropped_no_label"] = int((~has_label).sum())
        lab = lab[has_label].reset_index(drop=True)
        lab["label"] = lab["label"].astype(str)
        full = _with_targets(lab, _one_hot(lab["label"], label_names, where))
        train = full
        if cond.kind == "llm_consistency":
            keep = keeps_consistency(lab["consistency"], cond.threshold)
            counts["n_dropped_consistency"] = int((~keep).sum())
            train = full[keep].reset_index(drop=True)
    else:  # soft
        targets, src = _soft_targets(lab, label_names, positive, where)
        counts.update(src)
        keep = ~np.isnan(targets).any(axis=1)
        counts["n_dropped_no_label"] = int((~keep).sum())
        lab, targets = lab[keep].reset_index(drop=True), targets[keep]
        # the hard label of the same source (for selection): the teacher's label, else the argmax
        hard = pd.Series([label_names[j] for j in targets.argmax(axis=1)], dtype=object)
        lab["label"] = lab["label"].astype(object).where(lab["label"].notna(), hard).astype(str)
        train = full = _with_targets(lab, targets)
    if train.empty:
        raise InputError(f"condition {cond.name!r} leaves no training items", path=where)
    return TrainingTable(base_ids, train, full, counts)
