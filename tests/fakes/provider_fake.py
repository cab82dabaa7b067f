#!/usr/bin/python3
"""A loopback fake of the model providers Quarry calls (tests and `make bench`):

  POST /v1/chat/completions   OpenAI-compatible chat, streamed as SSE when the
                              request says "stream": true, else one JSON reply
  POST /v1/embeddings         OpenAI-compatible embeddings
  POST /embed                 Hugging Face TEI embeddings
  POST /rerank                TEI rerank
  POST /v1/rerank             Cohere / Jina rerank

Standard library only. Every behaviour a test needs is an attribute of the
Fake object, read at each request, so a test changes it between calls:

  fake.answer       the streamed answer (one SSE event per word)
  fake.interval     seconds between two streamed pieces (the rate)
  fake.mode         "ok"; "429" (Retry-After: fake.retry_after, for
                    fake.fail_times requests, then ok); "500"; "stall"
                    (sends fake.stall_after pieces, then nothing for
                    fake.stall_seconds); "malformed" (a broken event after
                    fake.stall_after pieces); "close" (drops the connection
                    after fake.stall_after pieces, no [DONE])
  fake.fail_times   how many requests the failing modes fail (None: all)
  fake.key          the API key required as "Authorization: Bearer <key>"
                    (None: any); a wrong key is a 401
  fake.usage        include a usage chunk (stream_options.include_usage)

What it saw: fake.requests (dicts with path, headers, body, t_start,
t_first_piece, t_last_piece, closed_by_client), all times time.time();
GET /requests returns them (without headers and bodies) as JSON.

Run alone (bench, manual checks): python3 tests/fakes/provider_fake.py
--interval 0.02 prints "port N" and serves until killed.
"""

import argparse
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ANSWER = ("The answer is in the first passage [1]. "
                  "It is confirmed by the second [2].")


class Fake:
    def __init__(self, port=0, name="fake"):
        self.name = name
        self.answer = DEFAULT_ANSWER
        self.interval = 0.0
        self.mode = "ok"
        self.fail_times = None
        self.retry_after = "1"
        self.stall_after = 0
        self.stall_seconds = 30.0
        self.key = None
        self.usage = True
        self.dim = 8
        self.lock = threading.Lock()
        self.requests = []
        self._failed = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                fake._handle(self)

            def do_GET(self):
                # What it saw, for a fake run as its own process (bench).
                if self.path != "/requests":
                    return fake._json(self, 404, {"error": {"message": "no route"}})
                with fake.lock:
                    seen = [{k: v for k, v in r.items() if k not in ("body", "headers")}
                            for r in fake.requests]
                return fake._json(self, 200, seen)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def reset(self, **kw):
        with self.lock:
            self.requests = []
            self._failed = 0
        self.answer = DEFAULT_ANSWER
        self.interval = 0.0
        self.mode = "ok"
        self.fail_times = None
        self.retry_after = "1"
        self.stall_after = 0
        self.stall_seconds = 30.0
        self.usage = True
        for k, v in kw.items():
            setattr(self, k, v)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def seen(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    # ---- request handling ------------------------------------------------------

    def _failing(self):
        """True when this request is one the failing mode fails."""
        with self.lock:
            if self.fail_times is not None and self._failed >= self.fail_times:
                return False
            self._failed += 1
            return True

    def _handle(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        rec = {"path": h.path, "headers": dict(h.headers.items()), "t_start": time.time(),
               "t_first_piece": None, "t_last_piece": None, "closed_by_client": None,
               "pieces": 0}
        try:
            rec["body"] = json.loads(raw) if raw else None
        except ValueError:
            rec["body"] = None
        with self.lock:
            self.requests.append(rec)
        if self.key is not None and h.headers.get("Authorization") != "Bearer " + self.key:
            return self._json(h, 401, {"error": {"message": "invalid api key"}})
        if rec["body"] is None:
            return self._json(h, 400, {"error": {"message": "body is not JSON"}})
        mode = self.mode
        if mode in ("429", "500") and self._failing():
            if mode == "429":
                return self._json(h, 429, {"error": {"message": "rate limited"}},
                                  {"Retry-After": self.retry_after})
            return self._json(h, 500, {"error": {"message": "model overloaded"}})
        body = rec["body"]
        if h.path == "/v1/chat/completions":
            if body.get("stream"):
                return self._stream(h, rec, mode)
            return self._json(h, 200, {
                "id": "chatcmpl-fake", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": self.answer},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 321, "completion_tokens": 17}})
        if h.path == "/v1/embeddings":
            texts = body.get("input") or []
            return self._json(h, 200, {"object": "list", "data": [
                {"index": i, "embedding": self._vector(t)} for i, t in enumerate(texts)]})
        if h.path == "/embed":
            return self._json(h, 200, [self._vector(t) for t in body.get("inputs") or []])
        if h.path == "/rerank":
            texts = body.get("texts") or []
            scored = [{"index": i, "score": self._score(body.get("query", ""), t)}
                      for i, t in enumerate(texts)]
            return self._json(h, 200, sorted(scored, key=lambda x: -x["score"]))
        if h.path == "/v1/rerank":
            docs = body.get("documents") or []
            scored = [{"index": i, "relevance_score": self._score(body.get("query", ""), d)}
                      for i, d in enumerate(docs)]
            return self._json(h, 200, {"results": sorted(scored,
                                                         key=lambda x: -x["relevance_score"])})
        return self._json(h, 404, {"error": {"message": "no route " + h.path}})

    def _vector(self, text):
        v = [float((hash(text) >> (4 * i)) % 7 + 1) for i in range(self.dim)]
        return v

    @staticmethod
    def _score(query, text):
        q = set(query.lower().split())
        t = set(str(text).lower().split())
        return len(q & t) / (len(q) or 1)

    def _json(self, h, status, obj, headers=None):
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _client_closed(self, sock, timeout):
        """Waits up to timeout; True when the client closed its side."""
        r, _, _ = select.select([sock], [], [], timeout)
        if not r:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _stream(self, h, rec, mode):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        sock = h.connection
        words = self.answer.split(" ")
        pieces = [w + (" " if i + 1 < len(words) else "") for i, w in enumerate(words)]

        def send(data):
            try:
                h.wfile.write(data)
                h.wfile.flush()
                return True
            except OSError:
                rec["closed_by_client"] = time.time()
                return False

        def event(obj):
            return send(b"data: " + json.dumps(obj).encode() + b"\n\n")

        if not event({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"role": "assistant"}}]}):
            return
        for i, piece in enumerate(pieces):
            if i == self.stall_after and mode in ("stall", "malformed", "close"):
                if mode == "malformed":
                    send(b"data: {\"choices\": [{\"delta\": {\"content\": \n\n")
                    return
                if mode == "close":
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                end = time.time() + self.stall_seconds
                while time.time() < end:
                    if self._client_closed(sock, 0.01):
                        rec["closed_by_client"] = time.time()
                        return
                return
            if i and self.interval:
                if self._client_closed(sock, self.interval):
                    rec["closed_by_client"] = time.time()
                    return
            now = time.time()
            ok = event({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": piece},
                                     "finish_reason": None}]})
            if not ok:
                return
            if rec["t_first_piece"] is None:
                rec["t_first_piece"] = now
            rec["t_last_piece"] = now
            rec["pieces"] += 1
        event({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if self.usage and (rec["body"].get("stream_options") or {}).get("include_usage"):
            event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 321, "completion_tokens": len(pieces),
                             "total_tokens": 321 + len(pieces)}})
        send(b"data: [DONE]\n\n")
        # Wait for the client to read and close, so the connection is not reset.
        self._client_closed(sock, 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--words", type=int, default=0,
                    help="answer of this many words (default: a short sentence)")
    args = ap.parse_args()
    fake = Fake(args.port)
    fake.interval = args.interval
    if args.words:
        fake.answer = " ".join("word%d" % i for i in range(args.words - 1)) + " [1]."
    print("port %d" % fake.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    sys.exit(main())
