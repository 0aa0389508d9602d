"""Per-task scoring: accuracy, F1, precision and recall on the held-out human test set.

Point estimates come from scikit-learn (`accuracy_score`, `precision_recall_fscore_support`).
Confidence intervals come from `scipy.stats.bootstrap` (paired resampling of test items,
percentile method, seeded). The bootstrap statistic is a vectorised form of the same definitions
(confusion counts per resample); `score()` checks that it reproduces scikit-learn's number on the
original sample, so the two can never drift apart.

Definitions (docs/evaluation.md):
- binary task: precision, recall and F1 of the codebook's positive class; multi-class (K > 2):
  macro averages over the codebook's labels (the headline is macro-F1);
- every task also gets per-class precision, recall and F1 (`precision_recall_fscore_support(
  average=None)`, `per_class_scores`) and its confusion matrix (`confusion`), with the same
  bootstrap CIs;
- an undefined ratio (no predicted positives -> precision; no true positives -> recall) is NaN
  (`zero_division=np.nan`), never silently 0; macro averages skip NaN classes like scikit-learn;
- a missing prediction (the LLM teacher gave no parsable answer: `label` is null) is wrong: it
  matches no class, so it is "not positive" for precision/recall/F1 and an error for accuracy.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

METRICS = ("accuracy", "f1", "precision", "recall")
NO_LABEL = "\x00no-label"  # the code of a missing prediction: equal to no codebook label


@dataclass(frozen=True)
class Scheme:
    """How a task is scored: its label names (codebook order) and positive class."""

    labels: tuple[str, ...]
    positive: str | None = None  # required for binary schemes

    def __post_init__(self):
        if len(self.labels) == 2 and self.positive not in self.labels:
            raise ValueError(f"a binary scheme needs its positive class (one of {self.labels})")

    @property
    def binary(self) -> bool:
        return len(self.labels) == 2

    @property
    def task_type(self) -> str:
        return "binary" if self.binary else "multiclass"

    @property
    def headline_metric(self) -> str:
        """What `f1` means for this task (the headline column states it)."""
        return f"F1 of {self.positive}" if self.binary else f"macro-F1 over {len(self.labels)} classes"

    @property
    def average(self) -> str:
        return "binary" if self.binary else "macro"

    def encode(self, values) -> np.ndarray:
        """Label strings (None/NaN = missing) -> int codes 0..K-1, K for a missing prediction."""
        index = {name: i for i, name in enumerate(self.labels)}
        k = len(self.labels)
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            out[i] = index.get(v, k) if isinstance(v, str) else k
        return out


def sklearn_scores(y_true, y_pred, scheme: Scheme) -> dict[str, float]:
    """The four metrics from scikit-learn (labels as strings; missing predictions as NO_LABEL)."""
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray([v if isinstance(v, str) else NO_LABEL for v in y_pred], dtype=object)
    if scheme.binary:
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=[scheme.positive],
                                                     average=None, zero_division=np.nan)
        p, r, f = p[0], r[0], f[0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=list(scheme.labels),
                                                         average="macro", zero_division=np.nan)
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "f1": float(f),
            "precision": float(p), "recall": float(r)}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def coded_scores(y_true: np.ndarray, y_pred: np.ndarray, scheme: Scheme) -> np.ndarray:
    """Vectorised metrics over the last axis of int-coded arrays: shape (..., 4) in METRICS order.

    Same definitions as `sklearn_scores` (checked against it in `score()` and in the tests).
    """
    acc = (y_true == y_pred).mean(axis=-1)
    classes = [scheme.labels.index(scheme.positive)] if scheme.binary else range(len(scheme.labels))
    ps, rs, fs = [], [], []
    for k in classes:
        t, p = y_true == k, y_pred == k
        tp = (t & p).sum(axis=-1)
        fp = (~t & p).sum(axis=-1)
        fn = (t & ~p).sum(axis=-1)
        ps.append(_ratio(tp, tp + fp))
        rs.append(_ratio(tp, tp + fn))
        fs.append(_ratio(2 * tp, 2 * tp + fp + fn))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
        prec, rec, f1 = (np.nanmean(np.stack(x), axis=0) for x in (ps, rs, fs))
    return np.stack([acc, f1, prec, rec], axis=-1)


def percentile_ci(distribution: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of a bootstrap distribution (axis -1), skipping undefined resamples."""
    alpha = (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanpercentile(distribution, 100 * alpha, axis=-1)
        hi = np.nanpercentile(distribution, 100 * (1 - alpha), axis=-1)
    return lo, hi


@dataclass(frozen=True)
class Bootstrap:
    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 20240625


def _bootstrap(arrays: tuple[np.ndarray, ...], statistic, boot: Bootstrap):
    """scipy's paired bootstrap over test items; returns (low, high) arrays, NaN if degenerate."""
    n = len(arrays[0])
    if n < 2 or boot.n_resamples < 1:
        shape = np.shape(statistic(*arrays))
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings():
        # degenerate distributions (e.g. a metric that is constant) are fine: the CI is a point
        warnings.simplefilter("ignore")
        res = stats.bootstrap(arrays, statistic, paired=True, vectorized=True,
                              n_resamples=boot.n_resamples, method="percentile",
                              confidence_level=boot.confidence, rng=np.random.default_rng(boot.seed),
                              batch=max(1, min(boot.n_resamples, 2_000_000 // max(n, 1))))
    return percentile_ci(np.asarray(res.bootstrap_distribution), boot.confidence)


def score(y_true, y_pred, scheme: Scheme, boot: Bootstrap) -> dict[str, float]:
    """Metrics with bootstrap CIs: {metric, metric_lo, metric_hi} for each of METRICS."""
    point = sklearn_scores(y_true, y_pred, scheme)
    yt, yp = scheme.encode(list(y_true)), scheme.encode(list(y_pred))
    mine = coded_scores(yt, yp, scheme)
    ref = np.array([point[m] for m in METRICS])
    if not np.allclose(mine, ref, equal_nan=True, atol=1e-12):
        raise AssertionError(f"bootstrap statistic {mine} disagrees with scikit-learn {ref}")
    lo, hi = _bootstrap((yt, yp), lambda a, b, axis=-1: np.moveaxis(coded_scores(a, b, scheme), -1, 0),
                        boot)
    out: dict[str, float] = {}
    for i, m in enumerate(METRICS):
        out[m] = point[m]
        out[f"{m}_lo"] = float(lo[i])
        out[f"{m}_hi"] = float(hi[i])
    return out


def seed_mean(rows: np.ndarray) -> np.ndarray:
    """Mean over seeds (axis 0) skipping undefined (NaN) values; NaN when no seed defines it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(rows, axis=0)


def paired_gap(y_true, preds_a: list, preds_b: list, scheme: Scheme, boot: Bootstrap) -> dict:
    """Gap (A - B) in F1, precision, recall (and accuracy), seeds averaged within each side, with a
    paired bootstrap CI over test items (both sides scored on the same resampled items)."""
    yt = scheme.encode(list(y_true))
    a = [scheme.encode(list(p)) for p in preds_a]
    b = [scheme.encode(list(p)) for p in preds_b]
    na = len(a)

    def stat(*arrs, axis=-1):
        t = arrs[0]
        sa = np.stack([coded_scores(t, x, scheme) for x in arrs[1:1 + na]])
        sb = np.stack([coded_scores(t, x, scheme) for x in arrs[1 + na:]])
        return np.moveaxis(seed_mean(sa) - seed_mean(sb), -1, 0)

    point_a = seed_mean(np.stack([[sklearn_scores(y_true, p, scheme)[m] for m in METRICS]
                                  for p in preds_a]))
    point_b = seed_mean(np.stack([[sklearn_scores(y_true, p, scheme)[m] for m in METRICS]
                                  for p in preds_b]))
    lo, hi = _bootstrap((yt, *a, *b), stat, boot)
    out = {}
    for i, m in enumerate(METRICS):
        out[f"{m}_a"], out[f"{m}_b"] = float(point_a[i]), float(point_b[i])
        out[f"{m}_gap"] = float(point_a[i] - point_b[i])
        out[f"{m}_gap_lo"], out[f"{m}_gap_hi"] = float(lo[i]), float(hi[i])
    return out


# ---- per class -------------------------------------------------------------------------------

CLASS_METRICS = ("precision", "recall", "f1")


def sklearn_per_class(y_true, y_pred, scheme: Scheme) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support (codebook order) from scikit-learn."""
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray([v if isinstance(v, str) else NO_LABEL for v in y_pred], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(scheme.labels),
                                                     average=None, zero_division=np.nan)
    return {"precision": p.astype(float), "recall": r.astype(float), "f1": f.astype(float),
            "support": s.astype(int)}


def coded_per_class(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Vectorised per-class metrics: shape (..., k, 3) in CLASS_METRICS order (checked against
    `sklearn_per_class` in `per_class_scores` and the tests)."""
    out = []
    for c in range(k):
        t, p = y_true == c, y_pred == c
        tp = (t & p).sum(axis=-1)
        fp = (~t & p).sum(axis=-1)
        fn = (t & ~p).sum(axis=-1)
        out.append(np.stack([_ratio(tp, tp + fp), _ratio(tp, tp + fn),
                             _ratio(2 * tp, 2 * tp + fp + fn)], axis=-1))
    return np.stack(out, axis=-2)


def per_class_scores(y_true, y_pred, scheme: Scheme, boot: Bootstrap) -> list[dict]:
    """One dict per class: precision, recall, F1 (with bootstrap CIs over test items), support."""
    ref = sklearn_per_class(y_true, y_pred, scheme)
    yt, yp = scheme.encode(list(y_true)), scheme.encode(list(y_pred))
    k = len(scheme.labels)
    mine = coded_per_class(yt, yp, k)
    want = np.stack([ref[m] for m in CLASS_METRICS], axis=-1)
    if not np.allclose(mine, want, equal_nan=True, atol=1e-12):
        raise AssertionError(f"per-class statistic {mine} disagrees with scikit-learn {want}")
    lo, hi = _bootstrap((yt, yp), lambda a, b, axis=-1: np.moveaxis(
        coded_per_class(a, b, k).reshape(*np.shape(a)[:-1], k * 3), -1, 0), boot)
    lo, hi = np.reshape(lo, (k, 3)), np.reshape(hi, (k, 3))
    rows = []
    for c, name in enumerate(scheme.labels):
        row = {"class": name, "support": int(ref["support"][c])}
        for j, m in enumerate(CLASS_METRICS):
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = float(want[c, j]), float(lo[c, j]), \
                float(hi[c, j])
        rows.append(row)
    return rows


def confusion(y_true, y_pred, scheme: Scheme) -> list[dict]:
    """The confusion matrix (sklearn.metrics.confusion_matrix) in long format: one dict per
    (true, predicted) cell, predicted including `(no answer)` for a missing prediction."""
    from sklearn.metrics import confusion_matrix

    none = "(no answer)"
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray([v if isinstance(v, str) else none for v in y_pred], dtype=object)
    cols = list(scheme.labels) + [none]
    cm = confusion_matrix(y_true, y_pred, labels=cols)
    return [{"true": t, "predicted": p, "n": int(cm[i, j])}
            for i, t in enumerate(scheme.labels) for j, p in enumerate(cols)]


def paired_gap_per_class(y_true, preds_a: list, preds_b: list, scheme: Scheme,
                         boot: Bootstrap) -> list[dict]:
    """Per-class gaps (A - B) in precision, recall and F1, seeds averaged within each side, with
    a paired bootstrap CI over test items; one dict per (class, metric)."""
    k = len(scheme.labels)
    yt = scheme.encode(list(y_true))
    a = [scheme.encode(list(p)) for p in preds_a]
    b = [scheme.encode(list(p)) for p in preds_b]
    na = len(a)

    def side(t, xs):
        return seed_mean(np.stack([coded_per_class(t, x, k) for x in xs]))

    def stat(*arrs, axis=-1):
        t = arrs[0]
        d = side(t, arrs[1:1 + na]) - side(t, arrs[1 + na:])
        return np.moveaxis(d.reshape(*d.shape[:-2], k * 3), -1, 0)

    pa = seed_mean(np.stack([np.stack([sklearn_per_class(y_true, p, scheme)[m]
                                       for m in CLASS_METRICS], axis=-1) for p in preds_a]))
    pb = seed_mean(np.stack([np.stack([sklearn_per_class(y_true, p, scheme)[m]
                                       for m in CLASS_METRICS], axis=-1) for p in preds_b]))
    lo, hi = _bootstrap((yt, *a, *b), stat, boot)
    lo, hi = np.reshape(lo, (k, 3)), np.reshape(hi, (k, 3))
    rows = []
    for c, name in enumerate(scheme.labels):
        for j, m in enumerate(CLASS_METRICS):
            rows.append({"class": name, "metric": m, "a": float(pa[c, j]), "b": float(pb[c, j]),
                         "gap": float(pa[c, j] - pb[c, j]), "gap_lo": float(lo[c, j]),
                         "gap_hi": float(hi[c, j])})
    return rows
