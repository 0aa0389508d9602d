"""A loopback OpenAI-compatible server for the teacher tests and benchmark, with fault injection.

Speaks /v1/completions, /v1/chat/completions, /v1/files, /v1/files/{id}/content, /v1/batches.
It is a real HTTP server (stdlib ThreadingHTTPServer on 127.0.0.1, a free port, in a thread):
the code under test talks to it through the openai SDK exactly as it would to a provider.

The "model": the item is the last `Text: ...` of the prompt; the answer is the positive
verbalizer when the text contains `keyword`, else the negative one, flipped for about `noise` of
the (text, seed) pairs, deterministic. With K verbalizers (`verbs` of any length) and
`keywords` (one per verbalizer but the last), the answer is the verbalizer of the first keyword
found in the text, else the last verbalizer; noise moves it to another verbalizer. Logprobs put
0.8 on the answer and share 0.2 among the other verbalizers. Faults are injected on the first attempt of chosen (text,
seed) pairs: `fault_rates` maps a fault name to a share of pairs:
  429 (with Retry-After), 500, 503, timeout (silent for `timeout_s`, then hangs up), drop (closes the
  connection without answering) — transient: the retry succeeds;
  empty, malformed, outside (a label outside the codebook) — answered, and so final.
Every request is logged; `answered` lists the (text, seed) pairs whose 200 answer was delivered.
`stall_after=n` makes every request after the n-th delivered answer wait forever (the SIGKILL test).

Run as a program it is a server process like `vllm serve` (the tests of provider local_server
start it through `server.command`):
  python tests/fake_openai_server.py --host 127.0.0.1 --port PORT --model NAME [--pid-file F]
      [--ready-delay S] [--latency S]
It binds exactly the given port (exit status 1 with "Address already in use" when taken).
"""
from __future__ import annotations

import email.parser
import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TEXT_RE = re.compile(r"Text: (.*)")
TRANSIENT = ("429", "500", "503", "timeout", "drop")
FINAL = ("empty", "malformed", "outside")


def _h(*parts) -> float:
    d = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(d[:8], "big") / 2 ** 64


class FakeOpenAI:
    def __init__(self, *, api_key: str | None = None, keyword: str = "tax",
                 verbs: tuple[str, ...] = ("yes", "no"), keywords: tuple[str, ...] | None = None,
                 noise: float = 0.1,
                 fault_rates: dict | None = None, latency_s: float = 0.0,
                 retry_after_s: float = 0.05, timeout_s: float = 1.0,
                 stall_after: int | None = None, batch_polls: int = 1, rpm_limit: float | None = None,
                 model: str = "fake-model"):
        self.api_key, self.keyword, self.verbs, self.noise = api_key, keyword, tuple(verbs), noise
        self.keywords = tuple(keywords) if keywords is not None else (keyword,)
        if len(self.keywords) != len(self.verbs) - 1:
            raise ValueError("give one keyword per verbalizer but the last")
        self.fault_rates = dict(fault_rates or {})
        self.latency_s, self.retry_after_s, self.timeout_s = latency_s, retry_after_s, timeout_s
        self.stall_after, self.batch_polls, self.rpm_limit = stall_after, batch_polls, rpm_limit
        self.model = model
        self.lock = threading.Lock()
        self.requests: list[dict] = []      # every completion request: text, seed, fault
        self.answered: list[tuple] = []     # (text, seed) of delivered 200 answers
        self.attempts: dict[tuple, int] = {}
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_creations = 0
        self.recent: list[float] = []
        self.release = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None

    # ---- lifecycle ----
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        server = self

        class Handler(_Handler):
            fake = server

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.release.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- the model ----
    def item_text(self, body: dict) -> str:
        if "prompt" in body:
            found = TEXT_RE.findall(body["prompt"])
        else:
            found = TEXT_RE.findall(body["messages"][-1]["content"])
        return found[-1].strip() if found else ""

    def label_word(self, text: str, seed) -> str:
        k = next((i for i, kw in enumerate(self.keywords) if kw in text), len(self.verbs) - 1)
        if _h("noise", text, seed) < self.noise:
            shift = 1 + int(_h("shift", text, seed) * (len(self.verbs) - 1))
            k = (k + shift) % len(self.verbs)
        return self.verbs[k]

    def fault_for(self, text: str, seed, attempt: int) -> str | None:
        u = _h("fault", text, seed)
        acc = 0.0
        for name, rate in self.fault_rates.items():
            acc += rate
            if u < acc:
                if name in TRANSIENT and attempt > 0:
                    return None
                return name
        return None

    def answer_body(self, body: dict, fault: str | None = None) -> dict:
        text = self.item_text(body)
        word = self.label_word(text, body.get("seed"))
        structured = "response_format" in body
        content = json.dumps({"label": word}) if structured else (" " + word if "prompt" in body else word)
        if fault == "empty":
            content = ""
        elif fault == "malformed":
            content = '{"label": ' if structured else "I think the answer is"
        elif fault == "outside":
            content = json.dumps({"label": "maybe"}) if structured else " maybe"
        prompt = body.get("prompt") or " ".join(m["content"] for m in body.get("messages", []))
        usage = {"prompt_tokens": len(prompt.encode()) // 4 + 1, "completion_tokens": 1,
                 "total_tokens": len(prompt.encode()) // 4 + 2}
        created = int(time.time())
        others = [v for v in self.verbs if v != word]
        p_other = 0.2 / len(others)
        if "prompt" in body:
            choice = {"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}
            if body.get("logprobs"):
                top = {" " + word: math.log(0.8), **{" " + o: math.log(p_other) for o in others}}
                choice["logprobs"] = {"tokens": [content], "token_logprobs": [math.log(0.8)],
                                      "top_logprobs": [top], "text_offset": [0]}
            return {"id": "cmpl-fake", "object": "text_completion", "created": created,
                    "model": self.model, "choices": [choice], "usage": usage}
        choice = {"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": content}, "logprobs": None}
        if body.get("logprobs"):
            toks = [{"token": word, "logprob": math.log(0.8), "bytes": None,
                     "top_logprobs": [{"token": word, "logprob": math.log(0.8), "bytes": None}]
                     + [{"token": o, "logprob": math.log(p_other), "bytes": None}
                        for o in others]}]
            choice["logprobs"] = {"content": toks}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                "model": self.model, "choices": [choice], "usage": usage}

    def n_duplicates(self) -> int:
        return len(self.answered) - len(set(self.answered))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def _send(self, code: int, obj, headers: dict | None = None, raw: bytes | None = None) -> bool:
        data = raw if raw is not None else json.dumps(obj).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _error(self, code: int, message: str, headers=None) -> None:
        self._send(code, {"error": {"message": message, "type": "fake", "code": code}}, headers)

    def _auth(self) -> bool:
        f = self.fake
        if f.api_key is None:
            return True
        if self.headers.get("Authorization") != f"Bearer {f.api_key}":
            # like some providers, echo what was sent: the client must not write it anywhere
            self._error(401, f"invalid api key {self.headers.get('Authorization', '')[7:]}")
            return False
        return True

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        f = self.fake
        if not self._auth():
            return
        if self.path.rstrip("/") == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": f.model, "object": "model"}]})
        m = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
        if m:
            if m.group(1) not in f.files:
                return self._error(404, "no such file")
            return self._send(200, None, raw=f.files[m.group(1)])
        m = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
        if m:
            b = f.batches.get(m.group(1))
            if b is None:
                return self._error(404, "no such batch")
            self._advance(b)
            return self._send(200, b)
        if self.path.startswith("/v1/batches"):
            # a cursor page as the API serves it: `limit`, `after` (the last id already seen) and
            # `has_more`; clients that page on `after` alone (openai < 1.6x) stop at an empty page
            q = parse_qs(urlsplit(self.path).query)
            ids = list(f.batches)
            after = q.get("after", [None])[0]
            start = ids.index(after) + 1 if after in ids else 0
            limit = int(q.get("limit", ["20"])[0])
            page = [f.batches[i] for i in ids[start:start + limit]]
            return self._send(200, {"object": "list", "data": page,
                                    "first_id": page[0]["id"] if page else None,
                                    "last_id": page[-1]["id"] if page else None,
                                    "has_more": start + limit < len(ids)})
        self._error(404, f"no route {self.path}")

    def _advance(self, b: dict) -> None:
        f = self.fake
        b["_polls"] += 1
        if b["status"] == "in_progress" and b["_polls"] >= f.batch_polls:
            out = []
            for line in f.files[b["input_file_id"]].decode().splitlines():
                if not line.strip():
                    continue
                req = json.loads(line)
                body = f.answer_body(req["body"])
                with f.lock:
                    f.answered.append((f.item_text(req["body"]), req["body"].get("seed")))
                out.append(json.dumps({"id": f"req-{len(out)}", "custom_id": req["custom_id"],
                                       "response": {"status_code": 200, "body": body}, "error": None}))
            fid = f"file-out-{len(f.files)}"
            f.files[fid] = ("\n".join(out) + "\n").encode()
            b.update(status="completed", output_file_id=fid,
                     request_counts={"total": len(out), "completed": len(out), "failed": 0})

    def do_POST(self):
        f = self.fake
        raw = self._body()
        if not self._auth():
            return
        path = self.path.rstrip("/")
        if path == "/v1/files":
            msg = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
            content = next(p.get_payload(decode=True) for p in msg.get_payload()
                           if p.get_param("name", header="content-disposition") == "file")
            fid = f"file-{len(f.files)}"
            f.files[fid] = content
            return self._send(200, {"id": fid, "object": "file", "bytes": len(content),
                                    "created_at": int(time.time()), "filename": "batch.jsonl",
                                    "purpose": "batch", "status": "processed"})
        if path == "/v1/batches":
            req = json.loads(raw)
            with f.lock:
                f.batch_creations += 1
                bid = f"batch-{f.batch_creations}"
            b = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                 "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                 "status": "in_progress", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "metadata": req.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_polls": 0}
            f.batches[bid] = b
            return self._send(200, b)
        if path not in ("/v1/completions", "/v1/chat/completions"):
            return self._error(404, f"no route {path}")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "body is not JSON")
        if path == "/v1/completions" and "prompt" not in body or \
                path == "/v1/chat/completions" and "messages" not in body:
            return self._error(400, "wrong body for this endpoint")
        text, seed = f.item_text(body), body.get("seed")
        with f.lock:
            attempt = f.attempts.get((text, seed), 0)
            f.attempts[(text, seed)] = attempt + 1
            fault = f.fault_for(text, seed, attempt)
            f.requests.append({"text": text, "seed": seed, "attempt": attempt, "fault": fault,
                               "t": time.monotonic()})
            stall = f.stall_after is not None and len(f.answered) >= f.stall_after
            limited = False
            if f.rpm_limit:
                now = time.monotonic()
                f.recent = [t for t in f.recent if now - t < 60.0]
                limited = len(f.recent) >= f.rpm_limit
                if not limited:
                    f.recent.append(now)
        if stall:
            f.release.wait()
            return
        if limited:
            return self._error(429, "rate limit", {"Retry-After": str(f.retry_after_s)})
        if f.latency_s:
            time.sleep(f.latency_s)
        if fault == "429":
            return self._error(429, "slow down", {"Retry-After": str(f.retry_after_s)})
        if fault in ("500", "503"):
            return self._error(int(fault), "server trouble")
        if fault == "drop":
            self.close_connection = True
            try:
                import socket

                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault == "timeout":  # no answer within the client's timeout, then hang up
            time.sleep(f.timeout_s)
            self.close_connection = True
            return
        if model := body.get("model"):
            if model == "no-such-model":
                return self._error(404, f"model {model} not found")
        if self._send(200, f.answer_body(body, fault)):
            with f.lock:
                f.answered.append((text, seed))


def main(argv=None) -> int:
    import argparse
    import os
    import signal
    import sys

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="fake-model")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--ready-delay", type=float, default=0.0, help="seconds before binding")
    p.add_argument("--latency", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.pid_file:
        with open(a.pid_file, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(a.ready_delay)
    fake = FakeOpenAI(model=a.model, latency_s=a.latency)
    try:
        fake.start(a.host, a.port)
    except OSError as exc:
        print(f"fake_openai_server: cannot bind {a.host}:{a.port}: {exc}", file=sys.stderr)
        return 1
    print(f"fake_openai_server: serving {a.model!r} at {fake.base_url}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
