"""Where the prompt is built and where the answer is parsed.

Two modes (the teacher's `mode`):
- `completion` (base models): one fixed prefix per task, the codebook's instruction and the
  few-shot examples, then the item; the label is read from the next token(s). Every item shares
  the prefix, so a local server's prompt cache is reused.
- `chat` (instruction models): a system message with the instruction and the label definitions,
  the few-shot examples as user/assistant turns, then the item; with `structured`, the answer is
  JSON `{"label": ...}` constrained by a json_schema response_format.

Few-shot examples are drawn from the validation pool with a seed (balanced over labels) and are
excluded when that pool is scored. Test items never appear in a prompt: the pool is the
validation split only, and `check_disjoint` refuses a scored item that is also an example.

Parsing is strict: an answer is a label only when its first word(s) are exactly one of the
codebook's verbalizers (case-insensitive, surrounding quotes and punctuation ignored), or, in
structured mode, when the JSON's `label` is one. Anything else is unparseable: kept with its raw
text and counted, never mapped to a label.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..config import Codebook
from ..errors import InputError
from .spec import TeacherSpec

DEFAULT_ITEM_PREFIX = "Text: "
DEFAULT_ANSWER_PREFIX = "Label:"
PUNCT = " \t\r\n\"'`.,;:!?*()[]{}"


def prompt_settings(cb: Codebook) -> dict:
    p = dict(cb.prompt or {})
    verbs = " or ".join(lab.verbalizer for lab in cb.labels)
    p.setdefault("instruction", f"{cb.description} Answer with {verbs}.")
    p.setdefault("item_prefix", DEFAULT_ITEM_PREFIX)
    p.setdefault("answer_prefix", DEFAULT_ANSWER_PREFIX)
    p.setdefault("separator", "\n\n")
    return p


def _clean(text: str) -> str:
    # one line per item in completion mode: the answer is read up to the next newline
    return " ".join(str(text).split())


def choose_few_shot(validation: pd.DataFrame, cb: Codebook, n: int, seed: int) -> pd.DataFrame:
    """n examples from the validation pool: seeded, balanced over labels (round robin), or the
    codebook's explicit `few_shot.ids`. Returned in prompt order."""
    if n == 0:
        return validation.iloc[0:0]
    ids = (cb.few_shot or {}).get("ids")
    if ids:
        ids = [str(i) for i in ids]
        missing = [i for i in ids if i not in set(validation["id"])]
        if missing:
            raise InputError(f"few_shot.ids {missing} are not in the validation sample",
                             path=cb.path, field="few_shot.ids")
        return validation.set_index("id").loc[ids].reset_index()
    if n > len(validation):
        raise InputError(f"few_shot {n} exceeds the validation sample ({len(validation)})")
    rng = np.random.default_rng(seed)
    balanced = (cb.few_shot or {}).get("balanced", True)
    order = validation.sort_values("id").reset_index(drop=True)
    if not balanced:
        return order.iloc[sorted(rng.choice(len(order), n, replace=False))].reset_index(drop=True)
    queues = {}
    for lab in cb.label_names:
        idx = np.flatnonzero(order["label"].to_numpy() == lab)
        queues[lab] = list(rng.permutation(idx))
    picked: list[int] = []
    while len(picked) < n:
        progressed = False
        for lab in cb.label_names:  # round robin, codebook order: alternating labels
            if queues[lab] and len(picked) < n:
                picked.append(int(queues[lab].pop(0)))
                progressed = True
        if not progressed:
            break
    return order.iloc[picked].reset_index(drop=True)


def check_disjoint(items: pd.DataFrame, shots: pd.DataFrame, where: str) -> None:
    both = set(items["id"]) & set(shots["id"])
    if both:
        raise InputError(f"{len(both)} scored items are few-shot examples (e.g. {sorted(both)[0]!r})",
                         path=where)


def completion_prefix(cb: Codebook, shots: pd.DataFrame) -> str:
    p = prompt_settings(cb)
    parts = [p["instruction"].strip()]
    for r in shots.itertuples():
        parts.append(f"{p['item_prefix']}{_clean(r.text)}\n{p['answer_prefix']} {cb.verbalizer(r.label)}")
    return p["separator"].join(parts) + p["separator"]


def system_message(cb: Codebook, structured: bool) -> str:
    p = prompt_settings(cb)
    lines = [p.get("system") or p["instruction"].strip(), "", "Labels:"]
    lines += [f"- {lab.verbalizer}: {lab.definition}" for lab in cb.labels]
    verbs = ", ".join(lab.verbalizer for lab in cb.labels)
    lines.append("")
    if structured:
        lines.append(f'Answer with JSON {{"label": <one of {verbs}>}} and nothing else.')
    else:
        lines.append(f"Answer with exactly one of: {verbs}.")
    return "\n".join(lines)


def _answer_text(verbalizer: str, structured: bool) -> str:
    return json.dumps({"label": verbalizer}) if structured else verbalizer


def label_schema(cb: Codebook) -> dict:
    return {"type": "json_schema",
            "json_schema": {"name": "label", "strict": True,
                            "schema": {"type": "object",
                                       "properties": {"label": {"type": "string",
                                                                "enum": [lab.verbalizer for lab in cb.labels]}},
                                       "required": ["label"], "additionalProperties": False}}}


class PromptBuilder:
    """Builds the request body for an item and sample; the few-shot part is fixed per task."""

    def __init__(self, cb: Codebook, spec: TeacherSpec, shots: pd.DataFrame):
        self.cb, self.spec, self.shots = cb, spec, shots
        self.settings = prompt_settings(cb)
        if spec.mode == "completion":
            self.prefix = completion_prefix(cb, shots)
        else:
            self.messages = [{"role": "system", "content": system_message(cb, spec.structured)}]
            for r in shots.itertuples():
                self.messages.append({"role": "user",
                                      "content": f"{self.settings['item_prefix']}{_clean(r.text)}"})
                self.messages.append({"role": "assistant",
                                      "content": _answer_text(cb.verbalizer(r.label), spec.structured)})

    @property
    def endpoint(self) -> str:
        return "completions" if self.spec.mode == "completion" else "chat/completions"

    def body(self, text: str, sample: int) -> dict:
        s = self.spec
        b: dict = {"model": s.request_model, "temperature": s.temperature,
                   "max_tokens": s.max_tokens, "seed": s.seed + sample}
        if s.mode == "completion":
            b["prompt"] = f"{self.prefix}{self.settings['item_prefix']}{_clean(text)}\n{self.settings['answer_prefix']}"
            b["stop"] = ["\n"]
            if s.logprobs:
                b["logprobs"] = s.top_logprobs
        else:
            b["messages"] = self.messages + [
                {"role": "user", "content": f"{self.settings['item_prefix']}{_clean(text)}"}]
            if s.structured:
                b["response_format"] = label_schema(self.cb)
            if s.logprobs:
                b["logprobs"] = True
                b["top_logprobs"] = s.top_logprobs
        return b


def prompt_bytes(body: dict) -> tuple[int, int]:
    """(UTF-8 bytes of the prompt text, number of messages): bounds the prompt tokens."""
    if "prompt" in body:
        return len(body["prompt"].encode("utf-8")), 1
    msgs = body["messages"]
    return sum(len(str(m["content"]).encode("utf-8")) for m in msgs), len(msgs)


def prompt_tokens_upper(body: dict) -> int:
    """An upper bound on prompt tokens: at least one byte per token (BPE/SentencePiece with byte
    fallback) plus 8 tokens of template per message and 8 more for the reply header."""
    nbytes, nmsg = prompt_bytes(body)
    return nbytes + 8 * nmsg + 8


def prompt_tokens_estimate(body: dict) -> int:
    """A typical count (about 4 bytes per token) for estimates and the tokens-per-minute limit."""
    nbytes, nmsg = prompt_bytes(body)
    return math.ceil(nbytes / 4) + 4 * nmsg + 4


# ---- parsing -------------------------------------------------------------------------------

def _norm(s: str) -> str:
    return s.strip(PUNCT).lower()


class AnswerParser:
    def __init__(self, cb: Codebook, structured: bool):
        self.cb, self.structured = cb, structured
        # longest verbalizer first, so 'not negative' is tried before 'negative'
        self.verbs = sorted(((lab.verbalizer.strip().lower(), lab.name) for lab in cb.labels),
                            key=lambda x: -len(x[0]))
        self.by_verb = dict(self.verbs)

    def parse(self, text: str | None) -> str | None:
        """The codebook label of a raw answer, or None when it is not exactly one."""
        if text is None:
            return None
        if self.structured:
            try:
                obj = json.loads(text)
            except (ValueError, TypeError):
                return None
            if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
                return None
            return self.by_verb.get(obj["label"].strip().lower())
        first = text.strip().split("\n", 1)[0]
        s = first.strip(PUNCT).lower()
        for verb, name in self.verbs:
            if s == verb:
                return name
            if s.startswith(verb) and not s[len(verb)].isalnum():
                return name
        return None

    def token_mass(self, alternatives: list[tuple[str, float]]) -> dict[str, float]:
        """Probability mass per label among one position's alternatives: a token counts for a
        label when it is a prefix of (or starts with) exactly one verbalizer."""
        mass = {name: 0.0 for _, name in self.verbs}
        seen = set()
        for tok, lp in alternatives:
            t = _norm(tok)
            if not t or t in seen:
                continue
            seen.add(t)
            hits = [name for verb, name in self.verbs
                    if verb.startswith(t) or (t.startswith(verb) and not t[len(verb):][:1].isalnum())]
            if len(hits) == 1:
                mass[hits[0]] += math.exp(lp)
        return mass

    def p_labels(self, positions: list[tuple[str, list[tuple[str, float]]]]) -> dict[str, float] | None:
        """P(label) for every codebook label from token logprobs: at the first generated token
        that starts a verbalizer, each label's mass among the top alternatives (the token counts
        for a label when it is a prefix of exactly one verbalizer), renormalised over the K
        labels. None when there is no such position or no mass."""
        for tok, alts in positions:
            t = _norm(tok)
            if not t:
                continue
            if not any(verb.startswith(t) or t.startswith(verb) for verb, _ in self.verbs):
                if self.structured:
                    continue  # JSON scaffolding before the label
                return None
            mass = self.token_mass(alts + [(tok, next((lp for a, lp in alts if a == tok), -1e9))])
            total = sum(mass.values())
            if total <= 0:
                return None
            return {name: mass[name] / total for name in self.cb.label_names}
        return None

    def p_positive(self, positions: list[tuple[str, list[tuple[str, float]]]]) -> float | None:
        """P(positive class) from token logprobs (see `p_labels`); None without a positive class."""
        p = self.p_labels(positions)
        if p is None or self.cb.positive is None:
            return None
        return p[self.cb.positive]


def logprob_positions(choice: dict) -> list[tuple[str, list[tuple[str, float]]]]:
    """Normalise the completions and chat logprobs shapes to [(token, [(alt, logprob)])]."""
    lp = choice.get("logprobs")
    if not lp:
        return []
    out = []
    if isinstance(lp.get("content"), list):  # chat
        for c in lp["content"]:
            alts = [(a["token"], a["logprob"]) for a in (c.get("top_logprobs") or [])]
            out.append((c.get("token", ""), alts or [(c.get("token", ""), c.get("logprob", 0.0))]))
        return out
    tokens = lp.get("tokens") or []
    tops = lp.get("top_logprobs") or []
    lps = lp.get("token_logprobs") or []
    for i, tok in enumerate(tokens):
        top = tops[i] if i < len(tops) and tops[i] else {}
        alts = list(top.items()) or [(tok, lps[i] if i < len(lps) and lps[i] is not None else 0.0)]
        out.append((tok, alts))
    return out

