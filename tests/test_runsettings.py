"""The split of every stage's settings into what defines a result (rule params) and what only runs
it (annodistill.runsettings), and the codebook parts the rules depend on."""
from __future__ import annotations

import json
import shlex
from dataclasses import fields
from types import SimpleNamespace

import yaml
from conftest import codebook_dict, write_codebook

from annodistill import runsettings
from annodistill.config import codebook_part, codebook_part_json, load_codebook
from annodistill.students import spec as sspec
from annodistill.students.wiring import StudentWiring
from annodistill.teacher import spec as tspec
from annodistill.teacher.wiring import TeacherWiring

ENTRY = {"provider": "openai", "base_url": "http://x/v1", "model": "m", "api_key_env": "K",
         "mode": "chat", "samples": 3, "temperature": 0.6, "max_tokens": 4, "few_shot": 4,
         "concurrency": 8, "requests_per_minute": 100, "timeout_s": 30, "max_retries": 3,
         "max_usd": 5, "price": {"input_per_mtok": 1, "output_per_mtok": 2},
         "batch": {"enabled": True, "poll_s": 5}, "gate": {"min_f1": 0.5, "on_fail": "stop"},
         "server": {"threads": 4, "n_ctx": 4096, "extra_args": ["--x"]}}


def test_teacher_entry_splits_without_loss():
    res, ops = tspec.result_defining(ENTRY), tspec.operational(ENTRY)
    assert set(ops) == {"concurrency", "requests_per_minute", "timeout_s", "max_retries",
                        "max_usd", "price", "batch", "api_key_env", "server"}
    assert ops["server"] == {"threads": 4, "n_ctx": 4096}
    assert res["server"] == {"extra_args": ["--x"]} and "gate" not in res
    assert tspec.result_defining(ENTRY, gate=True)["gate"] == ENTRY["gate"]
    assert tspec.with_operational(tspec.result_defining(ENTRY, gate=True), ops) == ENTRY
    # a hand-written --spec wins over the run's settings
    assert tspec.with_operational({"concurrency": 2}, ops)["concurrency"] == 2
    # the operational keys are TeacherSpec fields, and none of them changes an answer
    names = {f.name for f in fields(tspec.TeacherSpec)}
    assert tspec.OPERATIONAL <= names and not tspec.OPERATIONAL & {"model", "temperature", "seed"}


def test_teacher_rule_params_ignore_operational_settings():
    cfg = {"teachers": {"models": {"t": dict(ENTRY)}}}
    w = TeacherWiring(cfg, ["a"])
    wc = SimpleNamespace(task="a", teacher="t")
    before, gate_before = w.spec_json(wc), w.gate_spec_json(wc)
    cfg["teachers"]["models"]["t"].update(concurrency=1, max_usd=500, api_key_env="OTHER",
                                          price={"input_per_mtok": 9, "output_per_mtok": 9},
                                          server={"threads": 1, "n_ctx": 512,
                                                  "extra_args": ["--x"]})
    assert w.spec_json(wc) == before and w.gate_spec_json(wc) == gate_before
    cfg["teachers"]["models"]["t"]["gate"] = {"min_f1": 0.9, "on_fail": "stop"}
    assert w.spec_json(wc) == before and w.gate_spec_json(wc) != gate_before
    cfg["teachers"]["models"]["t"]["temperature"] = 0.0
    assert w.spec_json(wc) != before
    assert "sk-" not in before and json.loads(before)["name"] == "t"
    assert w.api_key_envs() == ["OTHER"]


def test_student_spec_param_ignores_operational_settings():
    students = {"models": {"m": {"kind": "tfidf", "grid": {"C": [1.0]},
                                 "resources": {"threads": 2, "gpu": 1}}}}
    cfg = {"split": {"train_sizes": [10]}, "students": students}
    w = StudentWiring(cfg, ["a"], "config/tasks")
    wc = SimpleNamespace(task="a", model="m")
    before = w.spec_json(wc)
    students.update(device="cuda", eval_batch_size=7, save_models=True)
    students["models"]["m"]["resources"] = {"threads": 8, "gpu": 0}
    assert w.spec_json(wc) == before
    assert not set(json.loads(before)) & sspec.OPERATIONAL
    assert sspec.run_settings(cfg)["models"]["m"] == {"device": "cuda", "eval_batch_size": 7,
                                                      "save_models": True}
    students["models"]["m"]["grid"] = {"C": [2.0]}
    assert w.spec_json(wc) != before


def test_run_settings_round_trip(monkeypatch):
    settings = {"teachers": {"cache_dir": "c", "models": {"t": {"max_usd": 3, "note": "{x}'s"}}}}
    line = runsettings.export_line(settings)
    assert line.startswith(f"export {runsettings.ENV}=")
    # Snakemake formats the shell prefix once (braces doubled): the shell then gets the JSON
    value = shlex.split(line.format().split("=", 1)[1].rstrip("; "))[0]
    monkeypatch.setenv(runsettings.ENV, value)
    assert runsettings.current() == settings
    assert runsettings.model("teachers", "t") == {"max_usd": 3, "note": "{x}'s"}
    assert runsettings.model("students", "m") == {}
    monkeypatch.delenv(runsettings.ENV)
    assert runsettings.current() == {}


def test_codebook_parts(tmp_path):
    cb_dict = codebook_dict("topic", "raw/topic.csv")
    cb_dict["prompt"] = {"instruction": "Answer yes or no."}
    base = load_codebook(write_codebook(tmp_path, cb_dict))
    parts = {p: codebook_part_json(base, p) for p in ("data", "prompt", "labels")}
    assert "source" not in codebook_part(base, "prompt")
    assert "instruction" not in parts["data"] and "definition" not in parts["data"]

    def changed(edit) -> set[str]:
        d = yaml.safe_load(yaml.safe_dump(cb_dict))
        edit(d)
        cb = load_codebook(write_codebook(tmp_path, d))
        return {p for p in parts if codebook_part_json(cb, p) != parts[p]}

    assert changed(lambda d: d["prompt"].update(instruction="Other words.")) == {"prompt"}
    assert changed(lambda d: d["labels"][0].update(definition="new")) == {"prompt"}
    assert changed(lambda d: d.update(description="new")) == {"prompt"}
    assert changed(lambda d: d["source"].update(html_unescape=True)) == {"data"}
    assert changed(lambda d: d.update(positive="no")) == {"data", "prompt", "labels"}
