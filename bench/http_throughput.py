"""Benchmark: HTTP throughput and latency of enqueue (POST /api/download) and
status (GET /api/tasks/{id}) with wrk, 32 connections, against a release API on
SQLite. Targets (README, "Performance"): enqueue >= 4,500 req/s with p99 < 10 ms; status
>= 15,000 req/s with p99 < 5 ms."""

import os
import shutil
import subprocess
import sys

from harness import launch, request

SECONDS = os.environ.get("SECONDS_PER_RUN", "10")


def wrk(args):
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{SECONDS}s", "--latency", *args],
                         capture_output=True, text=True, check=True).stdout
    rps = next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec"))
    p50 = next(l.split()[1] for l in out.splitlines() if l.strip().startswith("50%"))
    p99 = next(l.split()[1] for l in out.splitlines() if l.strip().startswith("99%"))
    errors = [l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    return rps, p50, p99, errors


def main():
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    # The default API thread count (one per core), not the tests' 2.
    svc = launch(overrides={"server.http_workers": None, "limits.submissions_per_minute": 0, "limits.max_pending_tasks": 0})
    try:
        status, accepted = request("POST", svc.url + "/api/download", {"url": "http://127.0.0.1:9/v.mp4"})
        assert status == 202, accepted
        rps, p50, p99, errors = wrk([f"{svc.url}/api/tasks/{accepted['task_id']}"])
        print(f"[bench] status  GET /api/tasks/{{id}}: {rps} req/s, p50 {p50}, p99 {p99} {errors or ''}")
        lua = os.path.join(svc.tmp, "post.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = \'{"url": "http://127.0.0.1:9/v.mp4"}\'\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        rps, p50, p99, errors = wrk(["-s", lua, f"{svc.url}/api/download"])
        print(f"[bench] enqueue POST /api/download: {rps} req/s, p50 {p50}, p99 {p99} {errors or ''}")
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
