"""The TF-IDF + logistic-regression baseline (scikit-learn), with the same grid/selection contract.

Soft targets are fitted exactly: each item enters twice, as positive with weight p and as
negative with weight 1 - p, which makes the weighted log-loss the cross-entropy against p.
The grid is over the inverse regularisation strength `C` (and optionally n-gram ranges).
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .loop import selection_score


def _fit(X, targets: np.ndarray, C: float, seed: int,
         class_weight: str | None = None) -> LogisticRegression:
    import scipy.sparse as sp

    hard = np.isin(targets, (0.0, 1.0)).all()
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed, solver="lbfgs",
                             class_weight=class_weight)
    if hard and len(np.unique(targets)) == 2:
        return clf.fit(X, targets.astype(int))
    Xd = sp.vstack([X, X]).tocsr()
    yd = np.r_[np.ones(len(targets), int), np.zeros(len(targets), int)]
    wd = np.r_[targets, 1 - targets]
    keep = wd > 0
    return clf.fit(Xd[keep], yd[keep], sample_weight=wd[keep])


def train_predict(train_texts, targets, select_texts, select_labels01, select_targets,
                  predict_texts, *, spec: dict, seed: int) -> dict:
    grid = spec.get("grid", {})
    Cs = grid.get("C", [1.0])
    ngrams = [tuple(x) for x in grid.get("ngram_range", [[1, 2]])]
    records, best, best_key = [], None, None
    t0 = time.perf_counter()
    for ng in ngrams:
        vec = TfidfVectorizer(ngram_range=ng, min_df=spec.get("min_df", 1), sublinear_tf=True)
        X = vec.fit_transform(train_texts)
        Xs = vec.transform(select_texts)
        for C in Cs:
            clf = _fit(X, np.asarray(targets, float), C, seed, spec.get("class_weight"))
            p = clf.predict_proba(Xs)[:, list(clf.classes_).index(1)]
            s = selection_score(p, select_labels01, select_targets)
            rec = {"C": C, "ngram_range": list(ng), "selection_f1": s["f1"],
                   "selection_loss": s["loss"], "selection_accuracy": s["accuracy"]}
            records.append(rec)
            key = (s["f1"], -s["loss"])
            if best_key is None or key > best_key:
                best_key, best = key, (rec, vec, clf)
    seconds = time.perf_counter() - t0
    rec, vec, clf = best
    p_test = clf.predict_proba(vec.transform(predict_texts))[:, list(clf.classes_).index(1)]
    n_fits = len(records)
    return {"chosen": {"C": rec["C"], "ngram_range": rec["ngram_range"]}, "grid": records,
            "train_seconds": seconds, "examples": n_fits * len(train_texts),
            "examples_per_s": n_fits * len(train_texts) / seconds if seconds > 0 else None,
            "p_positive": p_test, "model": (vec, clf)}
