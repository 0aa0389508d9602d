"""Atomic file writes: a file that exists under results/ is complete.

Every writer goes to a temporary file in the destination folder, flushes and fsyncs it, then
renames it over the destination (atomic on POSIX). A killed job leaves at most a stray
`.tmp-*` file, never a truncated output.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; on success rename it onto `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{dest.name}.", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    """Strict JSON: an undefined number (NaN, inf) is written as null, never as bare NaN."""
    write_text(dest, json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default,
                                allow_nan=False) + "\n")


def _finite(o: Any) -> Any:
    import math

    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_parquet(dest: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(dest) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")


def write_csv(dest: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(dest) as tmp:
        df.to_csv(tmp, index=False)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
