"""Agreement statistics as CSS papers report them: Cohen's kappa and Krippendorff's alpha (nominal).

Shared by the teacher's gate (validation sample) and the evaluation (test set), so it sits below
both stages. Every number comes from a maintained library:
- Cohen's kappa between two label sequences: `sklearn.metrics.cohen_kappa_score` (the point
  estimate; bootstrap resamples use statsmodels' `cohens_kappa` on the contingency table, checked
  equal to scikit-learn's on the original sample);
- Krippendorff's alpha, nominal: `krippendorff.alpha` on the items x categories value counts
  (two coders, or many; missing ratings are allowed);
- Fleiss' kappa among several human coders: `statsmodels.stats.inter_rater.fleiss_kappa`. Fleiss'
  kappa needs the same number of ratings per item; where items have more, a seeded random subset
  of m ratings (m = the smallest number per item) is used for kappa (alpha uses all ratings).
Confidence intervals: `scipy.stats.bootstrap` over item indices (percentile method, seeded), so
the two coders' labels of an item stay together (a paired bootstrap).

Items without a label on one side (a teacher answer that could not be parsed) are left out of
kappa and alpha; `n` counts the items used.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

AGREEMENT_COLUMNS = ["kappa", "kappa_lo", "kappa_hi", "alpha", "alpha_lo", "alpha_hi"]


@dataclass(frozen=True)
class Resampling:
    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 20240625


def _codes(values, labels: list[str]) -> np.ndarray:
    """Label strings -> float codes 0..K-1, NaN for missing or unknown."""
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index.get(v, np.nan) if isinstance(v, str) else np.nan for v in values],
                    dtype=float)


def cohen_kappa(a: np.ndarray, b: np.ndarray, k: int) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one category only: undefined (NaN)
        return float(cohen_kappa_score(a.astype(int), b.astype(int), labels=list(range(k))))


def kappa_from_table(table: np.ndarray) -> float:
    """Cohen's kappa of a k x k contingency table (statsmodels' cohens_kappa); the bootstrap uses
    it because it is cheap per resample. `pair_agreement` checks it equals scikit-learn's on the
    original sample."""
    from statsmodels.stats.inter_rater import cohens_kappa

    if table.sum() == 0:
        return float("nan")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        k = float(cohens_kappa(table, return_results=False))
    return k if np.isfinite(k) else float("nan")


def alpha_nominal(*, reliability_data: np.ndarray | None = None,
                  value_counts: np.ndarray | None = None, k: int) -> float:
    """Krippendorff's alpha (nominal); NaN where it is undefined (fewer than two values seen)."""
    import krippendorff

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if value_counts is not None:
                return float(krippendorff.alpha(value_counts=value_counts,
                                                level_of_measurement="nominal"))
            return float(krippendorff.alpha(reliability_data=reliability_data,
                                            value_domain=list(range(k)),
                                            level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return float("nan")


def _ci(data: tuple, statistic, rs: Resampling, paired: bool) -> tuple[float, float]:
    from scipy import stats

    n = len(data[0])
    if n < 2 or rs.n_resamples < 1:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(data, statistic, paired=paired, vectorized=False,
                              n_resamples=rs.n_resamples, method="percentile",
                              confidence_level=rs.confidence,
                              rng=np.random.default_rng(rs.seed))
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    dist = dist[~np.isnan(dist)]
    if len(dist) == 0:
        return float("nan"), float("nan")
    alpha = (1 - rs.confidence) / 2
    lo, hi = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def pair_agreement(labels_a, labels_b, labels: list[str], rs: Resampling) -> dict:
    """Cohen's kappa and Krippendorff's alpha (nominal) between two coders (e.g. the teacher and
    the human labels) with paired bootstrap CIs over items."""
    a, b = _codes(labels_a, labels), _codes(labels_b, labels)
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[both].astype(int), b[both].astype(int)
    k = len(labels)
    # the two coders' values per item as items x categories counts (alpha's value_counts form);
    # resampling item indices keeps the pairs together (a paired bootstrap)
    counts = np.zeros((len(a), k))
    np.add.at(counts, (np.arange(len(a)), a), 1)
    np.add.at(counts, (np.arange(len(b)), b), 1)
    idx = np.arange(len(a))

    def kappa(i):
        i = i.astype(int)
        return kappa_from_table(np.bincount(a[i] * k + b[i], minlength=k * k).reshape(k, k)
                                .astype(float))

    def alpha(i):
        return alpha_nominal(value_counts=counts[i.astype(int)], k=k)

    point = cohen_kappa(a, b, k)
    if not np.isclose(point, kappa(idx), equal_nan=True, atol=1e-9):
        raise AssertionError(f"kappa from the table {kappa(idx)} disagrees with scikit-learn "
                             f"{point}")
    out = {"n": int(len(a)), "n_missing": int((~both).sum()),
           "kappa": point, "alpha": alpha(idx) if len(a) else float("nan")}
    out["kappa_lo"], out["kappa_hi"] = _ci((idx,), kappa, rs, paired=False)
    out["alpha_lo"], out["alpha_hi"] = _ci((idx,), alpha, rs, paired=False)
    return out


def count_table(coders: pd.DataFrame, item_ids, labels: list[str]) -> np.ndarray:
    """Items x categories counts of the coders' labels (items in `item_ids` order; an item no
    coder rated is a row of zeros)."""
    sub = coders[coders["id"].astype(str).isin(set(map(str, item_ids)))]
    tab = pd.crosstab(sub["id"].astype(str), pd.Categorical(sub["label"], categories=labels),
                      dropna=False)
    tab = tab.reindex(index=[str(i) for i in item_ids], columns=labels, fill_value=0)
    return tab.to_numpy(dtype=float)


def equal_raters(table: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Each item's counts reduced to m ratings (m = the smallest number per item among items with
    at least two), by a seeded draw without replacement; items with fewer than two are dropped."""
    n = table.sum(axis=1).astype(int)
    table = table[n >= 2]
    n = n[n >= 2]
    if len(n) == 0:
        return table, 0
    m = int(n.min())
    if (n == m).all():
        return table, m
    rng = np.random.default_rng(seed)
    out = np.empty_like(table)
    for i, row in enumerate(table.astype(int)):
        out[i] = rng.multivariate_hypergeometric(row, m) if row.sum() > m else row
    return out, m


def fleiss(table: np.ndarray) -> float:
    from statsmodels.stats.inter_rater import fleiss_kappa

    if len(table) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(fleiss_kappa(table, method="fleiss"))


def coders_agreement(coders: pd.DataFrame, item_ids, labels: list[str], rs: Resampling) -> dict:
    """Agreement among the human coders on the given items: Krippendorff's alpha (nominal, all
    ratings, missing allowed) and Fleiss' kappa (m ratings per item, see the module doc), with
    bootstrap CIs over items."""
    table = count_table(coders, item_ids, labels)
    rated = table.sum(axis=1) >= 2
    table = table[rated]
    k = len(labels)
    eq, m = equal_raters(table, rs.seed)
    idx = np.arange(len(table))

    def alpha(i):
        return alpha_nominal(value_counts=table[i.astype(int)], k=k)

    def kappa(i):
        return fleiss(eq[i.astype(int)])

    per_item = table.sum(axis=1)
    out = {"n": int(len(table)), "n_missing": int((~rated).sum()),
           "n_ratings": int(per_item.sum()),
           "ratings_per_item_min": int(per_item.min()) if len(per_item) else 0,
           "ratings_per_item_max": int(per_item.max()) if len(per_item) else 0,
           "kappa_ratings_per_item": m,
           "kappa": kappa(idx), "alpha": alpha(idx) if len(idx) else float("nan")}
    out["kappa_lo"], out["kappa_hi"] = _ci((idx,), kappa, rs, paired=False)
    out["alpha_lo"], out["alpha_hi"] = _ci((idx,), alpha, rs, paired=False)
    return out
