"""The TF-IDF + logistic-regression baseline (scikit-learn), with the same grid/selection contract.

K labels: multinomial logistic regression over the codebook's labels. Soft targets are fitted
exactly: each item enters once per label j with sample weight p_j, which makes the weighted
log-loss the cross-entropy against the target distribution. `class_weight: balanced` is applied
the same way for hard and soft targets: scikit-learn's `compute_class_weight("balanced")` over the
target mass of each label (each item's weight split over labels by its target distribution), passed
as sample weights, so `llm-*` and `soft-*` runs are reweighted alike.
The grid is over the inverse regularisation strength `C` (and optionally n-gram ranges).
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .conditions import class_weights
from .selection import grid_record, selection_key


def _fit(X, targets: np.ndarray, C: float, seed: int,
         class_weight: str | None = None) -> LogisticRegression:
    import scipy.sparse as sp

    n, k = targets.shape
    cw = class_weights(targets, class_weight)
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed, solver="lbfgs")
    Xd = sp.vstack([X] * k).tocsr()
    yd = np.repeat(np.arange(k), n)
    wd = (targets * cw[None, :]).T.reshape(-1)
    keep = wd > 0
    return clf.fit(Xd[keep], yd[keep], sample_weight=wd[keep])


def _proba(clf: LogisticRegression, X, k: int) -> np.ndarray:
    """(n, K) probabilities; labels absent from the training targets get probability 0."""
    out = np.zeros((X.shape[0], k))
    out[:, clf.classes_] = clf.predict_proba(X)
    return out


def train_predict(train_texts, targets, select_texts, select_labels, select_targets,
                  predict_texts, *, spec: dict, seed: int,
                  positive_index: int | None = None) -> dict:
    """targets/select_targets: (n, K) distributions; select_labels: codes 0..K-1."""
    grid = spec.get("grid", {})
    Cs = grid.get("C", [1.0])
    ngrams = [tuple(x) for x in grid.get("ngram_range", [[1, 2]])]
    metric = spec.get("selection_metric", "macro_f1")
    targets = np.asarray(targets, float)
    k = targets.shape[1]
    records, best, best_key = [], None, None
    t0 = time.perf_counter()
    for ng in ngrams:
        vec = TfidfVectorizer(ngram_range=ng, min_df=spec.get("min_df", 1), sublinear_tf=True)
        X = vec.fit_transform(train_texts)
        Xs = vec.transform(select_texts)
        for C in Cs:
            clf = _fit(X, targets, C, seed, spec.get("class_weight"))
            p = _proba(clf, Xs, k)
            rec = {"C": C, "ngram_range": list(ng),
                   **grid_record(p, np.asarray(select_labels), np.asarray(select_targets, float),
                                 positive_index)}
            records.append(rec)
            key = selection_key(rec, metric)
            if best_key is None or key > best_key:
                best_key, best = key, (rec, vec, clf)
    seconds = time.perf_counter() - t0
    rec, vec, clf = best
    probs = _proba(clf, vec.transform(predict_texts), k)
    n_fits = len(records)
    return {"chosen": {"C": rec["C"], "ngram_range": rec["ngram_range"],
                       "selection_metric": metric},
            "grid": records, "train_seconds": seconds, "examples": n_fits * len(train_texts),
            "examples_per_s": n_fits * len(train_texts) / seconds if seconds > 0 else None,
            "probs": probs, "model": (vec, clf)}
