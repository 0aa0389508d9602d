"""Benchmark: bootstrap CIs of one run's metrics (annodistill.evaluate.metrics.score) against the
baseline of calling scikit-learn once per resample, measured in the same run on the same data.

    .venv/bin/python benchmarks/evaluate_bootstrap.py [--n-test 300] [--resamples 1000]

Prints both timings, the ratio, and checks that both give the same interval (same resample
indices, so the percentile bounds must agree).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from annodistill.evaluate.metrics import METRICS, Bootstrap, Scheme, percentile_ci, score, sklearn_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    scheme = Scheme(("yes", "no"), "yes")
    y = rng.choice(["yes", "no"], args.n_test, p=[0.3, 0.7])
    p = np.where(rng.random(args.n_test) < 0.8, y, np.where(y == "yes", "no", "yes"))
    boot = Bootstrap(args.resamples, 0.95, args.seed)

    t0 = time.perf_counter()
    ours = score(y, p, scheme, boot)
    t_ours = time.perf_counter() - t0

    yt, yp = scheme.encode(list(y)), scheme.encode(list(p))
    labels = np.array(scheme.labels + ("\x00",), dtype=object)

    def sk(a, b):
        s = sklearn_scores(labels[a], labels[b], scheme)
        return np.array([s[m] for m in METRICS])

    t0 = time.perf_counter()
    res = stats.bootstrap((yt, yp), sk, paired=True, vectorized=False, n_resamples=args.resamples,
                          method="percentile", rng=np.random.default_rng(args.seed))
    lo, hi = percentile_ci(np.asarray(res.bootstrap_distribution), 0.95)
    t_base = time.perf_counter() - t0

    same = all(np.isclose(ours[f"{m}_lo"], lo[i]) and np.isclose(ours[f"{m}_hi"], hi[i])
               for i, m in enumerate(METRICS))
    print(f"n_test={args.n_test} resamples={args.resamples}")
    print(f"baseline (scikit-learn per resample): {t_base:8.3f} s")
    print(f"annodistill (vectorised statistic):    {t_ours:8.3f} s")
    print(f"speed-up: {t_base / t_ours:6.1f}x   same intervals: {same}")


if __name__ == "__main__":
    main()
