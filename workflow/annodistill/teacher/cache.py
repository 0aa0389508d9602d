"""The persistent, content-addressed response cache: no paid answer is ever bought twice.

One SQLite file (`<cache_dir>/responses.sqlite`, WAL journal, `synchronous=FULL`): each answer is
committed, and so on disk, the moment it arrives, before the next request is sent on its slot. A
run killed with SIGKILL loses at most the answers in flight; a rerun finds every committed answer
and sends only the rest. Several labelling jobs (tasks, splits) share the file safely.

Key: sha256 of the canonical JSON of {endpoint, model, full request body, sample index}. The
endpoint is the base_url (or, for the local llama.cpp teacher, the model file's sha256, since its
port changes every run). The API key is not part of the key and is never stored.

The same file keeps the Batch API state (batch ids per job), so a Batch run resumes across
Snakemake invocations.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY,
  created REAL NOT NULL,
  endpoint TEXT NOT NULL,
  model TEXT NOT NULL,
  sample INTEGER NOT NULL,
  request TEXT NOT NULL,
  response TEXT NOT NULL,
  billed_usd REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
  job TEXT PRIMARY KEY,
  batch_id TEXT NOT NULL,
  input_file_id TEXT NOT NULL,
  n_requests INTEGER NOT NULL,
  reserved_usd REAL NOT NULL,
  created REAL NOT NULL,
  collected INTEGER NOT NULL DEFAULT 0
);
"""


def cache_key(endpoint: str, model: str, body: dict, sample: int) -> str:
    blob = json.dumps({"endpoint": endpoint, "model": model, "request": body, "sample": sample},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "responses.sqlite"
        # writes may come from a worker thread (so fsync never blocks the event loop): one lock
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """Cached responses by key, each with its billed cost under `_billed_usd`."""
        out: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = (f"SELECT key, response, billed_usd FROM responses "
                 f"WHERE key IN ({','.join('?' * len(chunk))})")
            for k, r, usd in self.db.execute(q, chunk):
                out[k] = json.loads(r)
                out[k]["_billed_usd"] = usd
        return out

    def put(self, key: str, *, endpoint: str, model: str, sample: int, request: dict,
            response: dict, billed_usd: float) -> None:
        """Commit one answer durably (INSERT OR IGNORE: the first answer for a key wins)."""
        with self.lock:
            self.db.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, time.time(), endpoint, model, sample,
                 json.dumps(request, sort_keys=True, ensure_ascii=False),
                 json.dumps(response, sort_keys=True, ensure_ascii=False), float(billed_usd)))

    def put_many(self, rows: list[tuple[str, dict]]) -> None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for key, kw in rows:
                    self.put(key, **kw)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # ---- Batch API state ----
    def batch_get(self, job: str) -> dict | None:
        cur = self.db.execute("SELECT batch_id, input_file_id, n_requests, reserved_usd, created, "
                              "collected FROM batches WHERE job = ?", (job,))
        row = cur.fetchone()
        if row is None:
            return None
        keys = ("batch_id", "input_file_id", "n_requests", "reserved_usd", "created", "collected")
        return dict(zip(keys, row))

    def batch_put(self, job: str, batch_id: str, input_file_id: str, n_requests: int,
                  reserved_usd: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, 0)",
                        (job, batch_id, input_file_id, n_requests, reserved_usd, time.time()))

    def batch_done(self, job: str) -> None:
        self.db.execute("UPDATE batches SET collected = 1 WHERE job = ?", (job,))
