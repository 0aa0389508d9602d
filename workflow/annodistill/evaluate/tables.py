"""Write one table four ways: CSV (full precision), Markdown, LaTeX and a small HTML page (the
HTML is what the Snakemake report shows)."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io

FORMATS = ("csv", "md", "tex", "html")

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;
color:#222}table{border-collapse:collapse;font-size:13px}th,td{padding:4px 9px;
border-bottom:1px solid #ddd;text-align:right}th{background:#f4f4f4;position:sticky;top:0}
td.s,th.s{text-align:left}caption{caption-side:top;text-align:left;font-weight:600;
padding:0 0 .6em 0}p.note{font-size:12px;color:#555;max-width:60em}"""


def _fmt(v, digits: int, integral: bool = False) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)) or (integral and isinstance(v, (float, np.floating))):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        if v != 0 and abs(v) < 10 ** (-digits):
            return f"{v:.2g}"
        return f"{v:.{digits}f}"
    return str(v)


def _integral(col: pd.Series) -> bool:
    """A float column whose values are all whole numbers (counts read back from CSV)."""
    if not pd.api.types.is_float_dtype(col):
        return False
    v = col.dropna().to_numpy(dtype=float)
    return len(v) > 0 and bool(np.all(v == np.round(v)))


def is_text(col: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def formatted(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    out = {}
    for c in df.columns:
        integral = _integral(df[c])
        out[c] = [_fmt(v, digits, integral) for v in df[c].tolist()]
    return pd.DataFrame(out, columns=df.columns, index=df.index).astype(str)


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    f = formatted(df, digits)
    if f.empty:
        return "(no rows)\n"
    head = "| " + " | ".join(f.columns) + " |"
    sep = "| " + " | ".join("---" for _ in f.columns) + " |"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |"
            for row in f.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def _tex_text(s: str) -> str:
    """Typography after pandas' LaTeX escaping: `>=`/`<=` as math symbols (plain `<`/`>` print as
    other glyphs under LaTeX's default OT1 font encoding)."""
    return s.replace(">=", r"$\geq$").replace("<=", r"$\leq$")


def tex_escape(s: str) -> str:
    """Text made safe for LaTeX: pandas' escape for `\\ & % $ # _ { } ~ ^` (the one Styler's
    `escape="latex"` uses; Styler leaves the caption to us), then `_tex_text`."""
    from pandas.io.formats.style_render import _escape_latex  # needs jinja2, as Styler does

    return _tex_text(_escape_latex(str(s)))


def to_latex(df: pd.DataFrame, caption: str, label: str, digits: int = 3) -> str:
    """A booktabs table written by pandas' `Styler.to_latex`; cells and headers escaped by it."""
    f = formatted(df, digits)
    align = "".join("l" if is_text(df[c]) else "r" for c in df.columns)
    sty = (f.style.hide(axis="index")
           .format(_tex_text, escape="latex")
           .format_index(_tex_text, escape="latex", axis=1))
    tex = sty.to_latex(hrules=True, column_format=align or "l", position="ht",
                       position_float="centering", caption=tex_escape(caption),
                       label=f"tab:{label}")
    return tex.replace("\\centering\n", "\\centering\n\\small\n", 1)


def to_html(df: pd.DataFrame, caption: str, note: str = "", digits: int = 3) -> str:
    f = formatted(df, digits)
    text_cols = {c for c in df.columns if is_text(df[c])}
    th = "".join(f'<th class="{"s" if c in text_cols else ""}">{html.escape(str(c))}</th>'
                 for c in f.columns)
    rows = "".join("<tr>" + "".join(f'<td class="{"s" if c in text_cols else ""}">'
                                    f"{html.escape(v)}</td>" for c, v in zip(f.columns, row))
                   + "</tr>" for row in f.itertuples(index=False))
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(caption)}"
            f"</title><style>{_CSS}</style></head><body><table><caption>{html.escape(caption)}"
            f"</caption><thead><tr>{th}</tr></thead><tbody>{rows}</tbody></table>{note_html}"
            f"</body></html>\n")


def write_table(df: pd.DataFrame, out_dir: str | Path, stem: str, caption: str,
                display: pd.DataFrame | None = None, note: str = "", digits: int = 3) -> list[Path]:
    """CSV of `df` (all columns, full precision); MD/TeX/HTML of `display` (default: `df`)."""
    out_dir = Path(out_dir)
    shown = df if display is None else display
    paths = [out_dir / f"{stem}.{ext}" for ext in FORMATS]
    io.write_csv(paths[0], df)
    io.write_text(paths[1], f"**{caption}**\n\n" + to_markdown(shown, digits)
                  + (f"\n{note}\n" if note else ""))
    io.write_text(paths[2], to_latex(shown, caption, stem, digits))
    io.write_text(paths[3], to_html(shown, caption, note, digits))
    return paths
