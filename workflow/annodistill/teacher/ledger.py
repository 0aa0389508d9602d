"""The study-wide spend ledger: one `max_usd` per teacher across every labelling job, task, split,
Batch round and resumed run.

Stored next to the response cache as a journal (journal.py) under
`<cache_dir>/ledger/<teacher>/`: append-only, fsynced records, one shard per process, safe on
NFS/Lustre. Records:

- `reserve` {usd, owner, batch}: the worst case of one request (or of one whole batch) before it
  is sent;
- `settle` {id, usd, how}: what it cost: `billed` (the response's usage), `unknown` (a timeout or
  dropped connection after sending: counted at the worst case, never released at $0), `refused`
  (the server answered with an error status: not billed, $0).

Check-and-reserve happens under a lock file (`.reserve.lock`, O_EXCL, held for milliseconds), so
two processes on two hosts can never together reserve past the cap. A reservation left open by a
process that died counts at its worst case (its request may have been billed); one held by a
running process, or by a submitted Batch job, is `reserved`. spent + reserved <= max_usd always.

`max_usd` is operational: it decides whether a job may proceed, never what gets labelled.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from . import journal

log = logging.getLogger(__name__)
EPS = 1e-12


class Ledger:
    def __init__(self, cache_dir: str | Path, teacher: str, max_usd: float,
                 stale_s: float = 900.0):
        self.folder = Path(cache_dir) / "ledger" / teacher
        self.teacher, self.max_usd, self.stale_s = teacher, float(max_usd), stale_s
        self.writer = journal.ShardWriter(self.folder)
        self.reader = journal.JournalReader(self.folder)
        self.lock_file = self.folder / ".reserve.lock"
        self.reservations: dict[str, dict] = {}
        self.settlements: dict[str, dict] = {}
        self.mine: set[str] = set()
        self._tlock = threading.RLock()
        self._reserve_lock = threading.Lock()

    def refresh(self) -> None:
        with self._tlock:
            if not self.folder.exists():
                return
            for rid, rec in self.reader.poll():
                if rec.get("op") == "reserve":
                    self.reservations.setdefault(rid, rec)
                elif rec.get("op") == "settle":
                    self.settlements.setdefault(rec["id"], rec)

    def _open_state(self, rid: str, rec: dict) -> str:
        """'live' (a running process or a pending batch) or 'dead' (its owner died)."""
        if rec.get("batch") or rid in self.mine:
            return "live"
        alive = journal.owner_alive(rec.get("owner") or {})
        if alive is None:
            alive = time.time() - rec.get("t", 0) < self.stale_s
        return "live" if alive else "dead"

    def totals(self) -> dict:
        """spent (settled + dead reservations at worst case), reserved (live), remaining."""
        with self._tlock:
            self.refresh()
            spent = sum(s["usd"] for s in self.settlements.values())
            reserved = dead = 0.0
            n_live = 0
            for rid, rec in self.reservations.items():
                if rid in self.settlements:
                    continue
                if self._open_state(rid, rec) == "live":
                    reserved += rec["usd"]
                    n_live += 1
                else:
                    dead += rec["usd"]
            spent += dead
            return {"teacher": self.teacher, "max_usd": self.max_usd, "spent": spent,
                    "reserved": reserved, "remaining": self.max_usd - spent - reserved,
                    "unknown_billing_usd": dead + sum(s["usd"] for s in self.settlements.values()
                                                      if s.get("how") == "unknown"),
                    "in_flight": n_live}

    def others_in_flight(self) -> int:
        with self._tlock:
            self.refresh()
            return sum(1 for rid, rec in self.reservations.items()
                       if rid not in self.settlements and rid not in self.mine
                       and not rec.get("batch") and self._open_state(rid, rec) == "live")

    def try_reserve(self, usd: float, note: str = "", batch: bool = False) -> str | None:
        """Reserve `usd` if spent + reserved + usd <= max_usd (atomically across processes and
        hosts); the reservation id, or None when it does not fit."""
        with self._reserve_lock:  # this process's threads queue here, not on the file
            return self._try_reserve(usd, note, batch)

    def _try_reserve(self, usd: float, note: str, batch: bool) -> str | None:
        lock = journal.LockFile(self.lock_file, stale_s=30.0)
        lock.acquire(poll=0.005)
        try:
            with self._tlock:
                t = self.totals()
                if t["spent"] + t["reserved"] + usd > self.max_usd + EPS:
                    return None
                rid = f"r-{uuid.uuid4().hex}"
                rec = {"op": "reserve", "usd": float(usd), "owner": journal.owner(),
                       "t": time.time(), "note": note, "batch": bool(batch)}
                self.writer.append([journal.encode(rid, rec)])
                self.reservations[rid] = rec
                self.mine.add(rid)
                return rid
        finally:
            lock.release()

    def settle(self, rid: str, usd: float, how: str = "billed") -> None:
        """Replace a reservation by what it cost (`how`: billed | unknown | refused)."""
        with self._tlock:
            rec = {"op": "settle", "id": rid, "usd": float(usd), "how": how, "t": time.time()}
            self.writer.append([journal.encode(f"s-{rid}", rec)])
            self.settlements.setdefault(rid, rec)
            self.mine.discard(rid)

    def record_spend(self, usd: float, note: str = "") -> None:
        """Spend with no reservation of its own (e.g. a batch found on the provider's side)."""
        rid = f"r-{uuid.uuid4().hex}"
        with self._tlock:
            rec = {"op": "reserve", "usd": float(usd), "owner": journal.owner(),
                   "t": time.time(), "note": note, "batch": False}
            self.writer.append([journal.encode(rid, rec)])
            self.reservations[rid] = rec
        self.settle(rid, usd, "billed")

    def close(self) -> None:
        self.writer.close(seal=True)


def format_totals(t: dict) -> str:
    return (f"{t['teacher']}: study-wide spend ${t['spent']:.4f} spent, ${t['reserved']:.4f} "
            f"reserved, ${t['remaining']:.4f} remaining of max_usd ${t['max_usd']:.2f}")
