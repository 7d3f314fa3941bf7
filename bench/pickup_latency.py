#!/usr/bin/env python3
"""Job pick-up latency of a running MediaPro API + worker (stdlib only).

Each round: POST /api/download, then poll GET /api/tasks/<id> every ~2 ms; the
pick-up latency is the time from just before the POST to the first answer whose
status is no longer "pending". The round then waits until the task is finished
(completed/failed/cancelled), so the worker is idle when the next round starts.
Rounds run one after the other. Also reports the server-side started_at -
created_at of each task (server clock, RFC 3339 with sub-second digits).

Normally run by bench/pickup-latency.sh, which starts everything it needs.
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.request

TERMINAL = {"completed", "failed", "cancelled"}

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any number of digits)."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    date, clock, frac, zone = m.groups()
    whole = calendar.timegm(time.strptime(f"{date}T{clock}", "%Y-%m-%dT%H:%M:%S"))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        whole -= sign * (hours * 3600 + minutes * 60)
    frac_ns = int((frac[1:] + "000000000")[:9]) if frac else 0
    return whole * 1_000_000_000 + frac_ns


def call(method: str, url: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        raise SystemExit(f"{method} {url} -> HTTP {err.code}: {detail}") from None


def percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def one_round(api: str, clip_url: str, interval: float, pickup_timeout: float, finish_timeout: float):
    t0 = time.perf_counter()
    accepted = call("POST", f"{api}/api/download", {"url": clip_url})
    task_id = accepted["task_id"]
    task_url = f"{api}/api/tasks/{task_id}"
    polls = 0
    while True:
        task = call("GET", task_url)
        polls += 1
        if task["status"] != "pending":
            t1 = time.perf_counter()
            break
        if time.perf_counter() - t0 > pickup_timeout:
            raise SystemExit(f"task {task_id} still pending after {pickup_timeout:.0f} s: is the worker running?")
        time.sleep(interval)
    pickup_ms = (t1 - t0) * 1000.0

    deadline = time.perf_counter() + finish_timeout
    while task["status"] not in TERMINAL:
        if time.perf_counter() > deadline:
            raise SystemExit(f"task {task_id} not finished after {finish_timeout:.0f} s (status {task['status']})")
        time.sleep(0.02)
        task = call("GET", task_url)
    done_ms = (time.perf_counter() - t0) * 1000.0

    server_ms = None
    if task.get("created_at") and task.get("started_at"):
        server_ms = (parse_rfc3339_ns(task["started_at"]) - parse_rfc3339_ns(task["created_at"])) / 1e6
    return {
        "task_id": task_id,
        "pickup_ms": pickup_ms,
        "server_ms": server_ms,
        "polls": polls,
        "done_ms": done_ms,
        "status": task["status"],
        "error": task.get("error"),
    }


def describe(label: str, r: dict) -> str:
    server = f"{r['server_ms']:8.1f} ms" if r["server_ms"] is not None else "     n/a   "
    line = (
        f"{label}: pick-up {r['pickup_ms']:8.1f} ms | server started_at-created_at {server}"
        f" | {r['polls']:3d} polls | {r['status']} after {r['done_ms']:.0f} ms"
    )
    if r["status"] != "completed" and r["error"]:
        line += f" ({r['error']})"
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", required=True, help="API base URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("--clip-url", required=True, help="URL the download tasks fetch")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (worker start-up)")
    ap.add_argument("--interval-ms", type=float, default=2.0, help="status poll interval")
    ap.add_argument("--pickup-timeout", type=float, default=30.0, help="seconds")
    ap.add_argument("--finish-timeout", type=float, default=120.0, help="seconds")
    args = ap.parse_args()
    interval = args.interval_ms / 1000.0

    for i in range(args.warmup):
        r = one_round(args.api, args.clip_url, interval, args.pickup_timeout, args.finish_timeout)
        print(describe(f"warm-up {i + 1:2d}", r), flush=True)

    results = []
    for i in range(args.rounds):
        r = one_round(args.api, args.clip_url, interval, args.pickup_timeout, args.finish_timeout)
        results.append(r)
        print(describe(f"round {i + 1:4d}", r), flush=True)

    pickup = [r["pickup_ms"] for r in results]
    server = [r["server_ms"] for r in results if r["server_ms"] is not None]
    not_completed = [r for r in results if r["status"] != "completed"]

    print()
    print(f"samples: {len(pickup)} (poll interval {args.interval_ms:g} ms)")
    print(f"pick-up latency median: {statistics.median(pickup):.1f} ms (target < 100 ms)")
    print(f"pick-up latency p90: {percentile(pickup, 90):.1f} ms")
    print(f"pick-up latency min/mean/max: {min(pickup):.1f} / {statistics.fmean(pickup):.1f} / {max(pickup):.1f} ms")
    if server:
        print(
            f"server-side started_at - created_at median: {statistics.median(server):.1f} ms"
            f" (p90 {percentile(server, 90):.1f} ms, {len(server)} samples)"
        )
    else:
        print("server-side started_at - created_at: n/a (no task had both times)")
    if not_completed:
        print(f"WARNING: {len(not_completed)} of {len(results)} tasks did not complete; first error: {not_completed[0]['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
