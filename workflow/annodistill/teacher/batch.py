"""OpenAI Batch API mode (about half price): submit, persist the batch id, poll, collect.

The job's state (batch id, input file id, ledger reservation) is written to the response cache's
journal the moment the batch exists, so a killed or timed-out run (and a later Snakemake invocation) polls the
same batch instead of submitting a new one. Each batch carries `metadata.annodistill_job`; a run
that died between creating the batch and recording it finds it again through the batch list.
Collected answers go into the response cache like any other answer, billed at price x discount.
Requests the batch could not answer are resubmitted (at most `ROUNDS` batches per run).
Each batch's worst case is reserved in the teacher's study-wide ledger (ledger.py) before it is
submitted and stays reserved across invocations until its answers are collected, when it is
settled at what they were billed; every round and every resumed run draws on the same budget.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time

from .cache import ResponseCache
from .ledger import Ledger
from .engine import BudgetExceeded, Request, Stats, TeacherError, api_key, scrub, usage_of
from .spec import TeacherSpec

log = logging.getLogger(__name__)
ROUNDS = 3
DONE = {"completed", "failed", "expired", "cancelled"}


class BatchPending(TeacherError):
    """The batch is still running after max_wait_s: rerun later to collect (nothing is resubmitted)."""


def job_id(requests: list[Request]) -> str:
    return hashlib.sha256("\n".join(sorted(r.key for r in requests)).encode()).hexdigest()[:32]


class BatchRunner:
    def __init__(self, spec: TeacherSpec, *, base_url: str, endpoint_id: str,
                 cache: ResponseCache, sleep=time.sleep):
        self.spec, self.base_url, self.endpoint_id, self.cache = spec, base_url, endpoint_id, cache
        self.stats = Stats()
        self.sleep = sleep
        self.ledger = Ledger(cache.dir, spec.name, spec.max_usd)

    def run(self, requests: list[Request]) -> dict[str, dict]:
        import openai

        t0 = time.monotonic()
        self.stats.requests = len(requests)
        key = api_key(self.spec)
        client = openai.OpenAI(api_key=key, base_url=self.base_url,
                               max_retries=self.spec.max_retries, timeout=self.spec.timeout_s)
        job = job_id(requests)
        by_key = {r.key: r for r in requests}
        answers = self.cache.get_many(list(by_key))
        self.stats.cache_hits = len(answers)
        try:
            for _ in range(ROUNDS):
                pending = [r for r in requests if r.key not in answers]
                if not pending:
                    break
                state = self.cache.batch_get(job)
                if state is None or state["collected"]:
                    state = self._find_or_submit(client, job, pending)
                self._wait(client, state["batch_id"])
                cost = self._collect(client, state["batch_id"], by_key, answers)
                if state.get("reservation"):
                    self.ledger.settle(state["reservation"], cost, "billed")
                elif cost > 0:
                    self.ledger.record_spend(cost, note=f"batch {state['batch_id']}")
                self.cache.batch_done(job)
        except openai.APIError as exc:
            raise TeacherError(scrub(f"teacher {self.spec.name}: Batch API error from "
                                     f"{self.base_url}: {exc}", key)) from None
        finally:
            client.close()
            self.ledger.close()
        missing = [r for r in requests if r.key not in answers]
        if missing:
            raise TeacherError(f"teacher {self.spec.name}: {len(missing)} requests still unanswered "
                               f"after {ROUNDS} batches; answers so far are cached, rerun to resume")
        self.stats.seconds = time.monotonic() - t0
        return answers

    def _find_or_submit(self, client, job: str, pending: list[Request]) -> dict:
        import openai

        for b in client.batches.list(limit=100):
            meta = b.metadata or {}
            if meta.get("annodistill_job") == job and b.status not in ("failed", "cancelled") \
                    and int(meta.get("n_requests", -1)) == len(pending):
                already = self.cache.batch_get(job)
                if already is None or already["batch_id"] != b.id:
                    log.info("found unrecorded batch %s for this job; adopting it", b.id)
                    self.cache.batch_put(job, b.id, b.input_file_id, len(pending), 0.0)
                    return self.cache.batch_get(job)
        s = self.spec
        worst = sum(s.price.usd(r.upper_in, s.max_tokens, s.batch.discount) for r in pending)
        # refuses to submit a batch that could take the study past max_usd
        reservation = self.ledger.try_reserve(worst, note=f"batch {job}", batch=True) \
            if worst > 0 else None
        if worst > 0 and reservation is None:
            t = self.ledger.totals()
            raise BudgetExceeded(
                f"max_usd ${s.max_usd:.4f} of teacher {s.name} (the whole study) would be exceeded: "
                f"${t['spent']:.4f} spent, ${t['reserved']:.4f} reserved (running jobs and pending "
                f"batches), this batch up to ${worst:.4f}. Answers bought so far are cached; raise "
                f"max_usd (see `annodistill teacher estimate`) and rerun")
        url = "/v1/completions" if s.mode == "completion" else "/v1/chat/completions"
        lines = [json.dumps({"custom_id": r.key, "method": "POST", "url": url, "body": r.body},
                            ensure_ascii=False) for r in pending]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            f = client.files.create(file=(f"annodistill-{job}.jsonl", io.BytesIO(data)),
                                    purpose="batch")
            b = client.batches.create(input_file_id=f.id, endpoint=url,
                                      completion_window=s.batch.completion_window,
                                      metadata={"annodistill_job": job,
                                                "n_requests": str(len(pending))})
        except openai.APIStatusError:
            if reservation:  # refused: nothing was submitted
                self.ledger.settle(reservation, 0.0, "refused")
            raise
        self.cache.batch_put(job, b.id, f.id, len(pending), worst, reservation)
        self.stats.http_attempts += 1
        log.info("submitted batch %s with %d requests (worst case $%.4f)", b.id, len(pending), worst)
        return self.cache.batch_get(job)

    def _wait(self, client, batch_id: str) -> None:
        t0 = time.monotonic()
        while True:
            b = client.batches.retrieve(batch_id)
            if b.status in DONE:
                if b.status in ("failed", "cancelled") and not b.output_file_id:
                    errs = getattr(b, "errors", None)
                    raise TeacherError(f"batch {batch_id} {b.status}: {errs}")
                return
            if time.monotonic() - t0 >= self.spec.batch.max_wait_s:
                raise BatchPending(f"batch {batch_id} is {b.status} after "
                                   f"{self.spec.batch.max_wait_s:.0f}s; rerun later to collect it "
                                   f"(nothing will be resubmitted)")
            self.sleep(self.spec.batch.poll_s)

    def _collect(self, client, batch_id: str, by_key: dict, answers: dict) -> float:
        """Cache the batch's answers; returns what they were billed."""
        b = client.batches.retrieve(batch_id)
        s = self.spec
        rows = []
        billed = 0.0  # every answer of this batch, also those a killed run already cached
        for fid in (b.output_file_id, getattr(b, "error_file_id", None)):
            if not fid:
                continue
            text = client.files.content(fid).text
            for line in text.splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                k = rec.get("custom_id")
                resp = (rec.get("response") or {})
                if k not in by_key or resp.get("status_code") != 200:
                    continue
                body = resp["body"]
                pt, ct = usage_of(body)
                missing_usage = pt is None or ct is None
                pt = by_key[k].upper_in if pt is None else pt
                ct = s.max_tokens if ct is None else ct
                cost = s.price.usd(pt, ct, s.batch.discount)
                billed += cost
                if k in answers:
                    continue
                self.stats.usage_missing += missing_usage
                r = by_key[k]
                rows.append((k, dict(endpoint=self.endpoint_id, model=s.request_model,
                                     sample=r.sample, request=r.body, response=body,
                                     billed_usd=cost)))
                answers[k] = {**body, "_billed_usd": cost}
                self.stats.prompt_tokens += pt
                self.stats.completion_tokens += ct
                self.stats.usd += cost
        if rows:
            self.cache.put_many(rows)
        self.stats.requests_sent += len(rows)
        log.info("batch %s: collected %d answers", batch_id, len(rows))
        return billed
