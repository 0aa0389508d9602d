"""Ingest one task's raw human-coded file into the clean table (`results/{task}/data/clean.parquet`).

Reads CSV, TSV, JSONL or parquet; maps each raw label to a codebook label (a value map or a numeric
threshold); normalises text (NFC, optional HTML unescaping, whitespace collapsed); keeps stable
string ids (the id column, or the 1-based data row number). Refuses bad input with one error that
names the file, the row (the line number in text files, the 1-based row in parquet) and the field.

Duplicates: rows repeating an id with the same text and label are dropped; an id repeated with a
different label or text is an error. The same text under several ids is kept once when the labels
agree and dropped entirely when they disagree (an ambiguous item), because a text present twice
could otherwise sit in both the test set and a training set.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import Codebook
from ..errors import InputError

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


def _decode(path: Path, encoding: str) -> str:
    data = path.read_bytes()
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
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise InputError(f"not a readable parquet file ({exc})", path=str(path)) from None
        records = df.to_dict(orient="records")
        return [RawRow(i, r) for i, r in enumerate(records, start=1)], [str(c) for c in df.columns]
    raise InputError(f"unsupported format {fmt!r}", path=str(path), field="format")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def map_label(value, spec: dict, path: Path, row: int, labels: list[str]) -> str:
    col = spec["column"]
    if "map" in spec:
        key = value if isinstance(value, str) else ("" if _is_missing(value) else str(value))
        if isinstance(value, float) and not _is_missing(value) and value.is_integer():
            key = str(int(value)) if str(int(value)) in spec["map"] else key
        key = key.strip()
        if key not in spec["map"]:
            raise InputError(f"label {value!r} is outside the codebook (expected one of "
                             f"{sorted(spec['map'])}, mapped to {labels})", path=str(path), row=row,
                             field=col)
        return spec["map"][key]
    th = spec["threshold"]
    try:
        x = float(value)
        if math.isnan(x):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"expected a number for the label threshold, found {value!r}",
                         path=str(path), row=row, field=col) from None
    hit = x <= th["at_most"] if "at_most" in th else x >= th["at_least"]
    return th["then"] if hit else th["else"]


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
        text = normalise_text(t, unescape)
        if not text:
            raise InputError("empty text", path=str(path), row=r.row, field=text_col)
        label = map_label(v.get(label_col), src["label"], path, r.row, codebook.label_names)
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
        "duplicates_dropped": {"repeated_id": dup_ids, "repeated_text": int(dup_texts),
                               "conflicting_text": n_conflict},
        "label_counts": counts,
        "positive": codebook.positive,
        "positive_share": counts[codebook.positive] / len(df) if len(df) else float("nan"),
    }
    return df, summary
