"""Append-only journals many processes on many hosts can share over a network filesystem.

The response cache (cache.py) and the spend ledger (ledger.py) are both journals: a folder of
shard files, one per writing process (`<host>-<pid>-<uuid>.jsonl`, created with O_EXCL, so no two
writers ever append to the same file), plus an optional `merged.jsonl` written by compaction.

One record per line: `<id>\\t<sha256 of the JSON, 16 hex>\\t<JSON>\\n`, written with one `write`
and fsynced before the call returns. A writer killed mid-line leaves a torn last line (no
newline, or a checksum that does not match): readers never accept it, and since nobody appends to
a dead writer's shard, it stays the last line and corrupts nothing before it. A closing writer
appends a `#seal` line: a sealed shard (or an unsealed one whose writer is known dead) may be
folded into `merged.jsonl` by compaction, under a lock file (`LockFile`), written to a temporary
name, fsynced and renamed; shards are deleted only after that rename is durable.

Why not SQLite (what the cache used to be): its WAL mode needs shared memory on one host and its
rollback journal relies on POSIX byte-range locks that NFS and Lustre implement unreliably or not
at all; several labelling jobs on several nodes then lock up or corrupt the file. Per-writer
append-only files need no lock to write and only O_EXCL creation and rename, which NFSv3+ and
Lustre do atomically. The lock (O_EXCL lock file with owner, heartbeat and stale detection) is
used only for compaction, the ledger's check-and-reserve and per-request claims.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

SEAL = "#seal"
MERGED = "merged.jsonl"
HOST = socket.gethostname()


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


def encode(rid: str, rec: dict) -> bytes:
    if "\t" in rid or "\n" in rid:
        raise ValueError(f"record id {rid!r} holds a tab or newline")
    blob = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rid.encode() + b"\t" + _digest(blob).encode() + b"\t" + blob + b"\n"


def decode(line: bytes) -> tuple[str, dict] | None:
    """(id, record) of one complete line, or None when it is torn or corrupt."""
    parts = line.rstrip(b"\n").split(b"\t", 2)
    if len(parts) != 3 or _digest(parts[2]).encode() != parts[1]:
        return None
    try:
        return parts[0].decode(), json.loads(parts[2])
    except ValueError:
        return None


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner() -> dict:
    pid = os.getpid()
    return {"host": HOST, "pid": pid, "start": _proc_start(pid)}


def owner_alive(o: dict) -> bool | None:
    """True/False for an owner on this host; None (unknown) for another host."""
    if o.get("host") != HOST:
        return None
    pid = int(o.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _proc_start(pid)
    return start is None or o.get("start") is None or start == o.get("start")


class ShardWriter:
    """This process's own shard in `folder` (created on the first append)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path: Path | None = None
        self.fd: int | None = None
        self.pid = os.getpid()

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self.pid = os.getpid()
        fsync_dir(self.folder)

    def append(self, lines: list[bytes]) -> None:
        """Write the lines at the end of the shard and fsync before returning."""
        if not lines:
            return
        if self.fd is None or self.pid != os.getpid():  # a forked child gets its own shard
            self._open()
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)

    def close(self, seal: bool = True) -> None:
        if self.fd is None or self.pid != os.getpid():
            return
        try:
            if seal:
                self.append([encode(SEAL, {"t": time.time()})])
        finally:
            os.close(self.fd)
            self.fd = None


class JournalReader:
    """Reads every shard of a folder and its merged file incrementally (only what is new).

    A line that does not decode is retried on the next poll while it is the last line of its
    file (a writer on another host may still be completing it; NFS can show a grown file before
    its bytes), and skipped, counted in `corrupt`, once valid lines follow it.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.offsets: dict[str, int] = {}
        self.merged_id: tuple | None = None
        self.corrupt = 0
        self.seen_corrupt: set[tuple[str, int]] = set()
        self.sealed: set[str] = set()

    def shard_names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.folder)
                          if n.endswith(".jsonl") and not n.startswith(".") and n != MERGED)
        except FileNotFoundError:
            return []

    def poll(self) -> Iterator[tuple[str, dict]]:
        for _ in range(20):
            out: list[tuple[str, dict]] = []
            names = self.shard_names()
            merged = self.folder / MERGED
            try:
                st = merged.stat()
                mid = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                mid = None
            if mid is not None and (self.merged_id is None or mid[:2] != self.merged_id[:2]):
                self.offsets.pop(MERGED, None)  # replaced by compaction: read it whole
            self.merged_id = mid
            vanished = False
            if mid is not None:
                vanished |= not self._read(MERGED, out)
            for n in names:
                vanished |= not self._read(n, out)
            yield from out
            if not vanished:
                return
            # a shard was deleted by compaction after we listed it: its records are in the new
            # merged file, so read again (records are deduplicated by the caller)
        raise OSError(f"{self.folder}: shards keep vanishing while reading (compaction loop?)")

    def _read(self, name: str, out: list) -> bool:
        start = self.offsets.get(name, 0)
        try:
            with open(self.folder / name, "rb") as fh:
                fh.seek(start)
                data = fh.read()
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n")
        if end < 0:
            return True
        pos, good_upto = 0, 0
        pending_bad: list[int] = []
        for line in data[:end + 1].split(b"\n")[:-1]:
            here = start + pos
            pos += len(line) + 1
            rec = decode(line)
            if rec is None:
                pending_bad.append(here)
                continue
            for b in pending_bad:  # a bad line with a good one after it: skip it for good
                if (name, b) not in self.seen_corrupt:
                    self.seen_corrupt.add((name, b))
                    self.corrupt += 1
                    log.warning("%s: corrupt record at byte %d ignored", self.folder / name, b)
            pending_bad = []
            good_upto = pos
            if rec[0] == SEAL:
                self.sealed.add(name)
            else:
                out.append(rec)
        self.offsets[name] = start + (good_upto if pending_bad else pos)
        return True

    def read_all(self) -> Iterator[tuple[str, str, dict]]:
        """(file name, id, record) of every valid record, from scratch (for inspection)."""
        for name in [MERGED, *self.shard_names()]:
            try:
                data = (self.folder / name).read_bytes()
            except FileNotFoundError:
                continue
            for line in data.split(b"\n"):
                rec = decode(line) if line else None
                if rec is not None and rec[0] != SEAL:
                    yield name, rec[0], rec[1]


class LockFile:
    """A lock that works on NFS and Lustre: a file created with O_CREAT|O_EXCL holding its owner.

    Stale when its owner is a dead process on this host, or when it was not refreshed
    (`heartbeat`) for `stale_s` seconds (owners on other hosts; clocks in sync to well under
    `stale_s`). A stale lock is broken by renaming it away and checking that what was renamed is
    the stale lock that was read (not a fresh one taken meanwhile, which is put back).
    """

    def __init__(self, path: str | Path, stale_s: float = 60.0):
        self.path = Path(path)
        self.stale_s = stale_s
        self.token: str | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            token = uuid.uuid4().hex
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._break_if_stale():
                    return False
                continue
            try:
                os.write(fd, json.dumps({**owner(), "token": token, "t": time.time()}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.token = token
            return True
        return False

    def acquire(self, timeout: float | None = None, poll: float = 0.02) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def heartbeat(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        if self.token is None:
            return
        held = self._read(self.path)
        if held is not None and held.get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.token = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_bytes() or b"{}")
        except (OSError, ValueError):
            return None

    def holder(self) -> dict | None:
        return self._read(self.path)

    def _is_stale(self, held: dict | None, mtime: float) -> bool:
        alive = owner_alive(held) if held else None
        if alive is False:
            return True
        if alive is True:
            return False
        return time.time() - mtime > self.stale_s

    def _break_if_stale(self) -> bool:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        held = self._read(self.path)
        if held is not None and not held and time.time() - mtime < 5.0:
            return False  # just created, owner not yet written
        if not self._is_stale(held, mtime):
            return False
        aside = self.path.with_name(f".{self.path.name}.broken-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        moved = self._read(aside)
        if (moved or {}).get("token") != (held or {}).get("token"):
            try:  # a fresh lock was taken between our read and the rename: put it back
                os.link(aside, self.path)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
            os.unlink(aside)
            return False
        os.unlink(aside)
        log.info("broke stale lock %s (held by %s)", self.path, held)
        return True


def compactable(folder: Path, reader: JournalReader, name: str) -> bool:
    """A shard nobody will append to again: sealed, or its writer is dead on this host."""
    if name in reader.sealed:
        return True
    host, _, rest = name.rpartition("-")[0].rpartition("-")
    try:
        pid = int(rest)
    except ValueError:
        return False
    return owner_alive({"host": host, "pid": pid}) is False


def compact(folder: str | Path, keep, timeout: float = 0.0) -> int | None:
    """Fold finished shards into merged.jsonl; returns the number of shards folded, None when
    another process holds the lock. `keep(records)` may drop superseded records (default: all,
    deduplicated by id, first wins)."""
    folder = Path(folder)
    lock = LockFile(folder / ".compact.lock", stale_s=600.0)
    if not lock.acquire(timeout=timeout):
        return None
    try:
        reader = JournalReader(folder)
        records = list(reader.poll())
        names = [n for n in reader.shard_names() if compactable(folder, reader, n)]
        if not names:
            return 0
        done = set(names)
        # re-read: the merged file plus only the finished shards, so that records of live shards
        # stay in their shard (they are still read from there)
        reader2 = JournalReader(folder)
        out: list[tuple[str, dict]] = []
        reader2._read(MERGED, out)
        for n in names:
            reader2._read(n, out)
        seen: dict[str, dict] = {}
        for rid, rec in out:
            seen.setdefault(rid, rec)
        lines = [encode(rid, rec) for rid, rec in keep(list(seen.items()))]
        tmp = folder / f".merged.tmp-{uuid.uuid4().hex[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, folder / MERGED)
        fsync_dir(folder)  # the new merged file is durable before any shard goes
        for n in done:
            try:
                (folder / n).unlink()
            except FileNotFoundError:
                pass
        fsync_dir(folder)
        del records
        return len(done)
    finally:
        lock.release()
