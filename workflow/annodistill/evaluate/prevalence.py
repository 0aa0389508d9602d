"""Valid prevalence estimates from LLM labels: prediction-powered inference (PPI++).

What a researcher usually wants from annotation is a downstream number, e.g. how common each
category is. Taking LLM labels at face value gives a biased estimate with a falsely narrow
interval whenever the LLM over- or under-calls a category (Egami et al. 2023; Angelopoulos et
al. 2023). Prediction-powered inference corrects the LLM-label mean with the LLM's error measured
on a small human-coded sample and gives a valid confidence interval.

Per task, teacher and class (the positive class of a binary task; every label, one vs rest, of a
multi-class task) four estimates of the prevalence, each with a `confidence` interval:

- `human`: the human labels alone, on the validation sample items the teacher also labelled
  (`ppi_py.classical_mean_ci`, the CLT interval);
- `naive`: the teacher's labels on the LLM-labelled training pool taken at face value (the same
  classical interval, items without a parsed answer dropped, as the students drop them);
- `ppi`: PPI++ (`ppi_py.ppi_mean_ci`, power-tuned lambda): human and teacher labels of the
  validation sample plus the teacher's labels on the pool; an item without a parsed answer
  counts as "not this class" (any fixed rule keeps PPI valid);
- `ppi_soft`: the same with the teacher's `p_positive` (the share of its k votes, or its
  probability) instead of its hard label; positive class only. The students predict only the
  test set, so a student's predictions on the pool are not available: this soft variant is the
  study's second predictor.

Each estimate is scored against the human prevalence of the held-out test set (`bias`,
`covers`). That target is itself a sample of 120-1,000 items, so "covers" is noisy; the
`coverage` table therefore also resamples from a world with a known truth: all items that carry
both a human and a teacher label (validation, test, LLM-labelled pool) form a finite population
whose human prevalence is the truth; each resample draws a human sample of the validation size
and an LLM-labelled set of the pool size from it (with replacement, i.e. i.i.d. from that
population), seeded, and records whether each interval covers the truth.

Why ppi_py: it is the reference implementation by the method's authors (PPI and PPI++,
Angelopoulos, Bates, Fannjiang, Jordan, Zrnic 2023; Angelopoulos, Duchi, Zrnic 2023), small
pure functions of arrays with the assumptions in their docstrings, validated by the authors on
examples with known truth. `dsl-kit` (design-based supervised learning) is a one-author port of
the DSL R package aimed at regression coefficients under known sampling probabilities, with one
release; for a mean under random sampling DSL and PPI coincide in substance, and PPI++'s power
tuning guarantees the interval is never wider (asymptotically) than the human-only one.
"""
from __future__ import annotations

import logging
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .paired import PairedLabels

log = logging.getLogger(__name__)

ESTIMATORS = ("human", "naive", "ppi", "ppi_soft")
DESCRIPTION = {
    "human": "human labels alone (validation sample)",
    "naive": "LLM labels on the pool, at face value",
    "ppi": "PPI++: human sample + LLM labels on the pool",
    "ppi_soft": "PPI++: human sample + LLM p_positive on the pool",
}
CHUNK = 256  # resamples per vectorised ppi_py call (one coordinate per resample)


def ppi_module():
    """ppi_py, imported without its module-level `warnings.simplefilter("ignore")` leaking into
    the rest of the process."""
    with warnings.catch_warnings():
        import ppi_py
    return ppi_py


def _interval(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    return np.atleast_1d(np.asarray(lo, dtype=float)), np.atleast_1d(np.asarray(hi, dtype=float))


def classical(Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classical CLT interval of the mean of each column of Y (n,) or (n, R):
    (estimate, lo, hi), each of shape (R,). 1-D input goes through `classical_mean_ci`; columns
    through `ppi_mean_ci(lam=0)`, which is the same interval (ppi_py: "lam=0 recovers the
    classical CLT interval") computed for every column at once."""
    ppi = ppi_module()
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        lo, hi = _interval(*ppi.classical_mean_ci(Y, alpha=alpha))
        return np.atleast_1d(Y.mean()), lo, hi
    zeros = np.zeros((1, Y.shape[1]))
    lo, hi = _interval(*ppi.ppi_mean_ci(Y, np.zeros_like(Y), zeros, alpha=alpha, lam=0))
    return Y.mean(axis=0), lo, hi


def ppi(Y: np.ndarray, Yhat: np.ndarray, Yhat_unlabeled: np.ndarray, alpha: float
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PPI++ interval of the mean of Y, power-tuned per column: (estimate, lo, hi, lambda).

    Y, Yhat: (n,) or (n, R), Yhat_unlabeled: (N,) or (N, R). A column whose interval comes out
    undefined (NaN: lambda = 0/0) is recomputed with lambda = 0, the classical interval; with a
    constant predictor every lambda gives that interval anyway."""
    mod = ppi_module()
    Y, Yhat, Yu = (np.asarray(a, dtype=float) for a in (Y, Yhat, Yhat_unlabeled))
    one = Y.ndim == 1
    if one:
        Y, Yhat, Yu = Y[:, None], Yhat[:, None], Yu[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 lambda of a constant column
        lo, hi = _interval(*mod.ppi_mean_ci(Y, Yhat, Yu, alpha=alpha, lam_optim_mode="element"))
        undefined = ~(np.isfinite(lo) & np.isfinite(hi))
        if undefined.any():
            lo0, hi0 = _interval(*mod.ppi_mean_ci(Y[:, undefined], Yhat[:, undefined],
                                                  Yu[:, undefined], alpha=alpha, lam=0))
            lo, hi = lo.copy(), hi.copy()
            lo[undefined], hi[undefined] = lo0, hi0
    est = (lo + hi) / 2  # the z-interval is symmetric about the PPI++ point estimate
    # the lambda PPI++ chose, read back from estimate = mean(Y) + lambda (mean(Yu) - mean(Yhat));
    # undefined (NaN) when the LLM labels have the same mean on both sets
    shift = Yu.mean(axis=0) - Yhat.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = np.where(np.abs(shift) > 1e-12, (est - Y.mean(axis=0)) / shift, np.nan)
    lam[undefined] = 0.0
    return est, lo, hi, lam


@dataclass(frozen=True)
class Arrays:
    """One (task, teacher, class): indicator arrays of each split."""

    y: dict          # split -> human indicator (float 0/1)
    yhat: dict       # split -> teacher indicator (no answer = 0)
    parsed: dict     # split -> teacher answered (bool)
    soft: dict | None  # split -> p_positive (no answer = 0); None unless the positive class


def arrays(pl: PairedLabels, cls: str) -> Arrays:
    y, yhat, parsed, soft = {}, {}, {}, {}
    has_soft = cls == pl.positive and pl.items["p_positive"].notna().any()
    for split in ("validation", "test", "train"):
        d = pl.split(split)
        y[split] = (d["human"] == cls).to_numpy(dtype=float)
        parsed[split] = d["teacher"].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        yhat[split] = (d["teacher"] == cls).to_numpy(dtype=float)
        soft[split] = d["p_positive"].fillna(0.0).to_numpy(dtype=float)
    return Arrays(y, yhat, parsed, soft if has_soft else None)


def _row(est, lo, hi, **kw) -> dict:
    return {"estimate": float(est), "ci_lo": float(lo), "ci_hi": float(hi),
            "width": float(hi - lo), **kw}


def estimate(pl: PairedLabels, cls: str, alpha: float) -> list[dict]:
    """The four estimates for one (task, teacher, class), scored against the test prevalence."""
    a = arrays(pl, cls)
    n_val, n_pool, n_test = (len(a.y[s]) for s in ("validation", "train", "test"))
    truth = float(a.y["test"].mean()) if n_test else np.nan
    pool_truth = float(a.y["train"].mean()) if n_pool else np.nan
    base = {"task": pl.task, "teacher": pl.teacher, "class": cls, "truth_test": truth,
            "n_test": n_test, "truth_pool_human": pool_truth}
    rows = []

    def add(name, est, lo, hi, n_human, n_llm, lam=np.nan, note=""):
        rows.append({**base, "estimator": name, "description": DESCRIPTION[name],
                     **_row(est, lo, hi), "n_human": n_human, "n_llm": n_llm,
                     "lambda": float(lam), "note": note})

    note_h = ""
    if n_val and a.y["validation"].std() == 0:
        note_h = "every human label in the sample is the same: the CLT interval has zero width"
    if n_val:
        e, lo, hi = classical(a.y["validation"], alpha)
        add("human", e[0], lo[0], hi[0], n_val, 0, note=note_h)
    naive = a.yhat["train"][a.parsed["train"]]
    if len(naive):
        e, lo, hi = classical(naive, alpha)
        add("naive", e[0], lo[0], hi[0], 0, len(naive),
            note=f"{n_pool - len(naive)} pool item(s) without an answer dropped"
            if len(naive) < n_pool else "")
    if n_val and n_pool:
        e, lo, hi, lam = ppi(a.y["validation"], a.yhat["validation"], a.yhat["train"], alpha)
        add("ppi", e[0], lo[0], hi[0], n_val, n_pool, lam[0], note_h)
        if a.soft is not None:
            e, lo, hi, lam = ppi(a.y["validation"], a.soft["validation"], a.soft["train"],
                                 alpha)
            add("ppi_soft", e[0], lo[0], hi[0], n_val, n_pool, lam[0], note_h)
    for r in rows:
        r["bias"] = r["estimate"] - truth
        r["covers"] = bool(r["ci_lo"] <= truth <= r["ci_hi"]) if np.isfinite(truth) else None
    return rows


def prevalence_table(paired: list[PairedLabels], confidence: float) -> pd.DataFrame:
    rows = []
    for pl in paired:
        for cls in pl.classes:
            rows += estimate(pl, cls, 1 - confidence)
    cols = ["task", "teacher", "class", "estimator", "description", "estimate", "ci_lo", "ci_hi",
            "width", "n_human", "n_llm", "lambda", "truth_test", "n_test", "bias", "covers",
            "truth_pool_human", "note"]
    return pd.DataFrame(rows, columns=cols)


# --- a world with a known truth: resampling the items that carry both labels ------------------

def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator per (task, teacher, class, ...): results do not depend on task order."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def population(a: Arrays) -> dict:
    """Pool the three splits: the finite population of the resampling world."""
    splits = ("validation", "test", "train")
    pop = {k: np.concatenate([getattr(a, k)[s] for s in splits])
           for k in ("y", "yhat", "parsed")}
    pop["soft"] = (np.concatenate([a.soft[s] for s in splits]) if a.soft is not None else None)
    return pop


def resample_estimates(pop: dict, n_human: int, n_llm: int, n_resamples: int, alpha: float,
                       rng: np.random.Generator, estimators=ESTIMATORS) -> dict:
    """Draw `n_resamples` (human sample of n_human, LLM-labelled set of n_llm) pairs i.i.d. from
    the population; per estimator arrays (estimate, lo, hi) of length n_resamples."""
    size = len(pop["y"])
    out = {e: [[], [], []] for e in estimators}
    for start in range(0, n_resamples, CHUNK):
        r = min(CHUNK, n_resamples - start)
        ih = rng.integers(size, size=(n_human, r))
        iu = rng.integers(size, size=(n_llm, r))
        Y, Yhat, Yu = pop["y"][ih], pop["yhat"][ih], pop["yhat"][iu]
        res = {}
        if "human" in out:
            res["human"] = classical(Y, alpha)
        if "ppi" in out:
            res["ppi"] = ppi(Y, Yhat, Yu, alpha)[:3]
        if "ppi_soft" in out and pop["soft"] is not None:
            res["ppi_soft"] = ppi(Y, pop["soft"][ih], pop["soft"][iu], alpha)[:3]
        if "naive" in out:
            parsed = pop["parsed"][iu]
            cols = [classical(Yu[parsed[:, j], j], alpha) for j in range(r)]
            res["naive"] = tuple(np.concatenate([c[k] for c in cols]) for k in range(3))
        for e, trip in res.items():
            for k in range(3):
                out[e][k].append(trip[k])
    return {e: tuple(np.concatenate(v[k]) for k in range(3)) for e, v in out.items() if v[0]}


def coverage_table(paired: list[PairedLabels], confidence: float, n_resamples: int,
                   seed: int) -> pd.DataFrame:
    """Per (task, teacher, class, estimator): coverage of the known truth over resamples, mean
    bias, mean width; then rows `task = all` pooling every (task, class) of a teacher."""
    alpha = 1 - confidence
    rows = []
    for pl in paired:
        for cls in pl.classes:
            a = arrays(pl, cls)
            n_h, n_u = len(a.y["validation"]), len(a.y["train"])
            pop = population(a)
            if not n_h or not n_u or not len(pop["y"]):
                continue
            truth = float(pop["y"].mean())
            llm_bias = float(pop["yhat"][pop["parsed"]].mean() - truth) if pop["parsed"].any() \
                else np.nan
            res = resample_estimates(pop, n_h, n_u, n_resamples, alpha,
                                     rng_for(seed, pl.task, pl.teacher, cls))
            for e, (est, lo, hi) in res.items():
                ok = np.isfinite(lo) & np.isfinite(hi)
                rows.append({"task": pl.task, "teacher": pl.teacher, "class": cls,
                             "estimator": e, "description": DESCRIPTION[e],
                             "n_population": len(pop["y"]), "truth": truth,
                             "llm_bias": llm_bias, "n_human": n_h, "n_llm": n_u,
                             "n_resamples": int(ok.sum()),
                             "coverage": float(np.mean((lo[ok] <= truth) & (truth <= hi[ok]))),
                             "mean_bias": float(np.mean(est[ok]) - truth),
                             "mean_width": float(np.mean(hi[ok] - lo[ok]))})
    cols = ["task", "teacher", "class", "estimator", "description", "n_population", "truth",
            "llm_bias", "n_human", "n_llm", "n_resamples", "coverage", "mean_bias", "mean_width"]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    pooled = (df.groupby(["teacher", "estimator"], sort=False)
              .agg(n_population=("n_population", "sum"), n_resamples=("n_resamples", "sum"),
                   coverage=("coverage", "mean"), mean_bias=("mean_bias", "mean"),
                   mean_width=("mean_width", "mean"), llm_bias=("llm_bias", "mean"),
                   n_cells=("task", "size"))
              .reset_index())
    pooled["task"], pooled["class"] = "all", "all"
    pooled["description"] = pooled["estimator"].map(DESCRIPTION)
    order = {e: i for i, e in enumerate(ESTIMATORS)}
    pooled = pooled.sort_values(["teacher", "estimator"], key=lambda s: s.map(order)
                                if s.name == "estimator" else s)
    df["n_cells"] = 1
    return pd.concat([pooled, df], ignore_index=True)[cols + ["n_cells"]]
