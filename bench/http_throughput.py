"""Benchmark: HTTP throughput and latency of enqueue (POST /api/download) and
status (GET /api/tasks/{id}) with wrk, 32 connections, against a release API on
SQLite. Targets (README, "Performance"): enqueue >= 4,500 req/s with p99 < 10 ms; status
>= 15,000 req/s with p99 < 5 ms.

`http_throughput.py metrics`: the cost of the metrics. Two APIs, one with
`server.metrics = true` and one with `false`, measured alternately (on, off, off, on,
…, ROUNDS rounds, default 2) for status and enqueue; prints every run and the medians.
Target: under 5 % apart. On a shared machine the spread between runs can be larger
than the difference: read the per-run lines and the load average printed with them.

`http_throughput.py baseline DIR`: this build against the binaries in DIR (e.g. a
release build of an older commit: `git worktree add /tmp/old <commit> && cd /tmp/old
&& cargo build --release -p mediapro-api`, DIR = /tmp/old/target/release), measured
alternately the same way, so a regression shows against the same machine state."""

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


BASE = {"server.http_workers": None, "limits.submissions_per_minute": 0, "limits.max_pending_tasks": 0}
POST_LUA = ('wrk.method = "POST"\nwrk.body = \'{"url": "http://127.0.0.1:9/v.mp4"}\'\n'
            'wrk.headers["Content-Type"] = "application/json"\n')


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def compare(variants, label):
    """Alternating wrk runs of status and enqueue against each launched API of
    `variants` ({name: Instance}, two of them); prints every run and the medians."""
    rounds = int(os.environ.get("ROUNDS", "2"))
    names = list(variants)
    try:
        targets = {}
        for name, svc in variants.items():
            status, accepted = request("POST", svc.url + "/api/download", {"url": "http://127.0.0.1:9/v.mp4"})
            assert status == 202, accepted
            lua = os.path.join(svc.tmp, "post.lua")
            with open(lua, "w") as f:
                f.write(POST_LUA)
            targets[name] = {"status": [f"{svc.url}/api/tasks/{accepted['task_id']}"],
                             "enqueue": ["-s", lua, f"{svc.url}/api/download"]}
        results = {(what, name): [] for what in ("status", "enqueue") for name in names}
        for r in range(rounds):
            # ABBA: neither side always goes first (enqueue runs grow the store).
            order = names if r % 2 == 0 else names[::-1]
            for what in ("status", "enqueue"):
                for name in order:
                    rps, p50, p99, errors = wrk(targets[name][what])
                    results[(what, name)].append(float(rps))
                    load = os.getloadavg()[0]
                    print(f"[bench] round {r + 1} {what:7} {label} {name:8}: {rps} req/s, "
                          f"p50 {p50}, p99 {p99}, load {load:.1f} {errors or ''}", flush=True)
        a, b = names
        for what in ("status", "enqueue"):
            m_a, m_b = median(results[(what, a)]), median(results[(what, b)])
            diff = (m_b - m_a) / m_b * 100 if m_b else 0.0
            print(f"[bench] {what:7} median of {rounds}: {label} {a} {m_a:.0f} req/s, {b} {m_b:.0f} req/s: "
                  f"{a} is {diff:+.1f} % slower")
    finally:
        for svc in variants.values():
            svc.stop()


def metrics_overhead():
    """Target: metrics on is under 5 % slower than off."""
    compare({"on": launch(overrides={**BASE, "server.metrics": True}),
             "off": launch(overrides={**BASE, "server.metrics": False})}, "metrics")


def against_baseline(bins):
    # The baseline may predate the submission limits (and refuse their keys): it gets
    # only the thread count.
    compare({"this": launch(overrides=BASE),
             "baseline": launch(overrides={"server.http_workers": None}, bins=bins)}, "build")


def main():
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    if sys.argv[1:] == ["metrics"]:
        return metrics_overhead()
    if len(sys.argv) == 3 and sys.argv[1] == "baseline":
        return against_baseline(sys.argv[2])
    # The default API thread count (one per core), not the tests' 2.
    svc = launch(overrides=BASE)
    try:
        status, accepted = request("POST", svc.url + "/api/download", {"url": "http://127.0.0.1:9/v.mp4"})
        assert status == 202, accepted
        rps, p50, p99, errors = wrk([f"{svc.url}/api/tasks/{accepted['task_id']}"])
        print(f"[bench] status  GET /api/tasks/{{id}}: {rps} req/s, p50 {p50}, p99 {p99} {errors or ''}")
        lua = os.path.join(svc.tmp, "post.lua")
        with open(lua, "w") as f:
            f.write(POST_LUA)
        rps, p50, p99, errors = wrk(["-s", lua, f"{svc.url}/api/download"])
        print(f"[bench] enqueue POST /api/download: {rps} req/s, p50 {p50}, p99 {p99} {errors or ''}")
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
