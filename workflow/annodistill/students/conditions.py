"""Training conditions: names and the training table each name stands for.

A condition name is a path component (docs/contracts.md):
- `human-{n}`: human labels, the first n items of the training pool (`rank < n`);
- `llm-{teacher}`: teacher labels on the LLM set; items with a null label are dropped and counted;
- `llm-{teacher}-cons{t}`: the same, only items whose consistency, rounded to whole percent,
  is at least t (so `cons67` keeps 2 of 3 votes);
- `soft-{teacher}`: the target is the teacher's positive-class probability `p_positive`; where the
  teacher gave none, the positive vote share derived from `label` and `consistency`.

`training_table(...)` returns a frame with `id`, `text`, `target` (float, P(positive)) and
`label` (the hard label of the same source, used by selection and stratification).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

_HUMAN = re.compile(r"^human-(\d+)$")
_CONS = re.compile(r"^llm-([A-Za-z0-9-]+?)-cons(\d+)$")
_LLM = re.compile(r"^llm-([A-Za-z0-9-]+)$")
_SOFT = re.compile(r"^soft-([A-Za-z0-9-]+)$")


@dataclass(frozen=True)
class Condition:
    name: str
    kind: str                      # human | llm | llm_consistency | soft
    n: int | None = None           # human training size
    teacher: str | None = None
    threshold: int | None = None   # consistency threshold in percent

    @property
    def uses_teacher(self) -> bool:
        return self.teacher is not None


def parse_condition(name: str) -> Condition:
    if m := _HUMAN.match(name):
        return Condition(name, "human", n=int(m.group(1)))
    if m := _CONS.match(name):
        t = int(m.group(2))
        if not 0 <= t <= 100:
            raise InputError(f"consistency threshold must be 0..100, got {t}", field="condition")
        return Condition(name, "llm_consistency", teacher=m.group(1), threshold=t)
    if m := _LLM.match(name):
        return Condition(name, "llm", teacher=m.group(1))
    if m := _SOFT.match(name):
        return Condition(name, "soft", teacher=m.group(1))
    raise InputError(f"unknown condition {name!r} (expected human-<n>, llm-<teacher>, "
                     f"llm-<teacher>-cons<t> or soft-<teacher>)", field="condition")


def condition_names(kinds: dict, train_sizes: list[int], teachers: list[str]) -> list[str]:
    """Expand a `conditions:` block ({human: bool, llm: bool, llm_consistency: [t..], soft: bool})."""
    out: list[str] = []
    if kinds.get("human", True):
        sizes = kinds.get("human_sizes") or train_sizes
        extra = sorted(set(sizes) - set(train_sizes))
        if extra:
            raise InputError(f"human_sizes {extra} are not in split.train_sizes {train_sizes}",
                             field="students.conditions.human_sizes")
        out += [f"human-{n}" for n in sizes]
    for t in teachers:
        if kinds.get("llm", True):
            out.append(f"llm-{t}")
        out += [f"llm-{t}-cons{c}" for c in kinds.get("llm_consistency", [])]
        if kinds.get("soft", True):
            out.append(f"soft-{t}")
    return out


def _read(path: str | Path, columns: list[str], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path=str(path))
    df = pd.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}", path=str(path), field=missing[0])
    return df


def _hard_target(labels: pd.Series, positive: str, allowed: list[str], where: str) -> np.ndarray:
    bad = ~labels.isin(allowed)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"label {labels.iloc[i]!r} is not one of {allowed}", path=where, row=i,
                         field="label")
    return (labels == positive).to_numpy(dtype=np.float64)


def training_table(cond: Condition, *, train_pool: str | Path, positive: str,
                   label_names: list[str],
                   teacher_labels: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """The training table of a condition and a dict of counts (n_source, n_dropped, ...)."""
    pool = _read(train_pool, ["id", "text", "label", "rank"], "training pool")
    if cond.kind == "human":
        if cond.n > len(pool):
            raise InputError(f"training set of size {cond.n} requested, the pool holds "
                             f"{len(pool)}", path=str(train_pool))
        df = pool[pool["rank"] < cond.n].sort_values("rank").reset_index(drop=True)
        df = df[["id", "text", "label"]].copy()
        df["target"] = _hard_target(df["label"], positive, label_names, str(train_pool))
        return df, {"n_source": len(df), "n_dropped_no_label": 0, "n_dropped_consistency": 0}

    if teacher_labels is None:
        raise InputError(f"condition {cond.name!r} needs the teacher's labels_train.parquet")
    where = str(teacher_labels)
    lab = _read(teacher_labels, ["id", "label", "consistency", "p_positive"], "teacher labels")
    lab = lab.assign(id=lab["id"].astype(str))
    if lab["id"].duplicated().any():
        i = int(np.flatnonzero(lab["id"].duplicated().to_numpy())[0])
        raise InputError(f"duplicate id {lab['id'].iloc[i]!r}", path=where, row=i, field="id")
    texts = pool.set_index(pool["id"].astype(str))
    unknown = ~lab["id"].isin(texts.index)
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError(f"id {lab['id'].iloc[i]!r} is not in the training pool (a teacher label "
                         f"for an item outside the pool: test or validation leak?)", path=where,
                         row=i, field="id")
    lab = lab.merge(pool[["id", "text", "rank"]].astype({"id": str}), on="id", how="left")
    lab = lab.sort_values("rank").reset_index(drop=True)
    n_source = len(lab)
    counts = {"n_source": n_source, "n_dropped_no_label": 0, "n_dropped_consistency": 0}
    has_label = lab["label"].notna()
    if cond.kind in ("llm", "llm_consistency"):
        counts["n_dropped_no_label"] = int((~has_label).sum())
        lab = lab[has_label].reset_index(drop=True)
        if cond.kind == "llm_consistency":
            # in whole percent, so that cons67 keeps 2 of 3 votes (66.7 % rounds to 67)
            keep = np.floor(lab["consistency"].astype(float) * 100 + 0.5) >= cond.threshold
            counts["n_dropped_consistency"] = int((~keep).sum())
            lab = lab[keep].reset_index(drop=True)
        lab["label"] = lab["label"].astype(str)
        lab["target"] = _hard_target(lab["label"], positive, label_names, where)
    else:  # soft
        p = lab["p_positive"].astype(float)
        cons = lab["consistency"].astype(float)
        is_pos = (lab["label"] == positive).astype(float)
        vote_share = np.where(is_pos == 1.0, cons, 1.0 - cons)
        counts["n_from_consistency"] = int((p.isna() & has_label & cons.notna()).sum())
        p = p.where(p.notna(), pd.Series(np.where(has_label & cons.notna(), vote_share, np.nan)))
        keep = p.notna().to_numpy()
        counts["n_dropped_no_label"] = int((~keep).sum())
        bad = (p < 0) | (p > 1)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"p_positive {p.iloc[i]} outside [0, 1]", path=where, row=i,
                             field="p_positive")
        lab = lab.assign(target=p)[keep].reset_index(drop=True)
        # the hard label of the same source (for selection): the teacher's label, else p >= 0.5
        neg = [n for n in label_names if n != positive][0]
        hard = np.where(lab["target"] >= 0.5, positive, neg)
        lab["label"] = lab["label"].where(lab["label"].notna(), pd.Series(hard)).astype(str)
    if lab.empty:
        raise InputError(f"condition {cond.name!r} leaves no training items", path=where)
    return lab[["id", "text", "label", "target"]], counts
