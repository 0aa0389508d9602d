"""One labelling job: a teacher labels one split of one task (validation, test or train).

Reads the data stage's splits, draws the few-shot examples from the validation pool, builds one
request per (item, sample), takes what the cache has, buys the rest (live requests or the Batch
API; for a teacher served inside the job it starts its server only if anything is missing), and writes
labels_{split}.parquet and cost_{split}.json. Nothing is written unless every item has all k
answers, so an existing labels file is complete.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .. import io
from ..config import Codebook
from ..errors import InputError
from .votes import LABEL_COLUMNS, label_rows
from .cache import ResponseCache, cache_key
from .engine import Labeller, Request, TeacherError
from .prompts import PromptBuilder, check_disjoint, choose_few_shot
from .spec import TeacherSpec

log = logging.getLogger(__name__)
SPLITS = ("validation", "test", "train")


def _read_split(path: Path, cols: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise InputError("split file not found (run the data stage first)", path=str(path))
    df = io.read_parquet(path)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"missing columns {missing}", path=str(path))
    df = df.copy()
    df["id"] = df["id"].astype(str)
    return df


def split_items(splits_dir: str | Path, split: str, llm_train_size: int | None,
                shots: pd.DataFrame) -> pd.DataFrame:
    d = Path(splits_dir)
    if split == "validation":
        v = _read_split(d / "validation.parquet", ["id", "text", "label"])
        items = v[~v["id"].isin(set(shots["id"]))]
    elif split == "test":
        items = _read_split(d / "test.parquet", ["id", "text", "label"])
    elif split == "train":
        if llm_train_size is None:
            raise InputError("split train needs --llm-train-size")
        pool = _read_split(d / "train_pool.parquet", ["id", "text", "rank"])
        if llm_train_size > len(pool):
            raise InputError(f"llm_train_size {llm_train_size} exceeds the training pool "
                             f"({len(pool)})", path=str(d / "train_pool.parquet"))
        items = pool[pool["rank"] < llm_train_size].sort_values("rank")
    else:
        raise InputError(f"unknown split {split!r} (expected one of {SPLITS})")
    check_disjoint(items, shots, str(d))
    return items.reset_index(drop=True)


def few_shot_examples(splits_dir: str | Path, cb: Codebook, spec: TeacherSpec) -> pd.DataFrame:
    v = _read_split(Path(splits_dir) / "validation.parquet", ["id", "text", "label"])
    bad = sorted(set(v["label"]) - set(cb.label_names))
    if bad:
        raise InputError(f"validation labels {bad} are not in the codebook",
                         path=str(Path(splits_dir) / "validation.parquet"), field="label")
    return choose_few_shot(v, cb, spec.few_shot, spec.seed)


def endpoint_identity(spec: TeacherSpec) -> tuple[str, Path | None]:
    """(cache identity of the endpoint, local model path or None). A server started inside the
    job has a new port every run, so its identity is what it serves: the GGUF's sha256
    (llama_cpp_local) or the model name it answers as (local_server)."""
    if spec.provider == "llama_cpp_local":
        from .local import file_sha256, resolve_model_file

        path = resolve_model_file(spec.model_file)
        return f"llama_cpp_local:{file_sha256(path)}", path
    if spec.provider == "local_server":
        return f"local_server:{spec.request_model}", None
    return spec.base_url.rstrip("/"), None


def build_requests(items: pd.DataFrame, builder: PromptBuilder, spec: TeacherSpec,
                   endpoint_id: str) -> list[Request]:
    reqs = []
    for r in items.itertuples():
        for k in range(spec.samples):
            body = builder.body(r.text, k)
            reqs.append(Request(str(r.id), k, body, cache_key(endpoint_id, spec.request_model,
                                                              body, k)))
    return reqs


def check_gate(gate_path: str | Path, spec: TeacherSpec, task: str) -> None:
    g = io.read_json(gate_path)
    if g.get("passed", False):
        return
    msg = (f"task {task}: teacher {spec.name} failed the validation gate: "
           f"{g.get('headline_metric', 'F1')} {g.get('f1')} < min_f1 {g.get('min_f1')} "
           f"(see {gate_path})")
    if g.get("on_fail", spec.gate.on_fail) == "stop":
        raise TeacherError(msg + "; the training set is not labelled. Lower gate.min_f1, set "
                           "gate.on_fail: warn, or change the teacher/prompt")
    log.warning("%s; continuing (gate.on_fail: warn)", msg)


def _study_spend(runner) -> dict | None:
    """The teacher's study-wide ledger after this job (spent, reserved, remaining)."""
    ledger = getattr(runner, "ledger", None)
    if ledger is None:
        return None
    t = ledger.totals()
    return {k: round(t[k], 8) if isinstance(t[k], float) else t[k]
            for k in ("max_usd", "spent", "reserved", "remaining", "unknown_billing_usd")}


def label_split(*, spec: TeacherSpec, cb: Codebook, splits_dir: str | Path, split: str,
                out: str | Path, cost_out: str | Path, cache_dir: str | Path,
                llm_train_size: int | None = None, gate: str | Path | None = None,
                server_log: str | Path | None = None, progress: bool = True) -> dict:
    shots = few_shot_examples(splits_dir, cb, spec)
    items = split_items(splits_dir, split, llm_train_size, shots)
    if split == "train" and gate is not None:
        check_gate(gate, spec, cb.name)
    builder = PromptBuilder(cb, spec, shots)
    endpoint_id, model_path = endpoint_identity(spec)
    requests = build_requests(items, builder, spec, endpoint_id)
    desc = f"{cb.name}/{split}/{spec.name}"
    with ResponseCache(cache_dir) as cache:
        cached = cache.get_many([r.key for r in requests])
        missing = len(requests) - len(cached)

        def labeller(base_url):
            if spec.batch.enabled:
                from .batch import BatchRunner

                return BatchRunner(spec, base_url=base_url, endpoint_id=endpoint_id, cache=cache)
            return Labeller(spec, base_url=base_url, endpoint_id=endpoint_id, cache=cache,
                            progress=progress, desc=desc)

        if missing and spec.local:
            from .local import LocalServer

            with LocalServer(spec, model_path, server_log) as base_url:
                runner = labeller(base_url)
                answers = runner.run(requests)
        else:
            runner = labeller(spec.base_url or "(local, all cached)")
            answers = runner.run(requests)
    by_item = {(r.item_id, r.sample): answers[r.key] for r in requests}
    if len(by_item) != len(requests):
        raise TeacherError("internal: an answer is missing")
    labels = label_rows(items["id"].astype(str).tolist(), by_item, cb, spec)
    st = runner.stats
    report = {
        "task": cb.name, "teacher": spec.name, "split": split, "model": spec.request_model,
        "provider": spec.provider, "mode": spec.mode, "batch": spec.batch.enabled,
        "n_items": int(len(labels)), "samples": spec.samples,
        "few_shot_ids": shots["id"].astype(str).tolist(),
        "requests": st.requests, "cache_hits": st.cache_hits,
        "requests_sent": st.requests_sent, "http_attempts": st.http_attempts,
        "retries": st.retries, "n_retries": int(sum(st.retries.values())),
        "usage_missing": st.usage_missing,
        "usd_unknown_billing": round(st.usd_unknown_billing, 8),
        "prompt_tokens": st.prompt_tokens, "completion_tokens": st.completion_tokens,
        "usd": round(st.usd, 8),
        "usd_all_answers": round(float(labels["cost_usd"].sum()), 8),
        "prompt_tokens_all_answers": int(labels["prompt_tokens"].sum()),
        "completion_tokens_all_answers": int(labels["completion_tokens"].sum()),
        "max_usd": spec.max_usd,
        "study_spend": _study_spend(runner),
        "price": {"input_per_mtok": spec.price.input_per_mtok,
                  "output_per_mtok": spec.price.output_per_mtok,
                  "batch_discount": spec.batch.discount if spec.batch.enabled else None},
        "n_unparseable_answers": int(labels["n_unparseable"].sum()),
        "n_unlabelled_items": int(labels["label"].isna().sum()),
        "seconds": round(st.seconds, 3),
        "answers_per_s": round(st.requests_sent / st.seconds, 3) if st.seconds and st.requests_sent else None,
    }
    io.write_parquet(out, labels[LABEL_COLUMNS])
    io.write_json(cost_out, report)
    log.info("%s: %d items, %d answers (%d cached, %d bought), %d unparseable, %d unlabelled, "
             "$%.4f this run", desc, report["n_items"], st.requests, st.cache_hits,
             st.requests_sent, report["n_unparseable_answers"], report["n_unlabelled_items"], st.usd)
    return report
