"""Where the teacher and the human coders disagree: the page a researcher reads to revise the
codebook (validate, revise, re-validate).

Per task and teacher, every validation and test item whose teacher label differs from the human
label (an item without a parsed teacher answer counts as a disagreement, shown as
"(no answer)"), most confident first: by the teacher's consistency (share of its k answers equal
to the mode), then by its probability for the label it gave (`p_positive`, or 1 - `p_positive`
when it answered another label of a binary task). Each row shows the human label, the teacher's
label, its k raw answers and the item text.

The page is one self-contained HTML file: inline CSS and a few lines of inline JavaScript for the
search box and the task/teacher/split filters; no external resource is referenced, so the text
never leaves the report. A CSV with the same rows sits next to it.
"""
from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd

from .paired import PairedLabels

SPLITS = ("validation", "test")
NO_ANSWER = "(no answer)"
COLUMNS = ["task", "teacher", "split", "id", "human", "teacher_label", "consistency",
           "p_positive", "p_label", "answers", "text"]


def disagreements(paired: list[PairedLabels]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows, counts): the disagreeing items, sorted; and per (task, teacher, split) the number
    of items and of disagreements."""
    rows, counts = [], []
    for pl in paired:
        binary = len(pl.labels) == 2
        for split in SPLITS:
            d = pl.split(split)
            if d.empty:
                continue
            teacher = d["teacher"].map(lambda v: v if isinstance(v, str) else None)
            diff = d[teacher.ne(d["human"]) | teacher.isna()]
            counts.append({"task": pl.task, "teacher": pl.teacher, "split": split,
                           "n_items": len(d), "n_disagree": len(diff),
                           "n_no_answer": int(teacher.isna().sum())})
            for r in diff.itertuples():
                label = r.teacher if isinstance(r.teacher, str) else None
                p = r.p_positive
                if label is None or not np.isfinite(p):
                    p_label = np.nan
                elif label == pl.positive:
                    p_label = p
                else:
                    p_label = 1 - p if binary else np.nan
                rows.append({"task": pl.task, "teacher": pl.teacher, "split": split,
                             "id": r.id, "human": r.human,
                             "teacher_label": label if label is not None else NO_ANSWER,
                             "consistency": r.consistency, "p_positive": p,
                             "p_label": p_label, "answers": list(r.answers), "text": r.text})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df = (df.assign(_c=df["consistency"].fillna(-1.0), _p=df["p_label"].fillna(-1.0))
              .sort_values(["task", "teacher", "_c", "_p", "split", "id"],
                           ascending=[True, True, False, False, True, True])
              .drop(columns=["_c", "_p"]).reset_index(drop=True))
    return df, pd.DataFrame(counts, columns=["task", "teacher", "split", "n_items", "n_disagree",
                                             "n_no_answer"])


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;
color:#222}h1{font-size:17px}p.note{font-size:12px;color:#555;max-width:70em}
.controls{margin:.6em 0;font-size:13px}.controls input{width:26em;padding:3px}
table{border-collapse:collapse;font-size:12.5px}th,td{padding:4px 8px;border-bottom:1px solid
#ddd;text-align:left;vertical-align:top}th{background:#f4f4f4;position:sticky;top:0}
td.n{text-align:right;white-space:nowrap}td.text{max-width:48em}td.ans{font-family:monospace;
font-size:11.5px;max-width:16em}table.counts{margin-bottom:1em}"""

_JS = """(function(){
var q=document.getElementById('q'),sel=['task','teacher','split'].map(function(k){
return [k,document.getElementById('f-'+k)];}),rows=[].slice.call(
document.querySelectorAll('#items tbody tr')),count=document.getElementById('count');
function apply(){var s=q.value.toLowerCase(),n=0;rows.forEach(function(r){
var ok=sel.every(function(p){return !p[1].value||r.getAttribute('data-'+p[0])===p[1].value;})
&&(!s||r.textContent.toLowerCase().indexOf(s)>=0);r.style.display=ok?'':'none';if(ok)n++;});
count.textContent=n+' of '+rows.length+' items shown';}
q.addEventListener('input',apply);sel.forEach(function(p){p[1].addEventListener('change',apply);});
apply();})();"""


def _num(v, fmt="{:.2f}") -> str:
    return "–" if v is None or not np.isfinite(v) else fmt.format(v)


def _select(name: str, values) -> str:
    opts = "".join(f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>'
                   for v in values)
    return (f'<label>{name} <select id="f-{name}"><option value="">all</option>{opts}'
            f"</select></label> ")


def page(df: pd.DataFrame, counts: pd.DataFrame) -> str:
    esc = html.escape
    head = "".join(f"<th>{c}</th>" for c in (
        "task", "teacher", "split", "id", "human label", "teacher label", "consistency",
        "p_positive", "teacher's answers", "text"))
    body = []
    for r in df.itertuples():
        attrs = " ".join(f'data-{k}="{esc(str(getattr(r, k)), quote=True)}"'
                         for k in ("task", "teacher", "split"))
        answers = ", ".join(esc(a) for a in r.answers) if r.answers else "–"
        body.append(
            f"<tr {attrs}><td>{esc(r.task)}</td><td>{esc(r.teacher)}</td><td>{esc(r.split)}</td>"
            f"<td>{esc(str(r.id))}</td><td>{esc(str(r.human))}</td>"
            f"<td>{esc(str(r.teacher_label))}</td><td class=\"n\">{_num(r.consistency)}</td>"
            f"<td class=\"n\">{_num(r.p_positive)}</td><td class=\"ans\">{answers}</td>"
            f"<td class=\"text\">{esc(str(r.text))}</td></tr>")
    crow = "".join(
        f"<tr><td>{esc(c.task)}</td><td>{esc(c.teacher)}</td><td>{esc(c.split)}</td>"
        f"<td class=\"n\">{c.n_disagree}</td><td class=\"n\">{c.n_items}</td>"
        f"<td class=\"n\">{c.n_disagree / c.n_items:.1%}</td>"
        f"<td class=\"n\">{c.n_no_answer}</td></tr>"
        for c in counts.itertuples() if c.n_items)
    controls = ('<div class="controls"><label>search <input id="q" type="search" '
                'placeholder="words in the text, a label, an id"></label> '
                + _select("task", sorted(df["task"].unique()) if len(df) else [])
                + _select("teacher", sorted(df["teacher"].unique()) if len(df) else [])
                + _select("split", [s for s in SPLITS if s in set(df["split"])])
                + '<span id="count"></span></div>')
    note = ("Validation and test items where the teacher's label differs from the human label "
            "(no parsed answer counts as a disagreement), most confident first: by the "
            "teacher's consistency (share of its k answers equal to its label), then by its "
            "probability for that label. Confident disagreements point at codebook definitions "
            "the model reads differently from the coders (or at coding errors); low-consistency "
            "ones at genuinely ambiguous items. Everything is in this page; nothing is loaded "
            "from elsewhere.")
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        "<title>Teacher and human coders: disagreements</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>Where the teacher and the human coders disagree</h1>"
        f"<p class=\"note\">{esc(note)}</p>"
        "<table class=\"counts\"><thead><tr><th>task</th><th>teacher</th><th>split</th>"
        "<th>disagreements</th><th>items</th><th>share</th><th>no answer</th></tr></thead>"
        f"<tbody>{crow}</tbody></table>{controls}"
        f"<table id=\"items\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        f"</table><script>{_JS}</script></body></html>\n")


def to_csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(answers=[json.dumps(a, ensure_ascii=False) for a in df["answers"]])
