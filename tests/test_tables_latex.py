"""LaTeX tables: every special character escaped once (pandas' Styler escape), read back intact."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from annodistill.evaluate.tables import tex_escape, to_latex, write_table

SPECIAL = "back\\slash a_b 50% R&D #1 $5 {x} ~y ^z"
# one LaTeX token per escaped character; whatever else remains must be plain text
TOKENS = re.compile(r"\\textbackslash |\\textasciitilde |\\textasciicircum |\\space |\\[&%$#_{}]"
                    r"|\$\\geq\$|\$\\leq\$")
PLAIN = {"\\textbackslash ": "\\", "\\textasciitilde ": "~", "\\textasciicircum ": "^",
         "\\space ": " ", "$\\geq$": ">=", "$\\leq$": "<="}


def read_back(tex: str) -> str:
    """The text a LaTeX reader sees; fails on any unescaped special character."""
    out, pos = [], 0
    for m in TOKENS.finditer(tex):
        plain = tex[pos:m.start()]
        assert not re.search(r"[\\&%$#_{}~^]", plain), f"unescaped special character in {plain!r}"
        out += [plain, PLAIN.get(m.group(), m.group()[-1:])]
        pos = m.end()
    rest = tex[pos:]
    assert not re.search(r"[\\&%$#_{}~^]", rest), f"unescaped special character in {rest!r}"
    return "".join(out + [rest])


@pytest.mark.parametrize("text, expected", [
    ("a\\b", r"a\textbackslash b"),
    ("a\\ b", r"a\textbackslash \space b"),
    ("vader_tweets", r"vader\_tweets"),
    ("50%", r"50\%"),
    ("R&D", r"R\&D"),
    ("#1", r"\#1"),
    ("$5", r"\$5"),
    ("{x}", r"\{x\}"),
    ("~y", r"\textasciitilde y"),
    ("^z", r"\textasciicircum z"),
    ("consistency >= 67%", r"consistency $\geq$ 67\%"),
])
def test_each_special_character_is_escaped_once(text, expected):
    assert tex_escape(text) == expected
    assert read_back(expected) == text


def body_rows(tex: str) -> list[list[str]]:
    lines = tex.splitlines()
    start, end = lines.index(r"\midrule"), lines.index(r"\bottomrule")
    rows = []
    for line in lines[start + 1:end]:
        assert line.endswith(r" \\"), line
        # split on the unescaped column separator
        rows.append([c.strip() for c in re.split(r"(?<!\\)&", line[:-3])])
    return rows


def header_cells(tex: str) -> list[str]:
    lines = tex.splitlines()
    head = lines[lines.index(r"\toprule") + 1]
    return [c.strip() for c in re.split(r"(?<!\\)&", head[:-3])]


def test_cells_headers_and_caption_read_back_intact():
    df = pd.DataFrame({
        "task_name": [SPECIAL, "vader_nyt", "plain"],
        "50% CI {lo}": [0.5, np.nan, 0.125],
        "n #": [120, 4, 10_000],
    })
    tex = to_latex(df, caption="Pangakis & Wolken (2024): 100% of {tasks}", label="gaps_median")
    assert tex.startswith("\\begin{table}[ht]\n\\centering\n\\small\n")
    assert r"\caption{Pangakis \& Wolken (2024): 100\% of \{tasks\}}" in tex
    assert r"\label{tab:gaps_median}" in tex
    assert r"\begin{tabular}{lrr}" in tex
    assert "\\textbackslash\\{\\}" not in tex  # the old double escape
    assert [read_back(c) for c in header_cells(tex)] == list(df.columns)
    rows = [[read_back(c) for c in row] for row in body_rows(tex)]
    assert rows == [[SPECIAL, "0.500", "120"], ["vader_nyt", "–", "4"],
                    ["plain", "0.125", "10,000"]]


def test_write_table_writes_the_escaped_tex(tmp_path):
    df = pd.DataFrame({"condition": ["llm_gemma & co"], "f1": [0.5]})
    paths = write_table(df, tmp_path, "headline", "F1 by condition_name")
    tex = (tmp_path / "headline.tex").read_text()
    assert tmp_path / "headline.tex" in paths
    assert r"llm\_gemma \& co & 0.500 \\" in tex
    assert r"\caption{F1 by condition\_name}" in tex


def test_an_empty_table_is_still_valid_latex():
    tex = to_latex(pd.DataFrame({"task": pd.Series([], dtype=str)}), "empty", "e")
    assert body_rows(tex) == []
    assert tex.rstrip().endswith(r"\end{table}")
