"""Human and teacher labels of the same items, per task and teacher.

The study holds three sets of items that carry both a human label and a teacher label
(docs/contracts.md): the validation sample minus the few-shot examples
(`labels_validation.parquet`), the test set (`labels_test.parquet`) and the LLM-labelled part of
the training pool (`labels_train.parquet`, human labels in `train_pool.parquet`). The prevalence
estimates, the human-label budget and the disagreement view all start from this table.

One row per (split, item): `split` (`validation`, `test`, `train`), `id`, `text`, `human` (the
codebook label), `teacher` (the teacher's modal label, None when no answer parsed),
`consistency`, `p_positive` (float, NaN when absent), `answers` (list of the raw answer strings).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import read_parquet_columns

SPLITS = ("validation", "test", "train")
# the human labels of a teacher split live in this split file of the data stage
HUMAN_SPLIT_FILE = {"validation": "validation", "test": "test", "train": "train_pool"}


@dataclass
class PairedLabels:
    task: str
    teacher: str
    labels: tuple[str, ...]   # codebook order
    positive: str
    items: pd.DataFrame

    def split(self, name: str) -> pd.DataFrame:
        return self.items[self.items["split"] == name].reset_index(drop=True)

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes whose prevalence is estimated: the positive class of a binary task, every
        label (one vs rest) of a multi-class task."""
        return (self.positive,) if len(self.labels) == 2 else self.labels


def _read(path: str | Path, columns: list[str], what: str) -> pd.DataFrame:
    df = read_parquet_columns(path, columns, what)
    return df.assign(id=df["id"].astype(str))


def _answers(v) -> list[str]:
    """The `answers` column: a JSON list of raw answer strings (docs/teacher.md)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(a) for a in v]
    try:
        out = json.loads(v)
    except (TypeError, ValueError):
        return [str(v)]
    return [str(a) for a in out] if isinstance(out, list) else [str(out)]


def teacher_file(path: str | Path) -> tuple[str, str, str]:
    """results/{task}/teacher/{teacher}/labels_{split}.parquet -> (task, teacher, split)."""
    p = Path(path)
    if p.parent.parent.name != "teacher" or not p.name.startswith("labels_") \
            or p.suffix != ".parquet" or p.stem[len("labels_"):] not in SPLITS:
        raise InputError("expected results/{task}/teacher/{teacher}/labels_{validation|test|train}"
                         ".parquet", path=str(path))
    return p.parent.parent.parent.name, p.parent.name, p.stem[len("labels_"):]


def split_file(path: str | Path) -> tuple[str, str]:
    """results/{task}/splits/{name}.parquet -> (task, name)."""
    p = Path(path)
    if p.parent.name != "splits" or p.suffix != ".parquet":
        raise InputError("expected results/{task}/splits/<split>.parquet", path=str(path))
    return p.parent.parent.name, p.stem


def load_paired(task: str, labels: tuple[str, ...], positive: str, human_files: dict[str, str],
                teacher_files: list[str]) -> list[PairedLabels]:
    """One PairedLabels per teacher of `task`.

    human_files: {"validation": ..., "test": ..., "train_pool": ...} (the data stage's splits);
    teacher_files: that task's labels_<split>.parquet files (any subset of the three splits).
    """
    human: dict[str, pd.DataFrame] = {}
    for name, path in human_files.items():
        df = _read(path, ["id", "label"], f"{name} split")
        bad = ~df["label"].isin(labels)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"human label {df['label'].iloc[i]!r} is not one of {list(labels)}",
                             path=str(path), row=i, field="label")
        if "text" not in df.columns:
            df = df.assign(text="")
        human[name] = df.set_index("id")
    by_teacher: dict[str, list[pd.DataFrame]] = {}
    for path in sorted(teacher_files):
        t_task, teacher, split = teacher_file(path)
        if t_task != task:
            raise InputError(f"teacher labels of task {t_task!r} given for task {task!r}",
                             path=str(path))
        source = HUMAN_SPLIT_FILE[split]
        if source not in human:
            raise InputError(f"no human {source} split given for these teacher labels",
                             path=str(path))
        lab = _read(path, ["id", "label", "consistency"], f"teacher {split} labels")
        h = human[source]
        unknown = ~lab["id"].isin(h.index)
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise InputError(f"id {lab['id'].iloc[i]!r} is not in the {source} split",
                             path=str(path), row=i, field="id")
        if lab["id"].duplicated().any():
            i = int(np.flatnonzero(lab["id"].duplicated().to_numpy())[0])
            raise InputError(f"duplicate id {lab['id'].iloc[i]!r}", path=str(path), row=i,
                             field="id")
        tl = [v if isinstance(v, str) else None for v in lab["label"]]
        bad = [i for i, v in enumerate(tl) if v is not None and v not in labels]
        if bad:
            raise InputError(f"teacher label {tl[bad[0]]!r} is not one of {list(labels)}",
                             path=str(path), row=bad[0], field="label")
        p = (pd.to_numeric(lab["p_positive"], errors="coerce") if "p_positive" in lab.columns
             else pd.Series(np.nan, index=lab.index))
        by_teacher.setdefault(teacher, []).append(pd.DataFrame({
            "split": split, "id": lab["id"].to_numpy(),
            "text": h.loc[lab["id"], "text"].astype(str).to_numpy(),
            "human": h.loc[lab["id"], "label"].to_numpy(dtype=object),
            "teacher": np.array(tl, dtype=object),
            "consistency": pd.to_numeric(lab["consistency"], errors="coerce").to_numpy(float),
            "p_positive": p.to_numpy(dtype=float),
            "answers": [_answers(v) for v in lab["answers"]] if "answers" in lab.columns
            else [[] for _ in range(len(lab))]}))
    return [PairedLabels(task, teacher, tuple(labels), positive,
                         pd.concat(frames, ignore_index=True))
            for teacher, frames in sorted(by_teacher.items())]


def group_inputs(codebooks: list[str], splits: list[str], teacher_labels: list[str]
                 ) -> list[PairedLabels]:
    """Flat CLI lists -> PairedLabels per (task, teacher). A codebook's task is its file stem
    (config/tasks/<task>.yaml); split and teacher files name their task in their path."""
    from ..config import load_codebook

    books = {}
    for path in codebooks:
        cb = load_codebook(path, name_from_file=False)
        books[Path(path).stem] = cb
    human: dict[str, dict[str, str]] = {}
    for path in splits:
        task, name = split_file(path)
        human.setdefault(task, {})[name] = str(path)
    teachers: dict[str, list[str]] = {}
    for path in teacher_labels:
        task = teacher_file(path)[0]
        teachers.setdefault(task, []).append(str(path))
    out = []
    for task in sorted(set(human) | set(teachers)):
        if task not in books:
            raise InputError(f"no codebook given for task {task!r} (expected "
                             f"config/tasks/{task}.yaml among --codebooks)", field="codebooks")
        cb = books[task]
        out += load_paired(task, tuple(cb.label_names), cb.positive, human.get(task, {}),
                           teachers.get(task, []))
    return out
