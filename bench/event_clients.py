"""1,000 event-stream clients on one API: how much memory they cost the API and how
long an update takes to reach them.

Starts an isolated API (release binary, tests/launcher.py), measures its RSS, opens
CLIENTS `GET /api/events` streams, measures again, then appends EVENTS task updates
to the Redis event stream the way a worker does (XADD of a task JSON carrying the
send time) and records, for every client and event, the delay until the client has
read it. Prints RSS growth and the delay's p50/p99/max.
Targets (README, "Performance"): < 50 MiB more RSS, p99 update→event < 250 ms.

Environment: CLIENTS (default 1000), EVENTS (default 40), MEDIAPRO__REDIS__URL.
"""

import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import time
import urllib.parse

from harness import REDIS_URL, launch, rss_kib

CLIENTS = int(os.environ.get("CLIENTS", "1000"))
EVENTS = int(os.environ.get("EVENTS", "40"))


def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        a = str(a)
        out += f"${len(a.encode())}\r\n{a}\r\n"
    return out.encode()


def xadd(redis_url, key, payload):
    """XADD over a plain socket (what a worker's publish does)."""
    u = urllib.parse.urlparse(redis_url)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5) as s:
        db = (u.path or "/0").lstrip("/") or "0"
        s.sendall(resp("SELECT", db) + resp("XADD", key, "MAXLEN", "~", "10000", "*", "task", payload))
        f = s.makefile("rb")
        f.readline()
        reply = f.readline()
        if not reply.startswith(b"$"):
            raise RuntimeError(f"XADD failed: {reply!r}")


async def client(port, delays, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"event stream answered {status!r}")
    ready.append(1)
    seen = 0
    while seen < EVENTS:
        line = await reader.readline()
        if not line:
            break
        text = line.decode(errors="replace").strip()
        # Chunked framing lines and SSE fields arrive interleaved; data lines carry JSON.
        if text.startswith("data:"):
            now = time.time_ns()
            body = json.loads(text[5:].strip())
            delays.append((now - body["sent_ns"]) / 1e6)
            seen += 1
    writer.close()


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the API inherits it
    inst = launch(overrides={"limits.submissions_per_minute": 0})
    try:
        await asyncio.sleep(0.5)
        before = rss_kib(inst.api)
        delays, ready = [], []
        tasks = [asyncio.create_task(client(inst.port, delays, ready)) for _ in range(CLIENTS)]
        while len(ready) < CLIENTS:
            await asyncio.sleep(0.05)
            if any(t.done() and t.exception() for t in tasks):
                raise next(t.exception() for t in tasks if t.done() and t.exception())
        await asyncio.sleep(0.5)
        connected = rss_kib(inst.api)
        key = f"{inst.namespace}:events"
        for i in range(EVENTS):
            payload = json.dumps({"task_id": f"bench-{i}", "kind": "download", "status": "downloading",
                                  "progress": i, "sent_ns": time.time_ns()})
            await asyncio.to_thread(xadd, REDIS_URL, key, payload)
            await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        after = rss_kib(inst.api)
        delays.sort()
        q = lambda p: delays[min(len(delays) - 1, int(len(delays) * p))]  # noqa: E731
        print(f"clients: {CLIENTS}, events: {EVENTS}, deliveries: {len(delays)} (expected {CLIENTS * EVENTS})")
        print(f"API RSS: {before / 1024:.1f} MiB idle, {connected / 1024:.1f} MiB with {CLIENTS} clients "
              f"(+{(connected - before) / 1024:.1f} MiB), {after / 1024:.1f} MiB after the events")
        print(f"update -> event delay: p50 {statistics.median(delays):.1f} ms, p99 {q(0.99):.1f} ms, "
              f"max {delays[-1]:.1f} ms")
    finally:
        inst.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
