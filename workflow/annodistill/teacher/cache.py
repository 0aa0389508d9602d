"""The persistent, content-addressed response cache: no paid answer is ever bought twice.

Layout under `cache_dir` (`teachers.cache_dir`, default cache/llm), safe for many labelling jobs on
many nodes sharing it over NFS or Lustre (see journal.py for why and how):

- `shards/<host>-<pid>-<uuid>.jsonl`: one append-only file per labelling process; each answer is
  one checksummed line, fsynced the moment it arrives, before the next request goes out on that
  slot. SIGKILL loses at most the answers in flight; a torn last line is never accepted.
- `shards/merged.jsonl`: finished shards folded together by `compact` (temp file + rename under
  a lock file; a shard is deleted only after the merged file holding it is durable).
- `claims/<key>`: while a process buys an answer it holds an O_EXCL claim file on its key; another
  process needing the same answer waits for it instead of paying again. A claim whose owner died
  (same host) or stopped refreshing it (another host) is broken.
- `responses.sqlite` (the cache before this layout): imported read-only, without WAL, into
  `shards/migrated-sqlite.jsonl` on first use, then left alone.

Key: sha256 of the canonical JSON of {endpoint, model, full request body, sample index}. The
endpoint is the base_url, or for a teacher served inside its job the model's identity (the GGUF's
sha256; the served model name), since its port changes every run. The API key is not part of the
key and is never stored.

The same journal keeps the Batch API state (batch ids per job, latest record wins), so a Batch
run resumes across Snakemake invocations and nodes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from . import journal

log = logging.getLogger(__name__)
COMPACT_AT = 64          # finished shards that trigger a compaction when a cache is opened
MIGRATED = "migrated-sqlite.jsonl"


def cache_key(endpoint: str, model: str, body: dict, sample: int) -> str:
    blob = json.dumps({"endpoint": endpoint, "model": model, "request": body, "sample": sample},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _keep_latest_batch(records: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Compaction keeps every answer and only the latest state of each batch job."""
    latest: dict[str, tuple] = {}
    for rid, rec in records:
        if rec.get("kind") == "batch":
            k = (rec["t"], rec.get("seq", 0))
            if rec["job"] not in latest or k >= latest[rec["job"]][0]:
                latest[rec["job"]] = (k, rid)
    keep_ids = {rid for _, rid in latest.values()}
    return [(rid, rec) for rid, rec in records if rec.get("kind") != "batch" or rid in keep_ids]


class Claim:
    """This process's claim on one key (`claims/<key[:2]>/<key>`, created with O_EXCL). When the
    answer is cached the file is replaced (rename) by a `bought` marker naming the shard that
    holds it, so a process that finds the key claimed knows where to read the answer even when
    its directory listing is stale (NFS caches listings)."""

    def __init__(self, path: Path, token: str, fresh: bool):
        self.path, self.token, self.fresh = path, token, fresh

    def heartbeat(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def done(self, shard: str | None) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{self.token[:8]}")
        tmp.write_text(json.dumps({"bought": True, "shard": shard, "t": time.time()}))
        os.replace(tmp, self.path)

    def release(self) -> None:
        """Give the claim up without an answer (the request failed)."""
        try:
            held = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return
        if held.get("token") == self.token:
            self.path.unlink(missing_ok=True)


class Bought:
    def __init__(self, path: Path, shard: str | None):
        self.path, self.shard = path, shard


class ResponseCache:
    def __init__(self, cache_dir: str | Path, *, compact_at: int = COMPACT_AT):
        self.dir = Path(cache_dir)
        self.shards = self.dir / "shards"
        self.claims = self.dir / "claims"
        self.shards.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()  # puts may come from worker threads
        self.writer = journal.ShardWriter(self.shards)
        self.reader = journal.JournalReader(self.shards)
        self.answers: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._seq = 0
        self._migrate_sqlite()
        self.refresh()
        n_done = sum(journal.compactable(self.shards, self.reader, n)
                     for n in self.reader.shard_names())
        if n_done >= compact_at:
            self.compact(timeout=0.0)

    # ---- lifecycle ----
    def close(self) -> None:
        with self.lock:
            self.writer.close(seal=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- reading ----
    def refresh(self) -> None:
        """Take in what other processes (and hosts) have written since the last refresh."""
        with self.lock:
            self._take(self.reader.poll())

    def _take(self, records) -> None:
        with self.lock:
            for rid, rec in records:
                kind = rec.get("kind")
                if kind == "answer":
                    if rid not in self.answers:
                        self.answers[rid] = {"response": rec["response"],
                                             "billed_usd": rec["billed_usd"]}
                elif kind == "batch":
                    old = self.batches.get(rec["job"])
                    if old is None or (rec["t"], rec.get("seq", 0)) >= (old["t"], old.get("seq", 0)):
                        self.batches[rec["job"]] = rec

    @property
    def corrupt(self) -> int:
        return self.reader.corrupt

    def _answer(self, key: str) -> dict | None:
        a = self.answers.get(key)
        return None if a is None else {**a["response"], "_billed_usd": a["billed_usd"]}

    def get(self, key: str, refresh: bool = False) -> dict | None:
        if refresh and key not in self.answers:
            self.refresh()
        return self._answer(key)

    def get_many(self, keys: list[str], refresh: bool = True) -> dict[str, dict]:
        """Cached responses by key, each with its billed cost under `_billed_usd`."""
        if refresh:
            self.refresh()
        return {k: self._answer(k) for k in keys if k in self.answers}

    def count(self) -> int:
        self.refresh()
        return len(self.answers)

    def records(self):
        """Every valid answer record on disk, with its request (for inspection and tests)."""
        for _, rid, rec in journal.JournalReader(self.shards).read_all():
            if rec.get("kind") == "answer":
                yield rid, rec

    # ---- writing ----
    @staticmethod
    def _answer_line(key: str, *, endpoint: str, model: str, sample: int, request: dict,
                     response: dict, billed_usd: float) -> bytes:
        return journal.encode(key, {"kind": "answer", "t": time.time(), "endpoint": endpoint,
                                    "model": model, "sample": sample, "request": request,
                                    "response": response, "billed_usd": float(billed_usd)})

    def put(self, key: str, **kw) -> None:
        """Write one answer durably (fsynced before returning; the first answer for a key wins)."""
        self.put_many([(key, kw)])

    def put_many(self, rows: list[tuple[str, dict]]) -> None:
        lines = [self._answer_line(k, **kw) for k, kw in rows]
        with self.lock:
            self.writer.append(lines)
            for k, kw in rows:
                self.answers.setdefault(k, {"response": kw["response"],
                                            "billed_usd": float(kw["billed_usd"])})

    # ---- claims: one buyer per answer across processes and hosts ----
    def claim(self, key: str, stale_s: float) -> Claim | Bought | None:
        """Claim (this process may buy `key` now; `fresh` False when a dead owner's claim was
        broken: refresh and check first), Bought (another process cached it: `get_bought`), or
        None while another live process is buying it (wait and ask again)."""
        path = self.claims / key[:2] / key
        broke = False
        for _ in range(3):
            token = uuid.uuid4().hex
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                verdict = self._claim_state(path, stale_s)
                if verdict == "busy":
                    return None
                if isinstance(verdict, Bought):
                    return verdict
                broke |= verdict == "broken"
                continue  # gone or broken: try again
            try:
                os.write(fd, json.dumps({**journal.owner(), "token": token,
                                         "t": time.time()}).encode())
            finally:
                os.close(fd)
            return Claim(path, token, fresh=not broke)
        return None

    def _claim_state(self, path: Path, stale_s: float):
        try:
            mtime = path.stat().st_mtime
            held = json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return "retry"
        except ValueError:
            held = {}
        if held.get("bought"):
            return Bought(path, held.get("shard"))
        if not held:
            return "busy" if time.time() - mtime < 5.0 else self._break(path, held)
        alive = journal.owner_alive(held)
        if alive is None:
            alive = time.time() - mtime < stale_s
        return "busy" if alive else self._break(path, held)

    def _break(self, path: Path, held: dict) -> str:
        aside = path.with_name(f".{path.name}.broken-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return "retry"
        try:
            moved = json.loads(aside.read_text() or "{}")
        except ValueError:
            moved = {}
        if moved.get("token") != held.get("token") or moved.get("bought"):
            try:  # not the stale claim we judged: put it back
                os.link(aside, path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return "busy"
        aside.unlink(missing_ok=True)
        log.info("broke the stale claim of %s on %s", held, path.name)
        return "broken"

    def get_bought(self, key: str, bought: Bought) -> dict | None:
        """The answer another process bought: read its shard (by name), else everything."""
        if key not in self.answers and bought.shard:
            with self.lock:
                out: list = []
                if self.reader._read(bought.shard, out):
                    self._take(out)
        if key not in self.answers:
            self.refresh()
        if key not in self.answers:
            # marked bought but not readable (its record was torn): forget the marker, rebuy
            log.warning("claim %s says bought but no valid record is found; it will be rebought",
                        bought.path)
            bought.path.unlink(missing_ok=True)
        return self._answer(key)

    # ---- Batch API state ----
    def batch_get(self, job: str) -> dict | None:
        self.refresh()
        rec = self.batches.get(job)
        if rec is None:
            return None
        return {k: rec[k] for k in ("batch_id", "input_file_id", "n_requests", "reserved_usd",
                                    "created", "collected", "reservation")}

    def _batch_write(self, job: str, state: dict) -> None:
        with self.lock:
            self._seq += 1
            rec = {"kind": "batch", "job": job, "t": time.time(), "seq": self._seq, **state}
            self.writer.append([journal.encode(f"batch:{job}:{uuid.uuid4().hex}", rec)])
            self.batches[job] = rec

    def batch_put(self, job: str, batch_id: str, input_file_id: str, n_requests: int,
                  reserved_usd: float, reservation: str | None = None) -> None:
        self._batch_write(job, {"batch_id": batch_id, "input_file_id": input_file_id,
                                "n_requests": n_requests, "reserved_usd": reserved_usd,
                                "created": time.time(), "collected": 0,
                                "reservation": reservation})

    def batch_done(self, job: str) -> None:
        state = self.batch_get(job)
        if state is not None:
            self._batch_write(job, {**state, "collected": 1})

    # ---- maintenance ----
    def compact(self, timeout: float = 60.0) -> int | None:
        """Fold finished shards into merged.jsonl (None: another process is compacting)."""
        n = journal.compact(self.shards, _keep_latest_batch, timeout=timeout)
        if n:
            log.info("%s: folded %d finished shards into %s", self.shards, n, journal.MERGED)
        return n

    def _migrate_sqlite(self) -> None:
        """Import the old SQLite cache once (read-only, no WAL, no shared memory)."""
        db_path = self.dir / "responses.sqlite"
        marker = self.dir / "migrated-sqlite.done"
        if not db_path.exists() or marker.exists():
            return
        lock = journal.LockFile(self.shards / ".compact.lock", stale_s=600.0)
        lock.acquire(timeout=600)
        try:
            if marker.exists():
                return
            wal = db_path.with_name(db_path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                # not cleanly closed: its last commits are only in the WAL, which needs SQLite's
                # shared memory to read (works on the host that wrote it)
                log.warning("%s has a WAL file; importing it read-only through SQLite's WAL "
                            "reader (run this once on the host that wrote it)", db_path)
                uri = f"file:{db_path}?mode=ro"
            else:
                uri = f"file:{db_path}?mode=ro&immutable=1"
            db = sqlite3.connect(uri, uri=True)
            lines = []
            try:
                for key, created, endpoint, model, sample, req, resp, usd in db.execute(
                        "SELECT key, created, endpoint, model, sample, request, response, "
                        "billed_usd FROM responses"):
                    lines.append(journal.encode(key, {
                        "kind": "answer", "t": created, "endpoint": endpoint, "model": model,
                        "sample": sample, "request": json.loads(req),
                        "response": json.loads(resp), "billed_usd": usd}))
                try:
                    rows = db.execute("SELECT job, batch_id, input_file_id, n_requests, "
                                      "reserved_usd, created, collected FROM batches").fetchall()
                except sqlite3.OperationalError:
                    rows = []
                for job, bid, fid, n, usd, created, collected in rows:
                    lines.append(journal.encode(f"batch:{job}:migrated", {
                        "kind": "batch", "job": job, "t": created, "seq": 0, "batch_id": bid,
                        "input_file_id": fid, "n_requests": n, "reserved_usd": usd,
                        "created": created, "collected": collected, "reservation": None}))
            finally:
                db.close()
            lines.append(journal.encode(journal.SEAL, {"t": time.time()}))
            tmp = self.shards / f".{MIGRATED}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as fh:
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.shards / MIGRATED)
            journal.fsync_dir(self.shards)
            marker.write_text(json.dumps({"answers": len(lines) - 1 - len(rows),
                                          "batches": len(rows), "t": time.time()}) + "\n")
            journal.fsync_dir(self.dir)
            log.info("imported %d answers from %s (left in place, no longer written)",
                     len(lines) - 1 - len(rows), db_path)
        finally:
            lock.release()
