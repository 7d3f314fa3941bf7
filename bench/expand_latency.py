"""Benchmark: does the API stay responsive while a 10 000-entry collection expands?

A local RSS feed of ENTRIES (10 000) items, `limits.max_playlist_items` = MAX (500):
each round submits `POST /api/download {url: feed, playlist: {}}` and, from the
submission until the expansion is recorded (the flat yt-dlp listing of the feed,
the 500 children written in one transaction, 500 jobs queued) and the parent
counts its children, polls `GET /api/tasks/{parent}` and `GET /api/tasks/{plain}`
(a completed single download) in a loop over one keep-alive connection. Beside it,
in the same run and before each round, the same polling of two tasks with nothing
expanding (the plain task and the previous round's parent). Prints p50/p95/p99/max
per window and the expansion times. Release API + worker from tests/launcher.py; the
worker serves only the `playlist` queue while measuring, so the 500 children stay
queued (their downloads are not what is measured) and each parent is cancelled
after its round.

Usage: python3 bench/expand_latency.py   (after cargo build --release -p mediapro-api -p mediapro-worker)
  ROUNDS (5), ENTRIES (10000), MAX (500), IDLE_SECONDS (3)."""

import http.client
import http.server
import json
import os
import signal
import statistics
import sys
import threading
import time
import urllib.parse

from harness import QuietHandler, check, launch, make_clip, request, wait_final

ROUNDS = int(os.environ.get("ROUNDS", "5"))
ENTRIES = int(os.environ.get("ENTRIES", "10000"))
MAX = int(os.environ.get("MAX", "500"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "3"))


class Poller:
    """GET /api/tasks/{id} over one keep-alive connection, timed per request."""

    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def get(self, task_id):
        start = time.perf_counter()
        self.conn.request("GET", f"/api/tasks/{task_id}")
        r = self.conn.getresponse()
        body = r.read()
        took = time.perf_counter() - start
        check(r.status == 200, f"GET task {task_id}: {r.status} {body[:200]}")
        return took * 1000, json.loads(body)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def row(name, values):
    return (f"| {name} | {len(values)} | {pct(values, 50):.2f} | {pct(values, 95):.2f} | "
            f"{pct(values, 99):.2f} | {max(values):.2f} |")


def counted(task):
    return sum((task.get("children") or {}).values())


def main():
    svc = launch(workers=[{"queues": "download", "concurrency": 1}],
                 overrides={"limits.max_playlist_items": MAX})
    httpd = None
    try:
        root = os.path.join(svc.tmp, "served")
        os.makedirs(root)
        make_clip(os.path.join(root, "clip.mp4"), "160x90", 1)
        handler = lambda *a, **kw: QuietHandler(*a, directory=root, **kw)  # noqa: E731
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        items = "".join(f'<item><title>Entry {i}</title><enclosure url="{base}/m/{i}.mp4" type="video/mp4" '
                        f'length="1"/></item>\n' for i in range(1, ENTRIES + 1))
        with open(os.path.join(root, "feed.xml"), "w") as f:
            f.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>Big</title>'
                    f"<link>{base}/</link>\n{items}</channel></rss>\n")
        print(f"[bench] load average (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"[bench] feed of {ENTRIES} entries ({os.path.getsize(os.path.join(root, 'feed.xml')) / 1e6:.1f} MB), "
              f"limits.max_playlist_items = {MAX}", flush=True)

        # The plain task: one completed single download. Then only the playlist queue.
        status, body = request("POST", svc.url + "/api/download", {"url": base + "/clip.mp4"})
        check(status == 202, f"download: {status} {body}")
        plain = wait_final(svc, body["task_id"])
        check(plain["status"] == "completed", f"plain download: {plain}")
        plain = plain["task_id"]
        svc.kill_worker(0, signal.SIGTERM)
        svc.start_worker(queues="playlist", concurrency=2)

        poller = Poller(svc.url)
        idle, parent_during, plain_during, expand_s = [], [], [], []
        previous = plain
        for r in range(ROUNDS + 1):  # round 0 warms the worker (its yt-dlp host) up, not measured
            if r > 0:
                deadline = time.monotonic() + IDLE_SECONDS
                while time.monotonic() < deadline:
                    for task_id in (previous, plain):
                        idle.append(poller.get(task_id)[0])
            start = time.monotonic()
            status, body = request("POST", svc.url + "/api/download",
                                   {"url": f"{base}/feed.xml?round={r}", "playlist": {}})
            check(status == 202, f"collection: {status} {body}")
            parent = body["task_id"]
            while True:
                took, task = poller.get(parent)
                took_plain, _ = poller.get(plain)
                if r > 0:
                    parent_during.append(took)
                    plain_during.append(took_plain)
                if task.get("expansion") and counted(task) == MAX:
                    break
                check(task["status"] not in ("failed", "cancelled", "completed"), f"collection ended: {task}")
                check(time.monotonic() - start < 300, f"not expanded in 300 s: {task}")
            if r > 0:
                expand_s.append(time.monotonic() - start)
            check(task["expansion"]["children"] == MAX and task["expansion"]["truncated"], f"{task}")
            if r == 1:
                print(f"[bench] parent after expansion: expansion = {json.dumps(task['expansion'])}", flush=True)
            status, _ = request("DELETE", f"{svc.url}/api/tasks/{parent}")
            check(status == 200, f"cancel: {status}")
            previous = parent
            time.sleep(1.0)  # the cancel of 500 children settles before the next quiet window

        print(f"[bench] load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"[bench] {ROUNDS} rounds; submission → {MAX} children recorded and counted: "
              f"median {statistics.median(expand_s):.2f} s, max {max(expand_s):.2f} s")
        print()
        print("| GET /api/tasks/{id}, ms | requests | p50 | p95 | p99 | max |")
        print("|---|---|---|---|---|---|")
        print(row("nothing expanding (plain + an earlier parent)", idle))
        print(row("while expanding: the expanding parent", parent_during))
        print(row("while expanding: the plain task", plain_during))
        print(row("while expanding: both", parent_during + plain_during))
    finally:
        if httpd:
            httpd.shutdown()
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
