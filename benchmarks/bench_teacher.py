"""Labelling throughput against the loopback OpenAI-compatible server (not a test).

The server answers every request after a set latency. The labeller (the real engine: openai async
client, rate limiter, retries, spending guard, durable cache writes) runs with a concurrency and a
client-side rate limit; its rate is reported as a ratio to the ceiling min(rate limit,
concurrency / latency) and to a plain sequential loop (the sync openai client, one request at a
time) measured in the same run against the same server.

    .venv/bin/python benchmarks/bench_teacher.py [--n 600] [--latency 0.5] [--concurrency 32] [--rpm 3000]

Goal (issue 3): >= 90 % of the ceiling and >= 20x sequential.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai_server import FakeOpenAI  # noqa: E402

from annodistill.teacher.cache import ResponseCache, cache_key  # noqa: E402
from annodistill.teacher.engine import Labeller, Request  # noqa: E402
from annodistill.teacher.spec import spec_from_dict  # noqa: E402


def body(i: int, k: int) -> dict:
    return {"model": "fake-model", "prompt": f"Decide yes or no.\n\nText: item {i} about tax\nAnswer:",
            "max_tokens": 2, "temperature": 0.6, "seed": k, "stop": ["\n"]}


def sequential(base_url: str, n: int) -> float:
    import openai

    client = openai.OpenAI(api_key="no-key", base_url=base_url, max_retries=0)
    t0 = time.perf_counter()
    for i in range(n):
        client.completions.create(**body(10_000_000 + i, 0))
    dt = time.perf_counter() - t0
    client.close()
    return n / dt


def labeller_rate(base_url: str, n: int, concurrency: int, rpm: float | None, tag: str) -> tuple[float, dict]:
    spec = spec_from_dict("bench", {"provider": "openai", "base_url": base_url, "model": "fake-model",
                                    "mode": "completion", "max_usd": 0, "samples": 1,
                                    "concurrency": concurrency, "requests_per_minute": rpm,
                                    "max_tokens": 2})
    reqs = []
    for i in range(n):
        b = body(i, hash(tag) % 1000)
        reqs.append(Request(f"{tag}{i}", 0, b, cache_key(base_url, "fake-model", b, 0)))
    with tempfile.TemporaryDirectory() as d, ResponseCache(d) as cache:
        lab = Labeller(spec, base_url=base_url, endpoint_id=base_url, cache=cache, progress=False)
        t0 = time.perf_counter()
        lab.run(reqs)
        dt = time.perf_counter() - t0
        assert lab.stats.requests_sent == n and cache.count() == n
    return n / dt, lab.stats.as_dict()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="requests per labeller run")
    ap.add_argument("--n-seq", type=int, default=20, help="requests in the sequential loop")
    ap.add_argument("--latency", type=float, default=0.5, help="server latency, seconds")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rpm", type=float, default=3000, help="client-side requests per minute")
    args = ap.parse_args()
    with FakeOpenAI(latency_s=args.latency, noise=0.0) as srv:
        seq = sequential(srv.base_url, args.n_seq)
        scenarios = [("rate-limited", args.concurrency, args.rpm),
                     ("concurrency-bound", args.concurrency // 2, None)]
        rows = []
        for name, conc, rpm in scenarios:
            ceiling = min(rpm / 60.0 if rpm else float("inf"), conc / args.latency)
            rate, stats = labeller_rate(srv.base_url, args.n, conc, rpm, name)
            rows.append({"scenario": name, "concurrency": conc, "rpm": rpm,
                         "latency_s": args.latency, "n": args.n, "rate_per_s": round(rate, 2),
                         "ceiling_per_s": round(ceiling, 2),
                         "ratio_to_ceiling": round(rate / ceiling, 3),
                         "ratio_to_sequential": round(rate / seq, 1),
                         "retries": stats["retries"]})
        dup = srv.n_duplicates()
    print(f"sequential loop: {seq:.2f} requests/s (latency {args.latency}s)")
    for r in rows:
        print(f"{r['scenario']:<18} concurrency {r['concurrency']:>3}, rpm {r['rpm'] or '-':>6}: "
              f"{r['rate_per_s']:7.2f}/s = {100 * r['ratio_to_ceiling']:5.1f} % of the ceiling "
              f"{r['ceiling_per_s']:.1f}/s, {r['ratio_to_sequential']:.1f}x sequential")
    print(json.dumps({"sequential_per_s": round(seq, 3), "scenarios": rows,
                      "duplicate_answers": dup}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
