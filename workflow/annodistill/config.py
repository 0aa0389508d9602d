"""Study configuration and task codebooks: loading, schema validation, typed access.

`load_study(path)` reads config/config.yaml (or config/paper.yaml), validates it against
workflow/schemas/config.schema.yaml and the per-section schemas, fills defaults and returns a
plain dict. `load_task(name, task_dir)` returns a `Codebook`. The Snakefile validates the same
way (through `snakemake.utils.validate`) so a bad config fails at DAG build.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SECTION_SCHEMAS = {"teachers": "teacher.schema.yaml", "students": "students.schema.yaml",
                   "evaluation": "evaluation.schema.yaml"}


def _schema(name: str) -> dict:
    with open(SCHEMA_DIR / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _validate(instance: Any, schema: dict, what: str) -> None:
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema)
    validator = _with_defaults(validator_cls)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        loc = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InputError(f"{loc}: {e.message}", path=what)


def _with_defaults(validator_cls):
    """A validator that fills `default` values into the instance (like snakemake's validate)."""
    import jsonschema

    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def validate_study(cfg: dict, what: str = "config") -> dict:
    _validate(cfg, _schema("config.schema.yaml"), what)
    for section, schema_file in SECTION_SCHEMAS.items():
        if section in cfg and (SCHEMA_DIR / schema_file).exists():
            _validate(cfg[section], _schema(schema_file), f"{what} [{section}]")
    return cfg


def load_study(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError("config file not found", path=str(path))
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    return validate_study(cfg, str(path))


@dataclass(frozen=True)
class Label:
    name: str
    definition: str
    verbalizer: str


@dataclass(frozen=True)
class Codebook:
    name: str
    description: str
    source: dict
    labels: tuple[Label, ...]
    positive: str | None  # required for binary codebooks; optional (one-vs-rest) for K > 2
    prompt: dict = field(default_factory=dict)
    few_shot: dict = field(default_factory=dict)
    path: str = ""

    @property
    def label_names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    @property
    def is_binary(self) -> bool:
        return len(self.labels) == 2

    @property
    def negative(self) -> str:
        """The other label of a binary task."""
        if not self.is_binary:
            raise ValueError(f"codebook {self.name}: `negative` exists only for binary codebooks")
        others = [n for n in self.label_names if n != self.positive]
        return others[0]

    @property
    def coders(self) -> dict | None:
        """The optional `source.coders` section (per-coder ratings for human-human agreement)."""
        return self.source.get("coders")

    def verbalizer(self, label: str) -> str:
        return next(lab.verbalizer for lab in self.labels if lab.name == label)


def task_path(name: str, task_dir: str | Path = "config/tasks") -> Path:
    return Path(task_dir) / f"{name}.yaml"


def load_task(name: str, task_dir: str | Path = "config/tasks") -> Codebook:
    path = task_path(name, task_dir)
    if not path.exists():
        raise InputError(f"no codebook for task {name!r} (expected {path})", path=str(path))
    return load_codebook(path)


def load_codebook(path: str | Path, *, name_from_file: bool = True) -> Codebook:
    """A codebook file; with `name_from_file` its `name` must equal the file's stem."""
    path = Path(path)
    if not path.exists():
        raise InputError("codebook not found", path=str(path))
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return codebook_from_dict(raw, str(path),
                              expected_name=path.stem if name_from_file else None)


def codebook_from_dict(raw: dict, where: str, expected_name: str | None = None) -> Codebook:
    _validate(raw, _schema("task.schema.yaml"), where)
    if expected_name is not None and raw["name"] != expected_name:
        raise InputError(f"codebook name {raw['name']!r} does not match its file name "
                         f"{expected_name!r}", path=where, field="name")
    labels = tuple(Label(d["name"], d["definition"].strip(), d.get("verbalizer") or d["name"])
                   for d in raw["labels"])
    names = [lab.name for lab in labels]
    if len(set(names)) != len(names):
        raise InputError("label names must be unique", path=where, field="labels")
    verbs = [lab.verbalizer.strip().lower() for lab in labels]
    if len(set(verbs)) != len(verbs):
        raise InputError("label verbalizers must be distinct", path=where, field="labels")
    positive = raw.get("positive")
    if positive is None and len(names) == 2:
        raise InputError(f"a binary codebook needs `positive` (one of {names})", path=where,
                         field="positive")
    if positive is not None and positive not in names:
        raise InputError(f"positive class {positive!r} is not one of the labels {names}",
                         path=where, field="positive")
    spec = raw["source"]["label"]
    _check_label_rule(spec, names, where, "source.label")
    coders = raw["source"].get("coders")
    if coders is not None:
        _check_label_rule(coders["label"], names, where, "source.coders.label")
        need = {"long": ("coder_column", "rating_column"), "wide": ("rating_columns",),
                "list": ("list_column",)}[coders["ratings"]]
        for key in need:
            if key not in coders:
                raise InputError(f"ratings: {coders['ratings']} needs `{key}`", path=where,
                                 field=f"source.coders.{key}")
        if (coders["format"] in ("csv", "tsv") and not coders.get("header", True)
                and not coders.get("columns")):
            raise InputError("a file without header needs `columns`", path=where,
                             field="source.coders.columns")
    src = raw["source"]
    if src["format"] in ("csv", "tsv") and not src.get("header", True) and not src.get("columns"):
        raise InputError("a file without header needs `columns`", path=where, field="source.columns")
    return Codebook(name=raw["name"], description=raw.get("description", ""), source=src,
                    labels=labels, positive=positive, prompt=raw.get("prompt") or {},
                    few_shot=raw.get("few_shot") or {}, path=where)


def _check_label_rule(spec: dict, names: list[str], where: str, field: str) -> None:
    """A label rule (map, threshold or bins) may only produce codebook labels."""
    if "map" in spec:
        targets = list(spec["map"].values())
        dropped = {str(v) for v in spec.get("drop") or []}
        both = sorted(dropped & set(spec["map"]))
        if both:
            raise InputError(f"raw value {both[0]!r} is both mapped and dropped", path=where,
                             field=f"{field}.drop")
    elif "threshold" in spec:
        th = spec["threshold"]
        if ("at_most" in th) == ("at_least" in th):
            raise InputError("threshold needs exactly one of at_most, at_least", path=where,
                             field=f"{field}.threshold")
        targets = [th["then"], th["else"]]
    else:
        bins = spec["bins"]
        targets = [b["label"] for b in bins]
        cuts = [b.get("below") for b in bins]
        if cuts[-1] is not None or any(c is None for c in cuts[:-1]):
            raise InputError("bins: every entry but the last needs `below`; the last has none",
                             path=where, field=f"{field}.bins")
        if cuts[:-1] != sorted(set(cuts[:-1])):
            raise InputError(f"bins: `below` must increase, got {cuts[:-1]}", path=where,
                             field=f"{field}.bins")
    if "drop" in spec and "map" not in spec:
        raise InputError("`drop` applies to a `map` of raw values", path=where,
                         field=f"{field}.drop")
    for t in targets:
        if t not in names:
            raise InputError(f"label mapping produces {t!r}, which is not one of the labels "
                             f"{names}", path=where, field=field)
# --- which part of a codebook a stage's result depends on ------------------------------------
# The rules pass these parts (canonical JSON) as params instead of the codebook file as input, so
# editing a task's prompt relabels it without re-splitting it or retraining its human-label
# students (docs/hpc.md, "What triggers a rerun"):
#   data:    ingest and split read the source and the label set
#   prompt:  the teacher reads everything but the source (prompt text, definitions, verbalizers,
#            few-shot draw, the label set)
#   labels:  students, the teacher's gate and the evaluation read only the label set
CODEBOOK_PARTS = ("data", "prompt", "labels")


def codebook_part(cb: Codebook, part: str) -> dict:
    """The part of codebook `cb` that the results of a `part` stage depend on."""
    labels = {"name": cb.name, "labels": cb.label_names, "positive": cb.positive}
    if part == "labels":
        return labels
    if part == "data":
        return {**labels, "source": cb.source}
    if part == "prompt":
        return {**labels, "description": cb.description,
                "labels": [{"name": lab.name, "definition": lab.definition,
                            "verbalizer": lab.verbalizer} for lab in cb.labels],
                "prompt": cb.prompt, "few_shot": cb.few_shot}
    raise ValueError(f"unknown codebook part {part!r} (expected one of {CODEBOOK_PARTS})")


def codebook_part_json(cb: Codebook, part: str) -> str:
    """`codebook_part` as canonical JSON (sorted keys): equal text iff equal content."""
    import json

    return json.dumps(codebook_part(cb, part), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


_PART_CACHE: dict[tuple[str, str, str], str] = {}


def task_part_json(task: str, task_dir: str | Path, part: str) -> str:
    """`codebook_part_json` of a task's codebook, read once per process (rule params)."""
    key = (task, str(task_dir), part)
    if key not in _PART_CACHE:
        _PART_CACHE[key] = codebook_part_json(load_task(task, task_dir), part)
    return _PART_CACHE[key]
