"""One task, class by class: per-class metrics, confusion matrices, per-class gaps, agreement.

Called by `task.evaluate_task` with the predictions it has read and checked (per (model,
condition): one label array per seed, test order). Outputs (all under results/{task}/):
- `metrics_per_class.csv`: per (model, condition, seed, class) precision, recall, F1 with
  bootstrap CIs over test items, and the class's support;
- `metrics_confusion.csv`: per (model, condition, seed) the confusion matrix in long format
  (true, predicted, n), `predicted` including `(no answer)`;
- `metrics_gaps_per_class.csv`: per (model, LLM-label condition, comparison, class, metric) the
  paired gap to the same references as `metrics_gaps.csv`, with paired bootstrap CIs;
- `metrics_agreement.csv`: Cohen's kappa and Krippendorff's alpha (nominal) with bootstrap CIs
  between each teacher's few-shot labels and the human test labels, and among the human coders
  where the codebook has `source.coders` (the ceiling); annodistill.agreement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..agreement import Resampling, coders_agreement, pair_agreement
from .metrics import (CLASS_METRICS, Bootstrap, Scheme, confusion, paired_gap_per_class,
                      per_class_scores)

PER_CLASS_COLUMNS = ["task", "model", "condition", "kind", "teacher", "seed", "class", "support",
                     *[f"{m}{s}" for m in CLASS_METRICS for s in ("", "_lo", "_hi")]]
CONFUSION_COLUMNS = ["task", "model", "condition", "seed", "true", "predicted", "n"]
GAPS_PER_CLASS_COLUMNS = ["task", "model", "condition", "kind", "teacher", "threshold",
                          "comparison", "reference", "class", "metric", "a", "b", "gap",
                          "gap_lo", "gap_hi"]
AGREEMENT_COLUMNS = ["task", "split", "rater", "kind", "reference", "n", "n_missing",
                     "n_ratings", "ratings_per_item_min", "ratings_per_item_max",
                     "kappa_method", "kappa", "kappa_lo", "kappa_hi", "alpha", "alpha_lo",
                     "alpha_hi"]


def per_class_tables(task: str, y_true, preds: dict, seeds: dict, info: dict, scheme: Scheme,
                     boot: Bootstrap) -> tuple[pd.DataFrame, pd.DataFrame]:
    """preds: (model, condition) -> [labels per seed]; seeds: the same keys -> [seed or None];
    info: condition -> parsed condition dict."""
    pc, cm = [], []
    for (model, cond), runs in sorted(preds.items()):
        inf = info[cond]
        teacher = model if cond == "fewshot" else inf["teacher"]
        for seed, y_pred in zip(seeds[(model, cond)], runs):
            base = {"task": task, "model": model, "condition": cond, "seed": seed}
            for row in per_class_scores(y_true, y_pred, scheme, boot):
                pc.append({**base, "kind": inf["kind"], "teacher": teacher, **row})
            for row in confusion(y_true, y_pred, scheme):
                cm.append({**base, **row})
    per_class = pd.DataFrame(pc, columns=PER_CLASS_COLUMNS)
    per_class["seed"] = per_class["seed"].astype("Int64")
    conf = pd.DataFrame(cm, columns=CONFUSION_COLUMNS)
    conf["seed"] = conf["seed"].astype("Int64")
    return per_class, conf


def gaps_per_class(task: str, y_true, comparisons: list[dict], scheme: Scheme,
                   boot: Bootstrap) -> pd.DataFrame:
    """comparisons: the rows of `metrics_gaps.csv` with their prediction lists (`a`, `b`)."""
    out = []
    for c in comparisons:
        for row in paired_gap_per_class(y_true, c["a"], c["b"], scheme, boot):
            out.append({"task": task, **{k: c[k] for k in ("model", "condition", "kind",
                                                             "teacher", "threshold",
                                                             "comparison", "reference")},
                        **row})
    df = pd.DataFrame(out, columns=GAPS_PER_CLASS_COLUMNS)
    df["threshold"] = df["threshold"].astype("Int64")
    return df


def agreement_table(task: str, y_true, teacher_preds: dict, scheme: Scheme, boot: Bootstrap,
                    coders: pd.DataFrame | None, test_ids) -> pd.DataFrame:
    """Teacher-human agreement per teacher, and human-human among the coders (if any)."""
    rs = Resampling(boot.n_resamples, boot.confidence, boot.seed)
    labels = list(scheme.labels)
    rows = []
    for teacher, y_pred in sorted(teacher_preds.items()):
        ag = pair_agreement(list(y_pred), list(y_true), labels, rs)
        rows.append({"task": task, "split": "test", "rater": teacher, "kind": "teacher-human",
                     "reference": "human label", "n_ratings": np.nan,
                     "kappa_method": "Cohen", **ag})
    if coders is not None:
        ag = coders_agreement(coders, list(test_ids), labels, rs)
        rows.append({"task": task, "split": "test", "rater": "human coders",
                     "kind": "human-human", "reference": "each other",
                     "kappa_method": f"Fleiss ({ag['kappa_ratings_per_item']} ratings per item)",
                     **{k: v for k, v in ag.items() if k != "kappa_ratings_per_item"}})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
