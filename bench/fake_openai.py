#!/usr/bin/python3
"""A fake OpenAI-compatible chat completions server for bench/edge_bench.py:
a model that takes a fixed time per answer, on 127.0.0.1 only.

    /usr/bin/python3 bench/fake_openai.py [--seconds 2] [--pieces 40] [--lifetime 900]

POST /v1/chat/completions answers `--pieces` words over `--seconds`:
- "stream": true  -> SSE, one `data: {"choices":[{"delta":{"content":..}}]}`
  chunk every seconds/pieces, then `data: [DONE]` (connection closed after);
- "stream": false -> waits the same time, then one chat.completion JSON
  (keep-alive, Content-Length), as Quarry's openai generator asks today.
The answer cites passage [1], so Quarry's citation check keeps it.
GET /stats answers {"served", "inflight", "inflight_max"}.

Prints "PORT <n>" on stdout once listening (port chosen by the kernel) and
exits by itself after --lifetime seconds, or on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import json
import signal
import sys
import time

STATS = {"served": 0, "inflight": 0, "inflight_max": 0}


def words(n):
    out = ["The", "passage", "[1]", "says", "so."]
    while len(out) < n:
        out.append("word%d" % len(out))
    return [w + " " for w in out[:n]]


async def handle(reader, writer, args):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for h in lines[1:]:
                if h.lower().startswith("content-length:"):
                    length = int(h.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path == "/stats":
                out = json.dumps(STATS).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                await writer.drain()
                continue
            if method != "POST" or not path.endswith("/chat/completions"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                req = {}
            STATS["inflight"] += 1
            STATS["inflight_max"] = max(STATS["inflight_max"], STATS["inflight"])
            try:
                pieces = words(args.pieces)
                gap = args.seconds / len(pieces)
                model = req.get("model", "fake")
                if req.get("stream"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
                    for p in pieces:
                        await asyncio.sleep(gap)
                        chunk = {"id": "fake", "object": "chat.completion.chunk", "model": model,
                                 "choices": [{"index": 0, "delta": {"content": p},
                                              "finish_reason": None}]}
                        writer.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                        await writer.drain()
                    writer.write(b"data: [DONE]\n\n")
                    await writer.drain()
                    STATS["served"] += 1
                    return
                await asyncio.sleep(args.seconds)
                out = json.dumps({
                    "id": "fake", "object": "chat.completion", "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "".join(pieces).strip()}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces),
                              "total_tokens": 1 + len(pieces)}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                await writer.drain()
                STATS["served"] += 1
            finally:
                STATS["inflight"] -= 1
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(args):
    server = await asyncio.start_server(lambda r, w: handle(r, w, args), "127.0.0.1", 0,
                                        backlog=4096, limit=1 << 22)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.lifetime)
    except asyncio.TimeoutError:
        pass
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per answer (default 2)")
    ap.add_argument("--pieces", type=int, default=40, help="words per answer (default 40)")
    ap.add_argument("--lifetime", type=float, default=900, help="exit after this (default 900 s)")
    asyncio.run(main(ap.parse_args()))
    sys.exit(0)
