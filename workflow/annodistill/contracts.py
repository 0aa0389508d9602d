"""The study's shared vocabulary: names, thresholds and file columns at each stage boundary.

One place owns each meaning, and every stage imports it (docs/contracts.md describes this module):

- **names**: teacher names, condition names (`human-<n>`, `llm-<teacher>`, `llm-<teacher>-cons<t>`,
  `soft-<teacher>`, and `fewshot` for a teacher's own labels), parsed and built only here;
- **consistency**: the share of a teacher's k answers equal to the modal answer is compared with a
  threshold in *whole percent*, rounded half up (`consistency_percent`), so `cons67` keeps an item
  with 2 of 3 equal answers in training, in the evaluation's threshold sweep and in the gate's
  consistency table alike (`keeps_consistency`);
- **degenerate runs**: a student whose test predictions are one class (or all but at most 2.5 %
  of them, `NEAR_ONE_CLASS_SHARE`), or whose probabilities are near-constant, is flagged by
  `degenerate_reason` in every table that shows it;
- **columns** of the files that cross a stage boundary.

Lower stages import this module; it imports nothing of the package but `errors`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError

# --------------------------------------------------------------------------------------------
# names

NAME_PATTERN = r"[A-Za-z0-9-]+"          # teacher and model names (path components)
TASK_PATTERN = r"[A-Za-z0-9_-]+"
FEWSHOT = "fewshot"                      # the condition name of a teacher's own test labels
CONDITION_KINDS = ("human", "llm", "llm_consistency", "soft")
LLM_KINDS = ("llm", "llm_consistency", "soft")

_NAME = re.compile(rf"^{NAME_PATTERN}$")
_CONS_SUFFIX = re.compile(r"-cons[0-9]+$")
_HUMAN = re.compile(r"^human-(\d+)$")
_CONS = re.compile(rf"^llm-({NAME_PATTERN}?)-cons(\d+)$")
_LLM = re.compile(rf"^llm-({NAME_PATTERN})$")
_SOFT = re.compile(rf"^soft-({NAME_PATTERN})$")
# the rule-level wildcard constraint for a student condition
CONDITION_PATTERN = rf"human-[0-9]+|(llm|soft)-{NAME_PATTERN}"


def check_teacher_name(name: str, where: str = "teachers") -> str:
    if not _NAME.match(name or "") or _CONS_SUFFIX.search(name):
        raise InputError(f"teacher name {name!r} must match {NAME_PATTERN} and not end in "
                         f"-cons<digits> (it is used in paths and condition names)", path=where)
    return name


def teacher_names(config: dict) -> list[str]:
    """The active teachers of a study config (`teachers.active`, default: all of `models`)."""
    section = config.get("teachers") or {}
    models = section.get("models") or {}
    active = section.get("active")
    names = list(models) if active is None else [str(a) for a in active]
    for n in names:
        check_teacher_name(n)
        if n not in models:
            raise InputError(f"active teacher {n!r} is not defined in teachers.models "
                             f"(have {sorted(models)})", field="teachers.active")
    return names


@dataclass(frozen=True)
class Condition:
    """A parsed condition name."""
    name: str
    kind: str                      # human | llm | llm_consistency | soft | fewshot
    n: int | None = None           # human training size
    teacher: str | None = None
    threshold: int | None = None   # consistency threshold in whole percent

    @property
    def uses_teacher(self) -> bool:
        return self.kind in LLM_KINDS

    def as_row(self) -> dict:
        """The columns a metrics row carries about its condition."""
        return {"kind": self.kind, "teacher": self.teacher, "threshold": self.threshold,
                "human_n": self.n}


def parse_condition(name: str, *, allow_fewshot: bool = False) -> Condition:
    if allow_fewshot and name == FEWSHOT:
        return Condition(name, FEWSHOT)
    if m := _HUMAN.match(name):
        return Condition(name, "human", n=int(m.group(1)))
    if m := _CONS.match(name):
        t = int(m.group(2))
        if not 0 <= t <= 100:
            raise InputError(f"consistency threshold must be 0..100, got {t}", field="condition")
        return Condition(name, "llm_consistency", teacher=m.group(1), threshold=t)
    if m := _LLM.match(name):
        return Condition(name, "llm", teacher=m.group(1))
    if m := _SOFT.match(name):
        return Condition(name, "soft", teacher=m.group(1))
    raise InputError(f"unknown condition {name!r} (expected human-<n>, llm-<teacher>, "
                     f"llm-<teacher>-cons<t> or soft-<teacher>)", field="condition")


def teacher_of(condition: str) -> str | None:
    """The teacher whose labels a condition trains on (None for human labels)."""
    return parse_condition(condition, allow_fewshot=True).teacher


def human_condition(n: int) -> str:
    return f"human-{int(n)}"


def llm_condition(teacher: str, threshold: int | None = None) -> str:
    """`llm-<teacher>`, or `llm-<teacher>-cons<t>` (threshold 0 keeps every item: plain llm)."""
    return f"llm-{teacher}" if not threshold else f"llm-{teacher}-cons{int(threshold)}"


def soft_condition(teacher: str) -> str:
    return f"soft-{teacher}"


def condition_names(kinds: dict, train_sizes: list[int], teachers: list[str]) -> list[str]:
    """Expand a `conditions:` block ({human, human_sizes, llm, llm_consistency: [t..], soft})."""
    out: list[str] = []
    if kinds.get("human", True):
        sizes = kinds.get("human_sizes") or train_sizes
        extra = sorted(set(sizes) - set(train_sizes))
        if extra:
            raise InputError(f"human_sizes {extra} are not in split.train_sizes {train_sizes}",
                             field="students.conditions.human_sizes")
        out += [human_condition(n) for n in sizes]
    for t in teachers:
        if kinds.get("llm", True):
            out.append(llm_condition(t))
        out += [f"llm-{t}-cons{int(c)}" for c in kinds.get("llm_consistency", [])]
        if kinds.get("soft", True):
            out.append(soft_condition(t))
    return out


# --------------------------------------------------------------------------------------------
# consistency

def consistency_percent(consistency) -> np.ndarray:
    """Consistency (share in [0, 1]) in whole percent, rounded half up; NaN stays NaN.

    2 of 3 equal answers (0.6667) is 67 %, 1 of 2 is 50 %, 3 of 4 is 75 %."""
    c = np.asarray(consistency, dtype=float)
    return np.floor(c * 100 + 0.5)


def keeps_consistency(consistency, threshold: int | float) -> np.ndarray:
    """Which items a consistency threshold (whole percent) keeps; items without a value never."""
    pct = consistency_percent(consistency)
    return np.nan_to_num(pct, nan=-1.0) >= float(threshold)


# --------------------------------------------------------------------------------------------
# degenerate student runs

# a run whose test probabilities of the predicted class span less than this is near-constant
NEAR_CONSTANT_RANGE = 0.02
# a run that puts at least this share of its test items into one class is a constant predictor
# in effect ("one class for all, or all but 3, of the 120 test items": 117 / 120 = 0.975)
NEAR_ONE_CLASS_SHARE = 0.975


def degenerate_reason(labels, probs=None, *, n_labels: int = 2) -> str:
    """Why a run's test predictions are degenerate ('' when they are not).

    `labels`: predicted labels; `probs`: an (n, K) array of class probabilities or an (n,) array of
    positive-class probabilities (optional)."""
    named = [v for v in np.asarray(labels, dtype=object) if isinstance(v, str)]
    if len(labels) and n_labels > 1:
        if not named:
            return "no predictions"
        values, counts = np.unique(np.asarray(named, dtype=str), return_counts=True)
        if len(values) == 1:
            return "one predicted class"
        top = int(np.argmax(counts))
        if counts[top] >= NEAR_ONE_CLASS_SHARE * len(named):
            return (f"nearly one predicted class ({counts[top]} of {len(named)} "
                    f"{str(values[top])!r})")
    if probs is not None:
        p = np.asarray(probs, dtype=float)
        if p.ndim == 1:
            p = p[:, None]
        p = p[~np.isnan(p).any(axis=1)]
        if len(p) > 1:
            spread = float(np.max(p.max(axis=0) - p.min(axis=0)))
            if spread < NEAR_CONSTANT_RANGE:
                return f"near-constant probabilities (range {spread:.3f})"
    return ""


def ids_digest(ids) -> str:
    """sha256 of a set of item ids (sorted, newline-joined): the manifest's and run.json's hash."""
    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# file columns at each stage boundary (docs/contracts.md)

SPLIT_COLUMNS = ["id", "text", "label"]                    # splits/test|validation.parquet
POOL_COLUMNS = ["id", "text", "label", "rank"]             # splits/train_pool.parquet
TEACHER_LABEL_COLUMNS = ["id", "label", "consistency", "p_positive", "p_labels", "p_source",
                         "n_answers", "n_unparseable", "answers", "prompt_tokens",
                         "completion_tokens", "cost_usd"]   # teacher/<t>/labels_<split>.parquet
PREDICTION_COLUMNS = ["seed", "id", "label", "p_positive", "p_labels"]  # students/.../predictions
METRIC_KEY_COLUMNS = ["task", "model", "condition", "kind", "teacher", "threshold", "human_n",
                      "seed", "train_size", "n_train", "n_test", "n_no_label", "degenerate"]
