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
        # mkstemp creates the file 0600; give it the mode any new file gets (0666 & ~umask) so
        # that a collaborator in the group can read the results
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(obj: Any) -> Any:
    """obj with every non-finite float (NaN, inf) as None: strict JSON that any parser reads."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps(obj: Any, **kw) -> str:
    """JSON text with NaN/inf as null (allow_nan=False guarantees nothing else slips through)."""
    return json.dumps(json_safe(obj), allow_nan=False, default=_json_default, **kw)


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    write_text(dest, dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON object from a stage's output; a missing, invalid or non-object file is an
    InputError naming the file."""
    from .errors import InputError

    try:
        data = read_json(path)
    except FileNotFoundError as exc:
        raise InputError("file not found", path=str(path)) from exc
    except ValueError as exc:
        raise InputError(f"not valid JSON: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=str(path))
    return data


def read_parquet(src: str | os.PathLike | bytes, columns: list[str] | None = None) -> pd.DataFrame:
    """Every parquet read of the package: a path through Arrow's own local file system, or bytes
    held in memory; never a Python file object.

    pandas < 3 opens a local path as a Python file object and hands it to Arrow, whose reader
    threads may drop their last reference to it after interpreter shutdown has begun: the process
    then aborts ("terminate called without an active exception", exit -6; apache/arrow#34314).
    Seen with pandas 2.2.3 and pyarrow 15 and 17 (the declared floors) in about 1 of 10 CLI runs
    that exit right after a read."""
    import pyarrow as pa
    from pyarrow import fs

    if isinstance(src, (bytes, bytearray, memoryview)):
        return pd.read_parquet(pa.BufferReader(bytes(src)), columns=columns)
    return pd.read_parquet(os.path.abspath(os.fspath(src)), columns=columns,
                           filesystem=fs.LocalFileSystem())


def read_parquet_columns(path: str | os.PathLike, columns: list[str], what: str) -> pd.DataFrame:
    """A parquet file of a stage boundary that must hold `columns`; a missing, unreadable or
    incomplete file is an InputError naming the file (and the first missing column)."""
    from .errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path=str(path))
    try:
        df = read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is an input error
        raise InputError(f"cannot read {what}: {exc}", path=str(path)) from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}", path=str(path), field=missing[0])
    return df


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
