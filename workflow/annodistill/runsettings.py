"""Operational settings of a run: what a job needs to run but what must not rerun it.

Snakemake reruns a job when its params, inputs, shell text, software environment or input mtimes
change. Throughput, limits, budgets, threads, devices and cache folders change none of a job's
results, so they never reach those: `workflow/rules/common.smk` collects them from the study
config (each stage's `run_settings(config)`: teacher/spec.py, students/spec.py, which also own
the list of operational keys) and exports them to every job as one JSON environment variable in
the shell prefix, which is not part of a rule's recorded code. A job started by hand without it
runs with the defaults (and whatever its command line gives).
"""
from __future__ import annotations

import json
import os
import shlex

from .errors import InputError

ENV = "ANNODISTILL_RUN_SETTINGS"


def export_line(settings: dict) -> str:
    """A shell `export` of the settings, braces doubled for Snakemake's shell formatting."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return f"export {ENV}={shlex.quote(text)}; ".replace("{", "{{").replace("}", "}}")


def current() -> dict:
    """The settings exported to this job ({} when run outside Snakemake)."""
    text = os.environ.get(ENV)
    if not text:
        return {}
    try:
        out = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"environment variable {ENV} is not JSON: {exc}") from None
    return out if isinstance(out, dict) else {}


def section(stage: str) -> dict:
    """One stage's settings (`teachers`, `students`)."""
    return current().get(stage) or {}


def model(stage: str, name: str) -> dict:
    """The operational settings of one teacher or student model ({} if none)."""
    return (section(stage).get("models") or {}).get(name) or {}
