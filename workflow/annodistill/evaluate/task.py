"""One task: score every student run and every teacher's few-shot labels on the human test set.

Inputs follow docs/contracts.md. Outputs (all under results/{task}/):
- `metrics.csv`: one row per (model, condition, seed) and one per teacher few-shot
  (`model` = teacher, `condition` = `fewshot`), metrics with bootstrap CIs over test items;
- `metrics_gaps.csv`: per (model, LLM-label condition) the paired gaps to the human-label student
  of equal size and to the teacher's few-shot labels, with paired bootstrap CIs;
- `metrics_consistency.csv`: teacher label accuracy against human labels by consistency bin
  (test items and the LLM training set);
- `metrics_sweep.csv`: consistency threshold -> share of LLM training labels kept, their accuracy;
- per class, confusion matrices, per-class gaps and agreement (kappa, alpha): `per_class.py`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts import (FEWSHOT, LLM_KINDS, METRIC_KEY_COLUMNS, degenerate_reason,
                         human_condition, keeps_consistency)
from ..contracts import parse_condition as parse
from ..errors import InputError
from ..io import read_parquet_columns
from .metrics import METRICS, Bootstrap, Scheme, paired_gap, score, sklearn_scores

log = logging.getLogger(__name__)

DEFAULT_BINS = (0.0, 0.5, 0.75, 1.0)
DEFAULT_THRESHOLDS = (0, 50, 60, 67, 75, 80, 90, 100)


def parse_condition(name: str) -> dict:
    """Condition name -> {kind, teacher, threshold, human_n} (annodistill.contracts)."""
    return parse(name, allow_fewshot=True).as_row()


_read = read_parquet_columns


def _aligned(df: pd.DataFrame, test_ids: pd.Index, path: str, what: str) -> pd.DataFrame:
    """Rows of df in test order; every test id exactly once, nothing else."""
    ids = df["id"].astype(str)
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(f"{what}: duplicate id {ids.iloc[i]!r}", path=path, row=i, field="id")
    extra = ~ids.isin(test_ids)
    if extra.any():
        i = int(np.flatnonzero(extra.to_numpy())[0])
        raise InputError(f"{what}: id {ids.iloc[i]!r} is not in the test set", path=path, row=i,
                         field="id")
    if len(ids) != len(test_ids):
        missing = test_ids[~test_ids.isin(ids)]
        raise InputError(f"{what}: {len(missing)} test item(s) have no prediction (first: "
                         f"{missing[0]!r})", path=path, field="id")
    return df.assign(id=ids).set_index("id").loc[test_ids]


def _check_labels(labels: pd.Series, scheme: Scheme, path: str, what: str, allow_null: bool):
    ok = labels.isin(scheme.labels) | (labels.isna() if allow_null else False)
    if not ok.all():
        i = int(np.flatnonzero(~ok.to_numpy())[0])
        raise InputError(f"{what}: label {labels.iloc[i]!r} is not one of {list(scheme.labels)}",
                         path=path, row=i, field="label")


def parse_prediction_path(path: str | Path) -> tuple[str, str]:
    """results/{task}/students/{model}/{condition}/predictions.parquet -> (model, condition)."""
    p = Path(path)
    if p.name != "predictions.parquet" or p.parent.parent.parent.name != "students":
        raise InputError("expected results/{task}/students/{model}/{condition}/predictions.parquet",
                         path=str(path))
    return p.parent.parent.name, p.parent.name


def parse_teacher_path(path: str | Path) -> str:
    """results/{task}/teacher/{teacher}/labels_*.parquet -> teacher."""
    p = Path(path)
    if p.parent.parent.name != "teacher":
        raise InputError("expected results/{task}/teacher/{teacher}/labels_<split>.parquet",
                         path=str(path))
    return p.parent.name


@dataclass
class TaskInputs:
    task: str
    test: str
    scheme: Scheme
    predictions: list[str] = field(default_factory=list)
    teacher_test: list[str] = field(default_factory=list)
    teacher_train: list[str] = field(default_factory=list)
    train_pool: str | None = None
    llm_train_size: int | None = None
    equal_size: int | None = None  # the human-label size compared with the LLM-label students
    bins: tuple[float, ...] = DEFAULT_BINS
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    coders: str | None = None  # results/{task}/data/coders.parquet (human-human agreement)


@dataclass
class TaskResults:
    metrics: pd.DataFrame
    gaps: pd.DataFrame
    consistency: pd.DataFrame
    sweep: pd.DataFrame
    per_class: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None
    gaps_per_class: pd.DataFrame | None = None
    agreement: pd.DataFrame | None = None


def _run_seeds(run_json: Path) -> dict[int, dict]:
    """run.json's per-seed records (docs/students.md: `seeds`, a list with `seed`, `n_train`)."""
    if not run_json.exists():
        raise InputError("run.json of a student run not found", path=str(run_json))
    try:
        data = json.loads(run_json.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"run.json is not JSON: {exc}", path=str(run_json)) from None
    seeds = data.get("seeds") if isinstance(data, dict) else None
    if not isinstance(seeds, list) or not all(isinstance(r, dict) and "seed" in r and
                                              "n_train" in r for r in seeds):
        raise InputError("run.json lacks the per-seed list `seeds` with `seed` and `n_train`",
                         path=str(run_json), field="seeds")
    return {int(r["seed"]): r for r in seeds}


def _probs(g: pd.DataFrame, scheme: Scheme) -> np.ndarray | None:
    """(n, K) predicted probabilities from `p_labels` (JSON), else (n,) `p_positive`, else None."""
    if "p_labels" in g.columns and g["p_labels"].notna().all():
        return np.array([[float(json.loads(v).get(lab, np.nan)) for lab in scheme.labels]
                         for v in g["p_labels"]])
    if "p_positive" in g.columns and g["p_positive"].notna().all():
        return g["p_positive"].to_numpy(dtype=float)
    return None


def evaluate_task(inp: TaskInputs, boot: Bootstrap) -> TaskResults:
    scheme = inp.scheme
    test = _read(inp.test, ["id", "label"], "test set")
    test = test.assign(id=test["id"].astype(str))
    if test["id"].duplicated().any():
        raise InputError("duplicate ids in the test set", path=inp.test, field="id")
    _check_labels(test["label"], scheme, inp.test, "test set", allow_null=False)
    test_ids = pd.Index(test["id"])
    y_true = test["label"].to_numpy(dtype=object)

    rows: list[dict] = []
    preds: dict[tuple[str, str], list[np.ndarray]] = {}  # (model, condition) -> per-seed labels
    seeds: dict[tuple[str, str], list] = {}  # the same keys -> the seed of each array
    for path in sorted(inp.predictions):
        model, cond = parse_prediction_path(path)
        info = parse_condition(cond)
        df = _read(path, ["seed", "id", "label"], "predictions")
        if df.empty:
            raise InputError("predictions file is empty", path=str(path))
        run_seeds = _run_seeds(Path(path).parent / "run.json")
        for seed, g in df.groupby("seed", sort=True):
            if int(seed) not in run_seeds:
                raise InputError(f"seed {seed} of the predictions has no record in run.json",
                                 path=str(Path(path).parent / "run.json"), field="seeds")
            g = _aligned(g.reset_index(drop=True), test_ids, str(path), f"seed {seed}")
            _check_labels(g["label"].reset_index(drop=True), scheme, str(path), f"seed {seed}",
                          allow_null=False)
            y_pred = g["label"].to_numpy(dtype=object)
            preds.setdefault((model, cond), []).append(y_pred)
            seeds.setdefault((model, cond), []).append(int(seed))
            train_size = (info["human_n"] if info["kind"] == "human" else inp.llm_train_size)
            rows.append({"task": inp.task, "model": model, "condition": cond, **info,
                         "seed": int(seed), "train_size": train_size,
                         "n_train": float(run_seeds[int(seed)]["n_train"]),
                         "n_test": len(test_ids), "n_no_label": 0,
                         "degenerate": degenerate_reason(y_pred, _probs(g, scheme),
                                                         n_labels=len(scheme.labels)),
                         **score(y_true, y_pred, scheme, boot)})
    for path in sorted(inp.teacher_test):
        teacher = parse_teacher_path(path)
        df = _read(path, ["id", "label"], "teacher test labels")
        df = _aligned(df, test_ids, str(path), "teacher test labels")
        labels = df["label"].reset_index(drop=True)
        _check_labels(labels, scheme, str(path), "teacher test labels", allow_null=True)
        y_pred = np.array([v if isinstance(v, str) else None for v in labels], dtype=object)
        preds[(teacher, FEWSHOT)] = [y_pred]
        seeds[(teacher, FEWSHOT)] = [None]
        rows.append({"task": inp.task, "model": teacher, "condition": FEWSHOT,
                     **parse_condition(FEWSHOT), "teacher": teacher, "seed": pd.NA,
                     "train_size": np.nan, "n_train": np.nan, "n_test": len(test_ids),
                     "n_no_label": int(labels.isna().sum()),
                     "degenerate": degenerate_reason(y_pred, n_labels=len(scheme.labels)),
                     **score(y_true, y_pred, scheme, boot)})
    cols = list(METRIC_KEY_COLUMNS)
    metric_cols = [f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")]
    metrics = pd.DataFrame(rows, columns=cols + metric_cols)
    metrics["average"] = scheme.average
    metrics["positive"] = scheme.positive if scheme.binary else ""
    metrics["task_type"] = scheme.task_type
    metrics["headline_metric"] = scheme.headline_metric
    for c in ("seed", "threshold", "human_n", "train_size"):
        metrics[c] = metrics[c].astype("Int64")

    comparisons: list[dict] = []
    gaps = _gaps(inp, y_true, preds, boot, comparisons)
    consistency, sweep = _consistency(inp, test)
    from . import per_class as pcl

    info = {cond: parse_condition(cond) for _, cond in preds}
    per_cls, conf = pcl.per_class_tables(inp.task, y_true, preds, seeds, info, scheme, boot)
    gpc = pcl.gaps_per_class(inp.task, y_true, comparisons, scheme, boot)
    coders = None
    if inp.coders is not None:
        coders = _read(inp.coders, ["id", "coder", "label"], "coders file")
        _check_labels(coders["label"], scheme, inp.coders, "coders file", allow_null=False)
    agreement = pcl.agreement_table(
        inp.task, y_true, {m: p[0] for (m, c), p in preds.items() if c == "fewshot"}, scheme,
        boot, coders, test_ids)
    return TaskResults(metrics, gaps, consistency, sweep, per_cls, conf, gpc, agreement)


def _gaps(inp: TaskInputs, y_true, preds: dict, boot: Bootstrap,
          comparisons: list | None = None) -> pd.DataFrame:
    """The gaps table; each comparison (with its prediction lists) is appended to
    `comparisons` for the per-class gaps."""
    equal = inp.equal_size if inp.equal_size is not None else inp.llm_train_size
    out = []
    for (model, cond), p in sorted(preds.items()):
        info = parse_condition(cond)
        if info["kind"] not in LLM_KINDS:
            continue
        refs = []
        human = human_condition(equal) if equal is not None else None
        if human is not None and (model, human) in preds:
            refs.append(("human", human, preds[(model, human)]))
        if (info["teacher"], FEWSHOT) in preds:
            refs.append((FEWSHOT, FEWSHOT, preds[(info["teacher"], FEWSHOT)]))
        for comparison, ref_cond, ref in refs:
            g = paired_gap(y_true, p, ref, inp.scheme, boot)
            key = {"model": model, "condition": cond, "kind": info["kind"],
                   "teacher": info["teacher"], "threshold": info["threshold"],
                   "comparison": comparison, "reference": ref_cond}
            out.append({"task": inp.task, **key,
                        "n_seeds": len(p), "n_seeds_reference": len(ref), **g})
            if comparisons is not None:
                comparisons.append({**key, "a": p, "b": ref})
    cols = ["task", "model", "condition", "kind", "teacher", "threshold", "comparison", "reference",
            "n_seeds", "n_seeds_reference"]
    cols += [f"{m}{s}" for m in METRICS for s in ("_a", "_b", "_gap", "_gap_lo", "_gap_hi")]
    df = pd.DataFrame(out, columns=cols)
    df["threshold"] = df["threshold"].astype("Int64")
    return df


def _bin_of(c: float, bins: tuple[float, ...]) -> tuple[float, float]:
    """[lo, hi) bins over consecutive edges; a value equal to the last edge gets its own bin."""
    if c >= bins[-1]:
        return bins[-1], bins[-1]
    for lo, hi in zip(bins[:-1], bins[1:]):
        if lo <= c < hi:
            return lo, hi
    return bins[0], bins[1]


def _consistency(inp: TaskInputs, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    human = {"test": test.set_index("id")["label"]}
    sources = [("test", p) for p in inp.teacher_test]
    if inp.train_pool is not None and inp.teacher_train:
        pool = _read(inp.train_pool, ["id", "label"], "training pool")
        human["train"] = pool.assign(id=pool["id"].astype(str)).set_index("id")["label"]
        sources += [("train", p) for p in inp.teacher_train]
    bins_rows, sweep_rows = [], []
    for split, path in sorted(sources):
        teacher = parse_teacher_path(path)
        lab = _read(path, ["id", "label", "consistency"], f"teacher {split} labels")
        lab = lab.assign(id=lab["id"].astype(str))
        unknown = ~lab["id"].isin(human[split].index)
        if unknown.any():
            i = int(np.flatnonzero(unknown.to_numpy())[0])
            raise InputError(f"id {lab['id'].iloc[i]!r} has no human label in the {split} split",
                             path=str(path), row=i, field="id")
        truth = human[split].loc[lab["id"]].to_numpy(dtype=object)
        label = lab["label"].to_numpy(dtype=object)
        correct = np.array([isinstance(a, str) and a == b for a, b in zip(label, truth)])
        cons = pd.to_numeric(lab["consistency"], errors="coerce").to_numpy(dtype=float)
        parsed = np.array([isinstance(a, str) for a in label]) & ~np.isnan(cons)
        groups: dict[tuple, list[int]] = {}
        for i in range(len(lab)):
            key = _bin_of(cons[i], inp.bins) if parsed[i] else (np.nan, np.nan)
            groups.setdefault(key, []).append(i)
        for (lo, hi), idx in sorted(groups.items(), key=lambda kv: (np.isnan(kv[0][0]), kv[0])):
            idx = np.array(idx)
            bins_rows.append({"task": inp.task, "teacher": teacher, "split": split,
                              "bin_lo": lo, "bin_hi": hi,
                              "bin": "no answer" if np.isnan(lo) else
                              (f"= {lo:g}" if lo == hi else f"[{lo:g}, {hi:g})"),
                              "n": len(idx), "n_correct": int(correct[idx].sum()),
                              "accuracy": float(correct[idx].mean())})
        if split != "train":
            continue
        thresholds = sorted(set(inp.thresholds))
        for t in thresholds:
            keep = parsed & keeps_consistency(cons, t)  # the students' rule (contracts)
            n_keep = int(keep.sum())
            kept_pred, kept_true = label[keep], truth[keep]
            pos = inp.scheme.positive
            sc = (sklearn_scores(kept_true, kept_pred, inp.scheme) if n_keep else
                  {m: np.nan for m in METRICS})
            sweep_rows.append({"task": inp.task, "teacher": teacher, "threshold": t,
                               "n_total": len(lab), "n_kept": n_keep,
                               "share_kept": n_keep / len(lab) if len(lab) else np.nan,
                               "label_accuracy": sc["accuracy"], "label_f1": sc["f1"],
                               "positive_share_kept": float(np.mean(kept_pred == pos))
                               if n_keep and pos is not None else np.nan})
    consistency = pd.DataFrame(bins_rows, columns=["task", "teacher", "split", "bin", "bin_lo",
                                                   "bin_hi", "n", "n_correct", "accuracy"])
    sweep = pd.DataFrame(sweep_rows, columns=["task", "teacher", "threshold", "n_total", "n_kept",
                                              "share_kept", "label_accuracy", "label_f1",
                                              "positive_share_kept"])
    return consistency, sweep
