"""A teacher's configuration as a typed object, built from the study config's `teachers:` section.

The section is validated by workflow/schemas/teacher.schema.yaml (config.py / common.smk); this
module fills the same defaults in Python so that a spec built from a JSON string (as the rules pass
it) is complete, and checks what a schema cannot (active teachers exist, provider needs).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..contracts import check_teacher_name
from ..contracts import teacher_names as contract_teacher_names
from ..errors import InputError

DEFAULT_CACHE = "cache/llm"
DEFAULT_SEED = 20240625
PROVIDERS = ("openai", "llama_cpp_local", "local_server")
IN_JOB_PROVIDERS = ("llama_cpp_local", "local_server")


@dataclass(frozen=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def usd(self, prompt_tokens: int, completion_tokens: int, factor: float = 1.0) -> float:
        return factor * (prompt_tokens * self.input_per_mtok
                         + completion_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True)
class Batch:
    enabled: bool = False
    discount: float = 0.5
    poll_s: float = 30.0
    max_wait_s: float = 3600.0
    completion_window: str = "24h"


@dataclass(frozen=True)
class Gate:
    min_f1: float = 0.0
    on_fail: str = "warn"


@dataclass(frozen=True)
class Server:
    """A server started inside the labelling job (providers llama_cpp_local, local_server)."""
    threads: int = 2
    n_ctx: int = 2048
    startup_timeout_s: float = 180.0
    stop_timeout_s: float = 30.0
    command: tuple[str, ...] = ()        # local_server: argv with {model} {port} {host} ...
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    """What the labelling job asks Slurm for (operational: never part of what is labelled)."""
    gpu: int = 0
    mem_mb: int | None = None
    runtime: int | None = None           # minutes


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    provider: str
    mode: str
    max_usd: float
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    model_file: str | None = None
    samples: int = 3
    temperature: float = 0.6
    max_tokens: int = 4
    logprobs: bool = False
    top_logprobs: int = 5
    structured: bool = False
    few_shot: int = 4
    concurrency: int = 1
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 8
    price: Price = field(default_factory=Price)
    batch: Batch = field(default_factory=Batch)
    gate: Gate = field(default_factory=Gate)
    server: Server = field(default_factory=Server)
    resources: Resources = field(default_factory=Resources)
    seed: int = DEFAULT_SEED

    @property
    def local(self) -> bool:
        """Served inside the labelling job (started and stopped by it)."""
        return self.provider in IN_JOB_PROVIDERS

    @property
    def request_model(self) -> str:
        return self.model or self.name

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


check_name = check_teacher_name   # the name grammar lives in annodistill.contracts


def teacher_spec(section: dict, name: str) -> TeacherSpec:
    """The spec of teacher `name` from the `teachers:` section (defaults filled)."""
    models = (section or {}).get("models") or {}
    if name not in models:
        raise InputError(f"no teacher {name!r} in teachers.models (have {sorted(models)})",
                         field="teachers.models")
    return spec_from_dict(name, models[name], seed=section.get("seed", DEFAULT_SEED))


def spec_from_dict(name: str, d: dict, seed: int = DEFAULT_SEED) -> TeacherSpec:
    check_name(name)
    d = dict(d)
    where = f"teachers.models.{name}"
    for req in ("provider", "mode", "max_usd"):
        if req not in d:
            raise InputError(f"missing {req!r}", field=f"{where}.{req}")
    if d["provider"] == "openai" and not (d.get("base_url") and d.get("model")):
        raise InputError("provider openai needs base_url and model", field=where)
    if d["provider"] == "llama_cpp_local" and not d.get("model_file"):
        raise InputError("provider llama_cpp_local needs model_file", field=where)
    if d["provider"] == "local_server" and not (d.get("model") and
                                                (d.get("server") or {}).get("command")):
        raise InputError("provider local_server needs model (the name the server answers as) "
                         "and server.command", field=where)
    if d["provider"] not in PROVIDERS:
        raise InputError(f"unknown provider {d['provider']!r}", field=f"{where}.provider")
    if d["mode"] not in ("chat", "completion"):
        raise InputError(f"unknown mode {d['mode']!r}", field=f"{where}.mode")
    if d.get("batch", {}).get("enabled") and d["provider"] != "openai":
        raise InputError("batch mode needs provider openai", field=f"{where}.batch")
    nested = {"price": Price, "batch": Batch, "gate": Gate, "server": Server,
              "resources": Resources}
    kw = {}
    for k, v in d.items():
        if k in nested:
            v = dict(v or {})
            if k == "server":
                for lst in ("extra_args", "command"):
                    if lst in v:
                        v[lst] = tuple(str(a) for a in v[lst])
            try:
                v = nested[k](**v)
            except TypeError as exc:
                raise InputError(str(exc), field=f"{where}.{k}") from None
        kw[k] = v
    kw.setdefault("seed", seed)
    try:
        return TeacherSpec(name=name, **kw)
    except TypeError as exc:
        raise InputError(str(exc), field=where) from None


def spec_from_json(text: str) -> TeacherSpec:
    d = json.loads(text)
    name = d.pop("name")
    return spec_from_dict(name, d, seed=d.get("seed", DEFAULT_SEED))


teacher_names = contract_teacher_names


def cache_dir(config: dict) -> str:
    return (config.get("teachers") or {}).get("cache_dir", DEFAULT_CACHE)


# --- what defines a teacher's answers and what only runs it ----------------------------------
# One list, used by the rule wiring (teacher/wiring.py) and the labelling job (cli.py): only the
# result-defining part of a teacher's entry reaches rule params, so Snakemake reruns a labelling
# job when its answers could change (model, endpoint, model file, mode, sampling, prompt options,
# few-shot count, seed, server arguments) and never for a throughput, limit, money or machine
# setting. The job reads the operational part at run time (annodistill.runsettings). What an
# answer cost is recorded when it is bought, so a new `price` changes only future spending.
# A key not listed here counts as result-defining (a new setting reruns until classified).
OPERATIONAL = frozenset({"concurrency", "requests_per_minute", "tokens_per_minute", "timeout_s",
                         "max_retries", "max_usd", "price", "batch", "api_key_env", "resources"})
# `server.command` (which server and model answer) defines the answers; these only run it
OPERATIONAL_SERVER = frozenset({"threads", "n_ctx", "startup_timeout_s", "stop_timeout_s"})
# the gate decides whether the training set is labelled: a param of the gate rule only
GATE_KEYS = frozenset({"gate"})


def result_defining(entry: dict, *, gate: bool = False) -> dict:
    """The part of a teacher's config entry that defines its answers (with `gate`: and its gate)."""
    out = {k: v for k, v in entry.items()
           if k not in OPERATIONAL and (gate or k not in GATE_KEYS) and k != "server"}
    server = {k: v for k, v in (entry.get("server") or {}).items() if k not in OPERATIONAL_SERVER}
    if server:
        out["server"] = server
    return out


def operational(entry: dict) -> dict:
    """The part of a teacher's config entry that only runs it (the rest of `result_defining`)."""
    out = {k: v for k, v in entry.items() if k in OPERATIONAL}
    server = {k: v for k, v in (entry.get("server") or {}).items() if k in OPERATIONAL_SERVER}
    if server:
        out["server"] = server
    return out


def with_operational(result: dict, ops: dict) -> dict:
    """A full entry from its result-defining part and the operational settings of the run (a
    key given in `result`, e.g. a hand-written --spec, wins)."""
    out = {**{k: v for k, v in ops.items() if k != "server"}, **result}
    if "server" in result or "server" in ops:
        out["server"] = {**(ops.get("server") or {}), **(result.get("server") or {})}
    return out


def run_settings(config: dict) -> dict:
    """The teacher stage's operational settings of a study (annodistill.runsettings)."""
    section = config.get("teachers") or {}
    return {"cache_dir": section.get("cache_dir", DEFAULT_CACHE),
            "models": {name: operational(entry or {})
                       for name, entry in (section.get("models") or {}).items()}}


def gate_stops(gate: dict) -> bool:
    """True when a gate.json says the training set must not be labelled (failed, on_fail stop)."""
    return not gate.get("passed", False) and gate.get("on_fail") == "stop"
