"""provider local_server: a teacher's OpenAI-compatible server started inside the labelling job
through `server.command` (here tests/fake_openai_server.py, a real HTTP server process, standing
in for `vllm serve`): model alias check, readiness timeout, port clash, always stopped (after
labelling, on start-up failure, on a labelling error, on SIGTERM of the job)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from teacher_helpers import env, label_cmd, make_task

from annodistill.config import load_task
from annodistill.teacher import local
from annodistill.teacher.engine import BudgetExceeded, TeacherError
from annodistill.teacher.run import label_split
from annodistill.teacher.spec import spec_from_dict

SERVER = str(ROOT / "tests" / "fake_openai_server.py")


def _entry(pid_file, *, serve_as="fake-model", ready_delay=0.0, latency=0.0, **kw) -> dict:
    d = {"provider": "local_server", "model": "fake-model", "mode": "completion", "samples": 2,
         "temperature": 0.6, "max_tokens": 3, "few_shot": 4, "concurrency": 2, "max_usd": 0,
         "timeout_s": 5, "max_retries": 2,
         "server": {"command": ["{python}", SERVER, "--host", "{host}", "--port", "{port}",
                                "--model", serve_as, "--pid-file", str(pid_file),
                                "--ready-delay", str(ready_delay), "--latency", str(latency)],
                    "startup_timeout_s": 20, "stop_timeout_s": 5},
         "resources": {"gpu": 1, "mem_mb": 32000, "runtime": 120}}
    d.update(kw)
    return d


def _pids(pid_file) -> list[int]:
    return [int(x) for x in pid_file.read_text().split()] if pid_file.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _label(tmp_path, entry, split="test", **kw):
    cb, splits = make_task(tmp_path, n_val=12, n_test=6)
    spec = spec_from_dict("served", entry)
    return label_split(spec=spec, cb=load_task("topic", cb.parent), splits_dir=splits,
                       split=split, out=tmp_path / "out" / f"labels_{split}.parquet",
                       cost_out=tmp_path / "out" / f"cost_{split}.json",
                       cache_dir=tmp_path / "cache", server_log=tmp_path / "server.log",
                       progress=False, **kw)


def test_server_started_in_the_job_labels_and_is_stopped(tmp_path):
    pid_file = tmp_path / "pids"
    report = _label(tmp_path, _entry(pid_file))
    assert report["requests_sent"] == 12 and report["provider"] == "local_server"
    labels = pd.read_parquet(tmp_path / "out/labels_test.parquet")
    assert len(labels) == 6 and labels["label"].notna().all()
    (pid,) = _pids(pid_file)
    assert not _alive(pid)
    # the cache identity is the served model, not the port: a rerun starts no server
    again = _label(tmp_path, _entry(pid_file))
    assert again["requests_sent"] == 0 and again["cache_hits"] == 12 and len(_pids(pid_file)) == 1


def test_a_server_answering_as_another_model_is_rejected(tmp_path):
    pid_file = tmp_path / "pids"
    entry = _entry(pid_file, serve_as="some-other-model")
    entry["server"]["startup_timeout_s"] = 2
    with pytest.raises(TeacherError, match=r"did not answer as model 'fake-model'.*"
                                           r"answers as \['some-other-model'\]"):
        _label(tmp_path, entry)
    (pid,) = _pids(pid_file)
    assert not _alive(pid)
    assert not (tmp_path / "out/labels_test.parquet").exists()


def test_readiness_timeout_stops_the_server(tmp_path):
    pid_file = tmp_path / "pids"
    entry = _entry(pid_file, ready_delay=60)
    entry["server"]["startup_timeout_s"] = 1.5
    t0 = time.monotonic()
    with pytest.raises(TeacherError, match=r"did not answer as model 'fake-model' within 1.5s"):
        _label(tmp_path, entry)
    assert time.monotonic() - t0 < 15
    (pid,) = _pids(pid_file)
    assert not _alive(pid)


def test_server_stopped_when_labelling_fails(tmp_path):
    pid_file = tmp_path / "pids"
    entry = _entry(pid_file, max_usd=0.0001,
                   price={"input_per_mtok": 1000.0, "output_per_mtok": 1000.0})
    with pytest.raises(BudgetExceeded):
        _label(tmp_path, entry)
    (pid,) = _pids(pid_file)
    assert not _alive(pid)


def test_port_taken_before_the_server_binds_it_is_retried(tmp_path, monkeypatch):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    ports = [busy.getsockname()[1]]
    real = local.free_port
    monkeypatch.setattr(local, "free_port", lambda: ports.pop() if ports else real())
    pid_file = tmp_path / "pids"
    try:
        report = _label(tmp_path, _entry(pid_file))
    finally:
        busy.close()
    assert report["requests_sent"] == 12
    first, second = _pids(pid_file)
    assert not _alive(first) and not _alive(second)
    assert "Address already in use" in (tmp_path / "server.log").read_text()


def test_sigterm_of_the_job_stops_the_server(tmp_path):
    cb, splits = make_task(tmp_path, n_val=12, n_test=6)
    pid_file = tmp_path / "pids"
    entry = {"name": "served", **_entry(pid_file, latency=60)}  # labelling hangs
    proc = subprocess.Popen(label_cmd(entry, cb, splits, "test", tmp_path / "out",
                                      tmp_path / "cache", extra=("--server-log",
                                                                 str(tmp_path / "server.log"))),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT)
    log = tmp_path / "server.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and "serving" in log.read_text()):
        time.sleep(0.1)
    time.sleep(1.0)  # requests are in flight
    proc.send_signal(signal.SIGTERM)  # what Slurm sends on scancel or at the time limit
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    (pid,) = _pids(pid_file)
    assert not _alive(pid), err.decode()[-2000:]
    assert not (tmp_path / "out/labels_test.parquet").exists()


def test_local_server_config_is_checked():
    from annodistill.errors import InputError

    with pytest.raises(InputError, match="server.command"):
        spec_from_dict("x", {"provider": "local_server", "model": "m", "mode": "chat",
                             "max_usd": 0})
    spec = spec_from_dict("x", _entry("/tmp/p"))
    assert spec.local and spec.resources.gpu == 1 and spec.server.command[0] == "{python}"
    srv = local.LocalServer(spec)
    cmd = srv.command(4321)
    assert cmd[0] == sys.executable and cmd[cmd.index("--port") + 1] == "4321"
    assert json.loads(spec.to_json())["server"]["command"][1] == SERVER
