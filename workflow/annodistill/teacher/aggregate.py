"""From k raw answers per item to one label row; the gate's validation metrics.

Per item: the modal label among the parsed answers (ties go to the label answered first), the
consistency (share of parsed answers equal to the mode), and p_positive: the mean over samples
of the logprob-based probability where the endpoint returned logprobs (`p_source=logprobs`),
otherwise the positive share of the parsed votes (`p_source=votes`).
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd

from ..config import Codebook
from ..contracts import TEACHER_LABEL_COLUMNS, consistency_percent
from .prompts import AnswerParser, logprob_positions
from .spec import TeacherSpec

LABEL_COLUMNS = TEACHER_LABEL_COLUMNS


def answer_text(resp: dict) -> str | None:
    choices = resp.get("choices") or []
    if not choices:
        return None
    c = choices[0]
    if "text" in c and c.get("message") is None:
        return c.get("text")
    msg = c.get("message") or {}
    return msg.get("content")


def label_rows(item_ids: list[str], answers: dict[tuple[str, int], dict], cb: Codebook,
               spec: TeacherSpec) -> pd.DataFrame:
    """answers: (item_id, sample) -> cached response dict (with the billed cost under
    `_billed_usd`)."""
    parser = AnswerParser(cb, spec.structured)
    rows = []
    for iid in item_ids:
        texts, labels, ps = [], [], []
        pt = ct = 0
        cost = 0.0
        for k in range(spec.samples):
            resp = answers[(iid, k)]
            text = answer_text(resp)
            texts.append(text)
            labels.append(parser.parse(text))
            choice = (resp.get("choices") or [{}])[0]
            p = parser.p_positive(logprob_positions(choice)) if spec.logprobs else None
            if p is not None:
                ps.append(p)
            u = resp.get("usage") or {}
            pt += int(u.get("prompt_tokens") or 0)
            ct += int(u.get("completion_tokens") or 0)
            cost += float(resp.get("_billed_usd", 0.0))
        parsed = [lab for lab in labels if lab is not None]
        if parsed:
            counts = Counter(parsed)
            top = max(counts.values())
            mode = next(lab for lab in parsed if counts[lab] == top)
            consistency = top / len(parsed)
        else:
            mode, consistency = None, None
        if ps:
            p_pos, p_src = float(np.mean(ps)), "logprobs"
        elif parsed:
            p_pos, p_src = sum(lab == cb.positive for lab in parsed) / len(parsed), "votes"
        else:
            p_pos, p_src = None, "votes"
        rows.append({"id": str(iid), "label": mode, "consistency": consistency,
                     "p_positive": p_pos, "p_source": p_src, "n_answers": len(texts),
                     "n_unparseable": len(texts) - len(parsed),
                     "answers": json.dumps(texts, ensure_ascii=False),
                     "prompt_tokens": pt, "completion_tokens": ct, "cost_usd": cost})
    df = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    df["label"] = df["label"].astype("string")
    for c in ("consistency", "p_positive", "cost_usd"):
        df[c] = df[c].astype("float64")
    for c in ("n_answers", "n_unparseable", "prompt_tokens", "completion_tokens"):
        df[c] = df[c].astype("int64")
    return df


def gate_metrics(labels: pd.DataFrame, truth: pd.DataFrame, cb: Codebook) -> dict:
    """Accuracy, F1, precision, recall of the teacher against the human validation labels.

    An unparseable item counts as wrong (it is never predicted positive); the same metrics over
    parsed items only are under `parsed_only`."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    m = labels.merge(truth[["id", "label"]].rename(columns={"label": "human"}), on="id",
                     how="inner", validate="one_to_one")
    if len(m) != len(labels):
        missing = sorted(set(labels["id"]) - set(m["id"]))[:3]
        raise ValueError(f"teacher labels with ids not in the validation sample, e.g. {missing}")
    y = (m["human"] == cb.positive).to_numpy()
    pred_lab = m["label"].astype(object).where(m["label"].notna(), None)
    yhat = (pred_lab == cb.positive).to_numpy()
    correct = (pred_lab == m["human"]).to_numpy()

    def block(y, yhat, correct):
        if len(y) == 0:
            return {"n": 0, "accuracy": None, "f1": None, "precision": None, "recall": None}
        return {"n": int(len(y)), "accuracy": float(np.mean(correct)),
                "f1": float(f1_score(y, yhat, zero_division=0)),
                "precision": float(precision_score(y, yhat, zero_division=0)),
                "recall": float(recall_score(y, yhat, zero_division=0))}

    out = block(y, yhat, correct)
    parsed = m["label"].notna().to_numpy()
    out["n_unparseable_items"] = int((~parsed).sum())
    out["n_unparseable"] = int(m["n_unparseable"].sum())
    out["n_answers"] = int(m["n_answers"].sum())
    out["parsed_only"] = block(y[parsed], yhat[parsed], correct[parsed])
    out["positive"] = cb.positive
    out["positive_share_human"] = float(np.mean(y)) if len(y) else None
    out["positive_share_teacher"] = float(np.mean(yhat)) if len(y) else None
    p = m["p_positive"].to_numpy(dtype=float)
    ok = ~np.isnan(p)
    out["auc_p_positive"] = (float(roc_auc_score(y[ok], p[ok]))
                             if ok.any() and len(set(y[ok])) == 2 else None)
    bins = []
    cons = m["consistency"].to_numpy(dtype=float)
    pct = consistency_percent(cons)  # whole percent, as the students' cons<t> filter uses it
    for c in sorted(set(pct[~np.isnan(pct)])):
        sel = pct == c
        bins.append({"consistency_percent": int(c), "consistency": float(np.mean(cons[sel])),
                     "n": int(sel.sum()), "accuracy": float(np.mean(correct[sel])),
                     "kept_by": f"cons{int(c)}"})
    out["consistency_vs_accuracy"] = bins
    out["mean_consistency"] = float(np.nanmean(cons)) if (~np.isnan(cons)).any() else None
    return out
