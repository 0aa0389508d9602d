"""From k raw answers per item to one label row; the gate's validation metrics.

Per item: the modal label among the parsed answers (ties go to the label answered first), the
consistency (share of parsed answers equal to the mode), and a probability per label, `p_labels`:
a JSON object string {label: probability} over ALL codebook labels (codebook order, summing to
1): the mean over samples of the logprob-based distribution (the K verbalizers' first-token mass,
renormalised) where the endpoint returned logprobs (`p_source=logprobs`), otherwise the parsed
votes' shares (`p_source=votes`); null when no answer parsed. `p_positive` is
p_labels[positive] where the codebook names a positive class (always for binary), else null.
"""
from __future__ import annotations

import json
import warnings
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
        texts, labels, ps = [], [], []  # ps: per-sample {label: p} from logprobs
        pt = ct = 0
        cost = 0.0
        for k in range(spec.samples):
            resp = answers[(iid, k)]
            text = answer_text(resp)
            texts.append(text)
            labels.append(parser.parse(text))
            choice = (resp.get("choices") or [{}])[0]
            p = parser.p_labels(logprob_positions(choice)) if spec.logprobs else None
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
        names = cb.label_names
        if ps:
            p_lab = {n: float(np.mean([p[n] for p in ps])) for n in names}
            p_src = "logprobs"
        elif parsed:
            p_lab = {n: sum(lab == n for lab in parsed) / len(parsed) for n in names}
            p_src = "votes"
        else:
            p_lab, p_src = None, "votes"
        p_pos = p_lab[cb.positive] if (p_lab is not None and cb.positive) else None
        rows.append({"id": str(iid), "label": mode, "consistency": consistency,
                     "p_positive": p_pos,
                     "p_labels": None if p_lab is None else json.dumps(p_lab),
                     "p_source": p_src, "n_answers": len(texts),
                     "n_unparseable": len(texts) - len(parsed),
                     "answers": json.dumps(texts, ensure_ascii=False),
                     "prompt_tokens": pt, "completion_tokens": ct, "cost_usd": cost})
    df = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    df["label"] = df["label"].astype("string")
    df["p_labels"] = df["p_labels"].astype("string")
    for c in ("consistency", "p_positive", "cost_usd"):
        df[c] = df[c].astype("float64")
    for c in ("n_answers", "n_unparseable", "prompt_tokens", "completion_tokens"):
        df[c] = df[c].astype("int64")
    return df


def headline_metric(cb: Codebook) -> str:
    """What the gate's `f1` (and `min_f1`) means for this codebook."""
    return f"f1 of the positive class {cb.positive!r}" if cb.is_binary else "macro-F1"


def gate_metrics(labels: pd.DataFrame, truth: pd.DataFrame, cb: Codebook,
                 resampling=None) -> dict:
    """The teacher against the human validation labels: accuracy, the headline F1 (binary: the
    positive class's F1, precision, recall; K > 2: macro averages over the codebook's labels),
    macro-F1, per-class precision/recall/F1, and agreement (Cohen's kappa, Krippendorff's alpha
    with bootstrap CIs; annodistill.agreement).

    An unparseable item counts as wrong (it matches no class); the same metrics over parsed items
    only are under `parsed_only`. Undefined ratios are null."""
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    from ..agreement import Resampling, pair_agreement

    m = labels.merge(truth[["id", "label"]].rename(columns={"label": "human"}), on="id",
                     how="inner", validate="one_to_one")
    if len(m) != len(labels):
        missing = sorted(set(labels["id"]) - set(m["id"]))[:3]
        raise ValueError(f"teacher labels with ids not in the validation sample, e.g. {missing}")
    names = cb.label_names
    none = "\x00no-label"
    human = m["human"].astype(object).to_numpy()
    pred = np.array([v if isinstance(v, str) else none for v in m["label"].astype(object)],
                    dtype=object)

    def num(x) -> float | None:
        return None if x is None or not np.isfinite(x) else float(x)

    def block(h, p):
        if len(h) == 0:
            return {"n": 0, "accuracy": None, "f1": None, "precision": None, "recall": None,
                    "macro_f1": None, "per_class": {}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc, rc, fc, sc = precision_recall_fscore_support(h, p, labels=names, average=None,
                                                             zero_division=np.nan)
            mp, mr, mf, _ = precision_recall_fscore_support(h, p, labels=names, average="macro",
                                                            zero_division=np.nan)
        per = {n: {"precision": num(pc[i]), "recall": num(rc[i]), "f1": num(fc[i]),
                   "support": int(sc[i])} for i, n in enumerate(names)}
        out = {"n": int(len(h)), "accuracy": float(np.mean(h == p)), "macro_f1": num(mf),
               "per_class": per}
        if cb.is_binary:
            # binary: the positive class, undefined ratios as 0 (as the gate always reported)
            pos = per[cb.positive]
            out.update({k: (pos[k] if pos[k] is not None else 0.0)
                        for k in ("f1", "precision", "recall")})
        else:
            out.update({"f1": num(mf), "precision": num(mp), "recall": num(mr)})
        return out

    out = block(human, pred)
    parsed = m["label"].notna().to_numpy()
    out["headline_metric"] = headline_metric(cb)
    out["n_labels"] = len(names)
    out["n_unparseable_items"] = int((~parsed).sum())
    out["n_unparseable"] = int(m["n_unparseable"].sum())
    out["n_answers"] = int(m["n_answers"].sum())
    out["parsed_only"] = block(human[parsed], pred[parsed])
    out["label_shares_human"] = {n: float(np.mean(human == n)) if len(m) else None for n in names}
    out["label_shares_teacher"] = {n: float(np.mean(pred == n)) if len(m) else None
                                   for n in names}
    out["positive"] = cb.positive
    if cb.positive is not None:
        y = human == cb.positive
        out["positive_share_human"] = float(np.mean(y)) if len(y) else None
        out["positive_share_teacher"] = float(np.mean(pred == cb.positive)) if len(y) else None
        if cb.is_binary:
            p = pd.to_numeric(m["p_positive"], errors="coerce").to_numpy(dtype=float)
            ok = ~np.isnan(p)
            out["auc_p_positive"] = (float(roc_auc_score(y[ok], p[ok]))
                                     if ok.any() and len(set(y[ok])) == 2 else None)
        else:
            pos = out["per_class"].get(cb.positive, {})
            out["one_vs_rest"] = {"class": cb.positive, **{k: pos.get(k) for k in
                                                           ("f1", "precision", "recall")}}
    rs = resampling or Resampling()
    ag = pair_agreement(m["label"].astype(object).tolist(), human.tolist(), names, rs)
    out["agreement"] = {"kappa": ag["kappa"], "kappa_ci": [ag["kappa_lo"], ag["kappa_hi"]],
                        "alpha": ag["alpha"], "alpha_ci": [ag["alpha_lo"], ag["alpha_hi"]],
                        "n": ag["n"], "confidence": rs.confidence,
                        "n_resamples": rs.n_resamples, "seed": rs.seed,
                        "kappa_method": "Cohen (sklearn.metrics.cohen_kappa_score)",
                        "alpha_method": "Krippendorff, nominal (krippendorff.alpha)",
                        "note": "teacher vs human labels; unparseable items left out"}
    out["kappa"], out["alpha"] = ag["kappa"], ag["alpha"]
    bins = []
    cons = m["consistency"].to_numpy(dtype=float)
    correct = pred == human
    pct = consistency_percent(cons)  # whole percent, as the students' cons<t> filter uses it
    for c in sorted(set(pct[~np.isnan(pct)])):
        sel = pct == c
        bins.append({"consistency_percent": int(c), "consistency": float(np.mean(cons[sel])),
                     "n": int(sel.sum()), "accuracy": float(np.mean(correct[sel])),
                     "kept_by": f"cons{int(c)}"})
    out["consistency_vs_accuracy"] = bins
    out["mean_consistency"] = float(np.nanmean(cons)) if (~np.isnan(cons)).any() else None
    return out
