"""DAG build time of the paper-scale study (config/paper.yaml, 14 tasks) as a dry run.

    .venv/bin/python benchmarks/bench_dag.py [--repeats 3]

Measures, in the same run and on the same generated stand-in data, the wall time of
`snakemake -n` for (a) the baseline: the paper config cut to one task, and (b) all 14 tasks,
and prints jobs, seconds and the ratio of (b) to (a). The issue's bar: (b) under 15 s and at most
a few hundred jobs. Each number is the median of --repeats runs (a fresh interpreter each time,
as a user's `snakemake -n` pays it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_paper_scale import dry_run, job_counts, make_paper_study  # noqa: E402


def measure(workdir: Path, cfg: Path, repeats: int) -> tuple[float, int]:
    times, jobs = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = dry_run(workdir, cfg)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"dry run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        jobs = sum(job_counts(proc.stdout + proc.stderr).values())
    return statistics.median(times), jobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full_cfg = make_paper_study(tmp)
        cfg = yaml.safe_load(full_cfg.read_text())
        one = dict(cfg, tasks=cfg["tasks"][:1])
        one_cfg = full_cfg.with_name("paper_one_task.yaml")
        one_cfg.write_text(yaml.safe_dump(one, sort_keys=False))
        t1, j1 = measure(tmp, one_cfg, args.repeats)
        t14, j14 = measure(tmp, full_cfg, args.repeats)
    print(f"{'config':<28}{'jobs':>6}{'dry run (s)':>14}")
    print(f"{'paper, 1 task (baseline)':<28}{j1:>6}{t1:>14.2f}")
    print(f"{'paper, 14 tasks':<28}{j14:>6}{t14:>14.2f}")
    print(f"ratio 14 tasks / 1 task: jobs x{j14 / j1:.1f}, time x{t14 / t1:.2f}; "
          f"bar: < 15 s and a few hundred jobs -> {'met' if t14 < 15 and j14 <= 500 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
