"""Ingest one task's raw human-coded file into the clean table (`results/{task}/data/clean.parquet`).

Reads CSV, TSV, JSONL or parquet, plain or compressed (`.gz`, `.bz2`, `.xz`, or a `.zip` holding
exactly one file; parquet files are read as they are); maps each raw label to a codebook label (a
value map, a numeric threshold or numeric bins); rows whose raw label is listed under the map's
`drop` are left out and counted (`dropped_by_label_map`); normalises text (NFC, optional HTML unescaping, whitespace collapsed); keeps stable
string ids (the id column, or the 1-based data row number). Refuses bad input with one error that
names the file, the row (the line number in text files, the 1-based row in parquet) and the field.

Duplicates: rows repeating an id with the same text and label are dropped; an id repeated with a
different label or text is an error. The same text under several ids is kept once when the labels
agree and dropped entirely when they disagree (an ambiguous item), because a text present twice
could otherwise sit in both the test set and a training set.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import html
import io
import json
import lzma
import math
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import Codebook
from ..errors import InputError
from ..io import read_parquet

_WS = re.compile(r"\s+")


def normalise_text(text: str, unescape: bool = False) -> str:
    if unescape:
        text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    return _WS.sub(" ", text).strip()


@dataclass
class RawRow:
    row: int          # line number (text formats) or 1-based row (parquet)
    values: dict


COMPRESSED = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zip": "zip"}


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed by its suffix (.gz, .bz2, .xz, .zip with one member)."""
    kind = COMPRESSED.get(path.suffix.lower())
    try:
        if kind == "gzip":
            return gzip.decompress(path.read_bytes())
        if kind == "bzip2":
            return bz2.decompress(path.read_bytes())
        if kind == "xz":
            return lzma.decompress(path.read_bytes())
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) != 1:
                    names = ", ".join(m.filename for m in members[:5]) or "none"
                    raise InputError(f"a zip input must hold exactly one file; it holds "
                                     f"{len(members)} ({names})", path=str(path))
                return zf.read(members[0])
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot decompress ({kind}): {exc}", path=str(path)) from None
    return path.read_bytes()


def _decode(path: Path, encoding: str) -> str:
    data = read_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"undecodable bytes {data[exc.start:exc.end]!r} at byte {exc.start} "
                         f"(expected {encoding} text)", path=str(path), row=line) from None
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}", path=str(path), field="encoding") from None


def read_rows(path: Path, source: dict) -> tuple[list[RawRow], list[str]]:
    """Return the raw rows (with their row numbers) and the available column names."""
    fmt = source["format"]
    if not path.exists():
        raise InputError("raw data file not found", path=str(path))
    if fmt in ("csv", "tsv"):
        text = _decode(path, source.get("encoding", "utf-8"))
        if text.startswith("\ufeff"):
            text = text[1:]
        delim = "\t" if fmt == "tsv" else ","
        quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quoting=quoting)
        rows, header = [], None
        has_header = source.get("header", True)
        if not has_header:
            header = list(source["columns"])
        try:
            for fields in reader:
                line = reader.line_num
                if header is None:
                    header = [h.strip() for h in fields]
                    continue
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line
                if len(fields) != len(header):
                    raise InputError(f"expected {len(header)} {fmt.upper()} fields "
                                     f"({', '.join(header)}), found {len(fields)}",
                                     path=str(path), row=line)
                rows.append(RawRow(line, dict(zip(header, fields))))
        except csv.Error as exc:
            raise InputError(f"malformed {fmt.upper()}: {exc}", path=str(path),
                             row=reader.line_num) from None
        return rows, header or []
    if fmt == "jsonl":
        text = _decode(path, source.get("encoding", "utf-8"))
        rows, cols = [], []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON ({exc.msg})", path=str(path), row=i) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object per line", path=str(path), row=i)
            for k in obj:
                if k not in cols:
                    cols.append(k)
            rows.append(RawRow(i, obj))
        return rows, cols
    if fmt == "parquet":
        try:
            df = read_parquet(read_bytes(path) if path.suffix.lower() in COMPRESSED else path)
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise InputError(f"not a readable parquet file ({exc})", path=str(path)) from None
        records = df.to_dict(orient="records")
        return [RawRow(i, r) for i, r in enumerate(records, start=1)], [str(c) for c in df.columns]
    raise InputError(f"unsupported format {fmt!r}", path=str(path), field="format")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


DROPPED = None  # what map_label returns for a raw value listed under `drop`


def map_label(value, spec: dict, path: Path, row: int, labels: list[str],
              field: str | None = None) -> str | None:
    """The codebook label of a raw value; None (DROPPED) for a value under the map's `drop`."""
    col = field or spec.get("column")
    if "map" in spec:
        dropped = {str(v).strip() for v in spec.get("drop") or []}
        key = value if isinstance(value, str) else ("" if _is_missing(value) else str(value))
        if isinstance(value, (float, int)) and not isinstance(value, bool) \
                and not _is_missing(value) and float(value).is_integer():
            as_int = str(int(value))
            key = as_int if (as_int in spec["map"] or as_int in dropped) else key
        key = key.strip()
        if key in dropped:
            return DROPPED
        if key not in spec["map"]:
            raise InputError(f"label {value!r} is outside the codebook (expected one of "
                             f"{sorted(spec['map'])}, mapped to {labels}"
                             + (f", or dropped: {sorted(dropped)}" if dropped else "") + ")",
                             path=str(path), row=row, field=col)
        return spec["map"][key]
    if "bins" in spec:
        x = _number(value, path, row, col, "the label bins")
        for b in spec["bins"]:
            if "below" not in b or x < b["below"]:
                return b["label"]
    th = spec["threshold"]
    x = _number(value, path, row, col, "the label threshold")
    hit = x <= th["at_most"] if "at_most" in th else x >= th["at_least"]
    return th["then"] if hit else th["else"]


def _number(value, path: Path, row: int, col: str | None, what: str) -> float:
    try:
        x = float(value)
        if math.isnan(x):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"expected a number for {what}, found {value!r}",
                         path=str(path), row=row, field=col) from None
    return x


def ingest(codebook: Codebook, raw_path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Return the clean table (id, text, label) and the summary dict."""
    path = Path(raw_path)
    src = codebook.source
    rows, cols = read_rows(path, src)
    id_col, text_col, label_col = src.get("id_column"), src["text_column"], src["label"]["column"]
    for role, c in (("id_column", id_col), ("text_column", text_col), ("label.column", label_col)):
        if c is not None and c not in cols:
            raise InputError(f"column {c!r} (source.{role} in {codebook.path}) not found; the file "
                             f"has columns {cols}", path=str(path), field=c)
    if not rows:
        raise InputError("no data rows", path=str(path))
    unescape = bool(src.get("html_unescape", False))
    by_id: dict[str, tuple[int, str, str]] = {}
    dup_ids = 0
    n_dropped = 0
    for r in rows:
        v = r.values
        rid = str(r.row) if id_col is None else v.get(id_col)
        if _is_missing(rid) or not str(rid).strip():
            raise InputError("empty id", path=str(path), row=r.row, field=id_col)
        if isinstance(rid, float) and rid.is_integer():
            rid = int(rid)
        rid = str(rid).strip()
        t = v.get(text_col)
        if not isinstance(t, str):
            raise InputError(f"expected text, found {type(t).__name__} {t!r}", path=str(path),
                             row=r.row, field=text_col)
        label = map_label(v.get(label_col), src["label"], path, r.row, codebook.label_names)
        if label is DROPPED:
            n_dropped += 1
            continue
        text = normalise_text(t, unescape)
        if not text:
            raise InputError("empty text", path=str(path), row=r.row, field=text_col)
        if rid in by_id:
            prev_row, prev_text, prev_label = by_id[rid]
            if prev_label != label:
                raise InputError(f"duplicate id {rid!r} with a different label ({prev_label!r} at "
                                 f"row {prev_row}, {label!r} here)", path=str(path), row=r.row,
                                 field=id_col or "id")
            if prev_text != text:
                raise InputError(f"duplicate id {rid!r} with a different text (first at row "
                                 f"{prev_row})", path=str(path), row=r.row, field=id_col or "id")
            dup_ids += 1
            continue
        by_id[rid] = (r.row, text, label)
    df = pd.DataFrame([(i, t, lab) for i, (_, t, lab) in by_id.items()],
                      columns=["id", "text", "label"])
    # Same text under several ids: keep one when labels agree, drop all when they conflict.
    groups = df.groupby("text")["label"].nunique()
    conflicting = set(groups[groups > 1].index)
    n_conflict = int(df["text"].isin(conflicting).sum())
    df = df[~df["text"].isin(conflicting)]
    df = df.sort_values("id", kind="stable")
    before = len(df)
    df = df.drop_duplicates("text", keep="first")
    dup_texts = before - len(df)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    counts = {lab: int((df["label"] == lab).sum()) for lab in codebook.label_names}
    summary = {
        "task": codebook.name,
        "source": {"path": str(path), "format": src["format"]},
        "n_raw": len(rows),
        "n_clean": len(df),
        "dropped_by_label_map": n_dropped,
        "duplicates_dropped": {"repeated_id": dup_ids, "repeated_text": int(dup_texts),
                               "conflicting_text": n_conflict},
        "label_counts": counts,
        "label_shares": {lab: (c / len(df) if len(df) else None) for lab, c in counts.items()},
        "positive": codebook.positive,
        "positive_share": (counts[codebook.positive] / len(df) if len(df) else None)
        if codebook.positive else None,
    }
    return df, summary


CODER_COLUMNS = ["id", "coder", "label"]


def _ratings_of(r: RawRow, spec: dict, path: Path) -> list[tuple[str, object, str]]:
    """(coder, raw rating, field) triples of one row of the coders file."""
    v = r.values
    how = spec["ratings"]
    if how == "long":
        coder = v.get(spec["coder_column"])
        if _is_missing(coder) or not str(coder).strip():
            raise InputError("empty coder", path=str(path), row=r.row, field=spec["coder_column"])
        return [(str(coder).strip(), v.get(spec["rating_column"]), spec["rating_column"])]
    if how == "wide":
        return [(c, v.get(c), c) for c in spec["rating_columns"]]
    col = spec["list_column"]
    raw = v.get(col)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"expected a list of ratings ({exc.msg})", path=str(path), row=r.row,
                             field=col) from None
    if not isinstance(raw, (list, tuple)) and not hasattr(raw, "tolist"):
        raise InputError(f"expected a list of ratings, found {raw!r}", path=str(path), row=r.row,
                         field=col)
    return [(str(k), x, col) for k, x in enumerate(list(raw), start=1)]


def read_coders(codebook: Codebook, path: str | Path, item_ids) -> tuple[pd.DataFrame, dict]:
    """The per-coder labels of the codebook's `source.coders` file: (id, coder, label) rows for
    the items in `item_ids` (the clean table's ids), and a summary. A rating that is missing or
    listed under `drop` is left out (a coder who did not code the item)."""
    spec = codebook.coders
    if spec is None:
        raise InputError("the codebook has no source.coders section", path=codebook.path,
                         field="source.coders")
    path = Path(path)
    rows, cols = read_rows(path, spec)
    need = [spec["id_column"]] + [spec[k] for k in ("coder_column", "rating_column", "list_column")
                                  if k in spec and spec["ratings"] != "wide"]
    if spec["ratings"] == "wide":
        need += list(spec["rating_columns"])
    for c in need:
        if c not in cols:
            raise InputError(f"column {c!r} (source.coders in {codebook.path}) not found; the file "
                             f"has columns {cols}", path=str(path), field=c)
    keep = set(map(str, item_ids))
    out, seen = [], set()
    n_missing = n_dropped = 0
    unmatched = set()
    for r in rows:
        rid = r.values.get(spec["id_column"])
        if _is_missing(rid) or not str(rid).strip():
            raise InputError("empty id", path=str(path), row=r.row, field=spec["id_column"])
        if isinstance(rid, float) and rid.is_integer():
            rid = int(rid)
        rid = str(rid).strip()
        if rid not in keep:
            unmatched.add(rid)
            continue
        for coder, x, field in _ratings_of(r, spec, path):
            if _is_missing(x) or (isinstance(x, str) and not x.strip()):
                n_missing += 1
                continue
            label = map_label(x, spec["label"], path, r.row, codebook.label_names, field=field)
            if label is DROPPED:
                n_dropped += 1
                continue
            if (rid, coder) in seen:
                raise InputError(f"item {rid!r} coded twice by coder {coder!r}", path=str(path),
                                 row=r.row, field=field)
            seen.add((rid, coder))
            out.append((rid, coder, label))
    df = pd.DataFrame(out, columns=CODER_COLUMNS).sort_values(["id", "coder"], kind="stable")
    per_item = df.groupby("id").size()
    summary = {"task": codebook.name, "source": {"path": str(path), "format": spec["format"],
                                                 "ratings": spec["ratings"]},
               "n_ratings": int(len(df)), "n_items": int(df["id"].nunique()),
               "n_items_clean": len(keep), "n_coders": int(df["coder"].nunique()),
               "ratings_per_item": {"min": int(per_item.min()) if len(per_item) else 0,
                                    "median": float(per_item.median()) if len(per_item) else 0,
                                    "max": int(per_item.max()) if len(per_item) else 0},
               "n_rows_not_in_clean": len(unmatched), "n_missing_ratings": n_missing,
               "dropped_by_label_map": n_dropped}
    return df.reset_index(drop=True), summary
