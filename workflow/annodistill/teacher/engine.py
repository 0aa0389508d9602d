"""Sending the requests: the openai async client, bounded concurrency, a client-side rate limit,
retries on retryable failures only, a hard spending cap, the cache, a progress bar.

- Concurrency: `concurrency` workers take requests in order (with 1 worker the k samples of an item
  go back to back, so a local server's prompt cache is reused).
- Rate limit: requests start at least 60/requests_per_minute s apart; a token bucket of
  tokens_per_minute (prompt estimate + max_tokens per request). A 429's Retry-After pauses every
  worker.
- Retries with exponential backoff and jitter on 408/409/429/5xx, timeouts, dropped connections
  and unreadable responses; 400/401/403/404/422 fail fast with the server's message.
- Spending: before each attempt, its worst-case cost (prompt-token upper bound from the
  prompt's bytes, plus max_tokens) is reserved in the teacher's study-wide ledger (ledger.py)
  against `max_usd`; after the answer, the reservation is replaced by the billed cost from the
  response's usage. An attempt whose billing is unknown (timeout, dropped connection, unreadable
  body) stays at its worst case. spent + reserved never exceeds max_usd across all jobs, so
  neither does the spend. Cached answers cost nothing.
- One buyer per answer: a worker claims the answer's key in the cache before buying it; when
  another process (another job, another node) holds the claim, it waits and takes that answer.
- Every answer is committed to the cache as it arrives; on a fatal error the workers stop taking
  new requests, the ones in flight finish and are cached, then the error is raised.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import sys
import time
from dataclasses import dataclass, field

from .cache import Claim, ResponseCache
from .ledger import Ledger
from .prompts import prompt_tokens_estimate, prompt_tokens_upper
from .spec import TeacherSpec

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429}
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
RETRY_AFTER_CAP_S = 300.0
# failures after which the provider may have billed the request: counted at the worst case
UNKNOWN_BILLING = {"timeout", "connection", "bad_response"}


class TeacherError(Exception):
    """A labelling run that cannot go on (the message says why and what to do)."""


class BudgetExceeded(TeacherError):
    pass


@dataclass
class Request:
    item_id: str
    sample: int
    body: dict
    key: str

    @property
    def upper_in(self) -> int:
        return prompt_tokens_upper(self.body)

    @property
    def est_in(self) -> int:
        return prompt_tokens_estimate(self.body)


@dataclass
class Stats:
    requests: int = 0              # answers needed (items x samples)
    cache_hits: int = 0
    requests_sent: int = 0         # answers bought in this run
    http_attempts: int = 0         # including retries
    retries: dict = field(default_factory=dict)
    prompt_tokens: int = 0         # of the answers bought in this run
    completion_tokens: int = 0
    usd: float = 0.0
    usage_missing: int = 0
    usd_unknown_billing: float = 0.0  # attempts whose billing is unknown, at their worst case
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class RateLimiter:
    """Requests per minute as a token bucket holding at most one second of requests (so a slot
    lost to a busy event loop can be caught up, never more); tokens per minute likewise with a
    minute's capacity. `block_until` pauses everyone (a 429's Retry-After)."""

    def __init__(self, rpm: float | None, tpm: float | None):
        now = time.monotonic()
        self.rps = rpm / 60.0 if rpm else None
        self.req_cap = max(1.0, self.rps) if self.rps else 0.0
        self.req_level, self.t_req = 1.0, now
        self.tpm = tpm
        self.tokens = float(tpm or 0)
        self.t_tokens = now
        self.blocked_until = 0.0
        self.lock = asyncio.Lock()

    def block_until(self, t: float) -> None:
        self.blocked_until = max(self.blocked_until, t)

    async def acquire(self, tokens: int) -> None:
        async with self.lock:  # FIFO: one waiter at a time
            while True:
                now = time.monotonic()
                wait = max(self.blocked_until - now, 0.0)
                if self.rps:
                    self.req_level = min(self.req_cap, self.req_level + (now - self.t_req) * self.rps)
                    self.t_req = now
                    if self.req_level < 1.0:
                        wait = max(wait, (1.0 - self.req_level) / self.rps)
                if self.tpm:
                    self.tokens = min(self.tpm, self.tokens + (now - self.t_tokens) * self.tpm / 60.0)
                    self.t_tokens = now
                    need = min(tokens, self.tpm)
                    if self.tokens < need:
                        wait = max(wait, (need - self.tokens) * 60.0 / self.tpm)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.rps:
                self.req_level -= 1.0
            if self.tpm:
                self.tokens -= min(tokens, self.tpm)


class Budget:
    """The study-wide cap of one teacher (ledger.Ledger): spent + reserved <= max_usd, always,
    across every process and host. A request that does not fit waits while this job's requests
    are in flight (their reservations usually settle far below the worst case), or while another
    job's are (up to `wait_others_s`), and fails only when nothing is in flight."""

    def __init__(self, ledger: Ledger, wait_others_s: float = 120.0):
        self.ledger = ledger
        self.max_usd = ledger.max_usd
        self.in_flight = 0
        self.wait_others_s = wait_others_s
        self._cond: asyncio.Condition | None = None

    def exceeded(self, worst: float) -> BudgetExceeded:
        t = self.ledger.totals()
        return BudgetExceeded(
            f"max_usd ${self.max_usd:.4f} of teacher {self.ledger.teacher} (the whole study) "
            f"would be exceeded: ${t['spent']:.4f} spent, ${t['reserved']:.4f} reserved by running "
            f"jobs, next request up to ${worst:.4f}. Answers bought so far are cached; raise "
            f"max_usd (see `annodistill teacher estimate`) and rerun")

    def reserve_now(self, worst: float, note: str = "", batch: bool = False) -> str | None:
        if worst <= 0:
            return None
        rid = self.ledger.try_reserve(worst, note, batch=batch)
        if rid is None:
            raise self.exceeded(worst)
        return rid

    async def reserve(self, worst: float) -> str | None:
        """A reservation id (None when the request costs nothing)."""
        if worst <= 0:
            return None
        if self._cond is None:
            self._cond = asyncio.Condition()
        waited_others = 0.0
        while True:
            rid = await asyncio.to_thread(self.ledger.try_reserve, worst)
            if rid is not None:
                self.in_flight += 1
                return rid
            if self.in_flight > 0:
                async with self._cond:
                    try:
                        await asyncio.wait_for(self._cond.wait(), timeout=1.0)
                    except asyncio.TimeoutError:
                        pass
                continue
            others = await asyncio.to_thread(self.ledger.others_in_flight)
            if others and waited_others < self.wait_others_s:
                await asyncio.sleep(0.5)
                waited_others += 0.5
                continue
            raise self.exceeded(worst)

    async def settle(self, rid: str | None, actual: float, how: str = "billed") -> None:
        if rid is None:
            return
        await asyncio.to_thread(self.ledger.settle, rid, actual, how)
        self.in_flight -= 1
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()


def api_key(spec: TeacherSpec) -> str:
    import os

    if not spec.api_key_env:
        return "no-key"  # local servers; the SDK needs a non-empty string
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise TeacherError(f"teacher {spec.name}: environment variable {spec.api_key_env} "
                           f"(teachers.models.{spec.name}.api_key_env) is not set")
    return key


def make_client(spec: TeacherSpec, base_url: str):
    import openai

    return openai.AsyncOpenAI(api_key=api_key(spec), base_url=base_url, max_retries=0,
                              timeout=spec.timeout_s)


def _retry_after(exc) -> float | None:
    resp = getattr(exc, "response", None)
    if resp is None:
        return None
    h = resp.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        v = h.get(name)
        if v is None:
            continue
        try:
            return min(float(v) * scale, RETRY_AFTER_CAP_S)
        except ValueError:
            try:
                dt = email.utils.parsedate_to_datetime(v)
                return min(max(dt.timestamp() - time.time(), 0.0), RETRY_AFTER_CAP_S)
            except (TypeError, ValueError):
                return None
    return None


def classify(exc: BaseException) -> tuple[str, bool]:
    """(kind, retryable) of an exception raised by the openai client."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", True
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code in RETRYABLE_STATUS or code >= 500:
            return str(code), True
        return str(code), False
    if isinstance(exc, (openai.APIResponseValidationError, ValueError)):
        return "bad_response", True
    return type(exc).__name__, False


def usage_of(resp: dict) -> tuple[int | None, int | None]:
    u = resp.get("usage") or {}
    return u.get("prompt_tokens"), u.get("completion_tokens")


class Progress:
    def __init__(self, n_items: int, samples: int, desc: str, enabled: bool = True):
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        self.bar = tqdm(total=n_items, desc=desc, unit="item", disable=not enabled,
                        mininterval=0.5 if tty else 10.0, file=sys.stderr, dynamic_ncols=tty)
        self.left: dict[str, int] = {}
        self.samples = samples

    def answer(self, item_id: str, stats: Stats) -> None:
        left = self.left.get(item_id, self.samples) - 1
        self.left[item_id] = left
        if left == 0:
            self.bar.update(1)
            self.bar.set_postfix(tok=stats.prompt_tokens + stats.completion_tokens,
                                 usd=f"{stats.usd:.4f}", hits=stats.cache_hits, refresh=False)

    def close(self) -> None:
        self.bar.close()


class Labeller:
    """Get one answer per Request, from the cache or the endpoint."""

    def __init__(self, spec: TeacherSpec, *, base_url: str, endpoint_id: str,
                 cache: ResponseCache, progress: bool = True, desc: str = "label"):
        self.spec, self.base_url, self.endpoint_id = spec, base_url, endpoint_id
        self.cache, self.progress_on, self.desc = cache, progress, desc
        self.stats = Stats()
        self.ledger = Ledger(cache.dir, spec.name, spec.max_usd)
        self.budget = Budget(self.ledger)
        self._claims: dict = {}
        # a claim not refreshed for this long belongs to a dead job on another host
        self._claim_stale_s = 2 * (spec.timeout_s + RETRY_AFTER_CAP_S + BACKOFF_CAP_S)
        self.limiter: RateLimiter | None = None
        self._stop = False
        self._rng = random.Random(spec.seed)
        self._secret = ""

    def run(self, requests: list[Request]) -> dict[str, dict]:
        return asyncio.run(self.arun(requests))

    async def arun(self, requests: list[Request]) -> dict[str, dict]:
        t0 = time.monotonic()
        self.stats.requests = len(requests)
        answers = self.cache.get_many([r.key for r in requests])
        progress = Progress(len({r.item_id for r in requests}), self.spec.samples, self.desc,
                            self.progress_on)
        for r in requests:
            if r.key in answers:
                self.stats.cache_hits += 1
                progress.answer(r.item_id, self.stats)
        pending = [r for r in requests if r.key not in answers]
        if pending:
            log.info("%s: %d answers needed, %d cached, %d to request from %s",
                     self.desc, len(requests), self.stats.cache_hits, len(pending), self.base_url)
            client = make_client(self.spec, self.base_url)
            self._secret = client.api_key
            self.limiter = RateLimiter(self.spec.requests_per_minute, self.spec.tokens_per_minute)
            queue: asyncio.Queue = asyncio.Queue()
            for r in pending:
                queue.put_nowait(r)
            errors: list[BaseException] = []
            try:
                workers = [asyncio.create_task(self._worker(client, queue, answers, progress, errors))
                           for _ in range(min(self.spec.concurrency, len(pending)))]
                await asyncio.gather(*workers)
            finally:
                await client.close()
                progress.close()
                self.ledger.close()
            if errors:
                exc = errors[0]
                if isinstance(exc, TeacherError):
                    raise type(exc)(scrub(str(exc), self._secret)) from None
                raise exc
        else:
            progress.close()
        self.stats.seconds = time.monotonic() - t0
        return answers

    async def _worker(self, client, queue, answers, progress, errors) -> None:
        while not self._stop:
            try:
                r = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                answers[r.key] = await self._one(client, r)
            except BaseException as exc:  # noqa: BLE001 - stop everyone, re-raised by arun
                self._stop = True
                errors.append(exc)
                return
            progress.answer(r.item_id, self.stats)

    async def _one(self, client, r: Request) -> dict:
        cached = await self._claim(r)
        if cached is not None:
            return cached
        claim = self._claims.pop(r.key)
        try:
            resp, cost, pt, ct = await self._send(client, r, claim)
            # durable before the answer counts; in a thread so the fsync never stalls other requests
            await asyncio.to_thread(self.cache.put, r.key, endpoint=self.endpoint_id,
                                    model=self.spec.request_model, sample=r.sample, request=r.body,
                                    response=resp, billed_usd=cost)
            await asyncio.to_thread(claim.done, self.cache.writer.path.name)
        except BaseException:
            claim.release()
            raise
        self.stats.requests_sent += 1
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        self.stats.usd += cost
        return {**resp, "_billed_usd": cost}

    async def _claim(self, r: Request) -> dict | None:
        """Take the claim on r's answer (kept in self._claims), or return the answer another
        process bought meanwhile (waiting while it is being bought)."""
        while True:
            if self._stop:
                raise TeacherError("stopped after another request failed")
            got = await asyncio.to_thread(self.cache.claim, r.key, self._claim_stale_s)
            if isinstance(got, Claim):
                if not got.fresh:  # broke a dead owner's claim: it may have cached the answer
                    await asyncio.to_thread(self.cache.refresh)
                if not got.fresh and self.cache.get(r.key) is not None:
                    await asyncio.to_thread(got.done, None)
                else:
                    self._claims[r.key] = got
                    return None
            elif got is not None:  # bought by another process: its shard has it
                ans = await asyncio.to_thread(self.cache.get_bought, r.key, got)
                if ans is not None:
                    self.stats.cache_hits += 1
                    return ans
                continue
            ans = self.cache.get(r.key)
            if ans is not None:
                self.stats.cache_hits += 1
                return ans
            await asyncio.sleep(0.2)

    async def _send(self, client, r: Request, claim) -> tuple[dict, float, int, int]:
        """(response, billed usd, prompt tokens, completion tokens). Every attempt reserves its
        worst case in the ledger; an attempt whose billing is unknown (timeout, dropped
        connection, unreadable body) is settled at that worst case, a refused one at $0."""
        s = self.spec
        upper_in = r.upper_in
        worst = s.price.usd(upper_in, s.max_tokens)
        create = (client.completions.create if "prompt" in r.body
                  else client.chat.completions.create)
        last = None
        for attempt in range(s.max_retries + 1):
            if self._stop:
                raise TeacherError("stopped after another request failed")
            await self.limiter.acquire(r.est_in + s.max_tokens)
            rid = await self.budget.reserve(worst)
            if self._stop:
                await self.budget.settle(rid, 0.0, "refused")
                raise TeacherError("stopped after another request failed")
            claim.heartbeat()
            self.stats.http_attempts += 1
            try:
                resp = await create(**r.body)
                if isinstance(resp, str):  # a non-JSON 200 body
                    raise ValueError(f"response is not JSON: {resp[:80]!r}")
                resp = resp.model_dump(mode="json", exclude_unset=False)
            except BaseException as exc:  # noqa: BLE001 - classified below
                kind, retryable = classify(exc) if isinstance(exc, Exception) else ("cancelled", False)
                if kind in UNKNOWN_BILLING or not isinstance(exc, Exception):
                    await self.budget.settle(rid, worst, "unknown")
                    self.stats.usd_unknown_billing += worst if rid else 0.0
                else:
                    await self.budget.settle(rid, 0.0, "refused")
                if not isinstance(exc, Exception):
                    raise
                if not retryable:
                    raise TeacherError(_fail_fast_message(s, self.base_url, exc, kind)) from None
                last = f"{kind}: {exc}"
                self.stats.retries[kind] = self.stats.retries.get(kind, 0) + 1
                delay = _retry_after(exc) if kind == "429" else None
                if delay is not None:
                    self.limiter.block_until(time.monotonic() + delay)
                else:
                    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt) * (0.5 + self._rng.random())
                log.debug("%s sample %d: %s; retry %d in %.2fs", r.item_id, r.sample, last,
                          attempt + 1, delay)
                if attempt < s.max_retries:
                    await asyncio.sleep(delay)
                continue
            pt, ct = usage_of(resp)
            if pt is None or ct is None:
                self.stats.usage_missing += 1
                pt, ct = upper_in if pt is None else pt, s.max_tokens if ct is None else ct
            cost = s.price.usd(pt, ct)
            await self.budget.settle(rid, cost, "billed")
            return resp, cost, pt, ct
        raise TeacherError(f"teacher {s.name}: gave up on item {r.item_id!r} sample {r.sample} after "
                           f"{s.max_retries + 1} attempts (last: {last}); answers so far are cached, "
                           f"rerun to resume")


def scrub(text: str, secret: str) -> str:
    """Remove the API key from a message (some servers echo it in errors)."""
    if secret and len(secret) >= 4 and secret != "no-key":
        text = text.replace(secret, "***")
    return text


def _fail_fast_message(spec: TeacherSpec, base_url: str, exc, kind: str) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    hint = {"400": "the request was rejected (check model, mode, structured/logprobs support)",
            "401": f"authentication failed (check the key in ${spec.api_key_env})",
            "403": "permission denied for this model or key",
            "404": f"model {spec.request_model!r} or endpoint not found at {base_url}",
            "422": "the request was rejected as unprocessable"}.get(kind, "not retryable")
    return f"teacher {spec.name}: HTTP {kind} from {base_url}: {hint}: {msg}"
