"""The cost estimate before any spend: requests still to buy, tokens and dollars per split.

Counts what the cache already holds (those answers cost nothing), then prices the rest with the
teacher's price table: `usd_estimate` with a typical 4 bytes per prompt token, `usd_upper` with the
same worst-case bound the spending cap uses (1 byte per token) and max_tokens per answer. The
Batch API discount applies when batch mode is on. Next to it, the teacher's study-wide ledger:
spent, reserved (running jobs, pending batches) and remaining of `max_usd`. Nothing is sent
anywhere.
"""
from __future__ import annotations

from pathlib import Path

from ..config import Codebook
from .cache import ResponseCache
from .ledger import Ledger
from .prompts import PromptBuilder
from .run import SPLITS, build_requests, endpoint_identity, few_shot_examples, split_items
from .spec import TeacherSpec


def estimate(spec: TeacherSpec, cb: Codebook, splits_dir: str | Path, llm_train_size: int,
             cache_dir: str | Path) -> dict:
    shots = few_shot_examples(splits_dir, cb, spec)
    builder = PromptBuilder(cb, spec, shots)
    endpoint_id, _ = endpoint_identity(spec)
    factor = spec.batch.discount if spec.batch.enabled else 1.0
    out = {"task": cb.name, "teacher": spec.name, "model": spec.request_model,
           "samples": spec.samples, "max_usd": spec.max_usd, "batch": spec.batch.enabled,
           "price": {"input_per_mtok": spec.price.input_per_mtok,
                     "output_per_mtok": spec.price.output_per_mtok, "factor": factor},
           "splits": {}}
    ledger = ledger_totals(spec, cache_dir)
    with ResponseCache(cache_dir) as cache:
        for split in SPLITS:
            items = split_items(splits_dir, split, llm_train_size, shots)
            reqs = build_requests(items, builder, spec, endpoint_id)
            cached = cache.get_many([r.key for r in reqs])
            todo = [r for r in reqs if r.key not in cached]
            est_in = sum(r.est_in for r in todo)
            upper_in = sum(r.upper_in for r in todo)
            out_tok = len(todo) * spec.max_tokens
            usd_upper = spec.price.usd(upper_in, out_tok, factor)
            out["splits"][split] = {
                "items": int(len(items)), "requests": len(reqs), "cached": len(reqs) - len(todo),
                "to_request": len(todo), "prompt_tokens_estimate": est_in,
                "prompt_tokens_upper": upper_in, "completion_tokens_max": out_tok,
                "usd_estimate": round(spec.price.usd(est_in, out_tok, factor), 6),
                "usd_upper": round(usd_upper, 6),
                "within_max_usd": usd_upper <= ledger["remaining"] + 1e-12}  # study-wide cap
    s = out["splits"].values()
    out["total"] = {k: sum(d[k] for d in s) for k in
                    ("requests", "cached", "to_request", "prompt_tokens_estimate",
                     "prompt_tokens_upper", "completion_tokens_max")}
    out["total"]["usd_estimate"] = round(sum(d["usd_estimate"] for d in s), 6)
    out["total"]["usd_upper"] = round(sum(d["usd_upper"] for d in s), 6)
    out["ledger"] = ledger
    return out


def ledger_totals(spec: TeacherSpec, cache_dir: str | Path) -> dict:
    t = Ledger(cache_dir, spec.name, spec.max_usd).totals()
    return {k: round(t[k], 6) for k in ("max_usd", "spent", "reserved", "remaining")}


def format_ledger(name: str, t: dict) -> str:
    return (f"{name}: study-wide max_usd ${t['max_usd']:.2f}: spent ${t['spent']:.4f}, "
            f"reserved ${t['reserved']:.4f}, remaining ${t['remaining']:.4f}")


def format_estimate(e: dict) -> str:
    lines = [f"{e['task']} / {e['teacher']} ({e['model']}, k={e['samples']}"
             f"{', batch' if e['batch'] else ''})"]
    lines.append(f"  {'split':<11}{'items':>7}{'cached':>8}{'to send':>9}{'~tokens in':>12}"
                 f"{'~usd':>10}{'usd max':>10}")
    for split, d in e["splits"].items():
        flag = "" if d["within_max_usd"] else "  (upper bound above what max_usd has left)"
        lines.append(f"  {split:<11}{d['items']:>7}{d['cached']:>8}{d['to_request']:>9}"
                     f"{d['prompt_tokens_estimate']:>12}{d['usd_estimate']:>10.4f}"
                     f"{d['usd_upper']:>10.4f}{flag}")
    t = e["total"]
    lines.append(f"  {'total':<11}{'':>7}{t['cached']:>8}{t['to_request']:>9}"
                 f"{t['prompt_tokens_estimate']:>12}{t['usd_estimate']:>10.4f}{t['usd_upper']:>10.4f}")
    lines.append("  " + format_ledger("ledger", e["ledger"]))
    return "\n".join(lines)
