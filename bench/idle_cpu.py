"""Benchmark: what an idle worker costs, how fast it picks a job up, and where a
download job's time goes around yt-dlp, for wake-on-push (the defaults) and for
the behaviour before it (polling Redis every redis.poll_interval_ms, 50 ms, also
when idle, and no wake-up subscription: redis.idle_poll_interval_ms = 50), in one
run.

Per mode, an isolated API + one worker for both queues (release binaries, the
built-in queue, heartbeat and webhook settings, not the tests' faster ones):

1. idle CPU: utime + stime of the worker and its reaped children
   (/proc/PID/stat) over IDLE_SECONDS (60) once start-up has settled, as % of
   one core (target <= 0.2 %);
2. pick-up latency: ROUNDS (20) downloads of a 2 s clip served on 127.0.0.1,
   one after the other, each sent once the worker has been idle for 1.5 s; the
   time from just before POST /api/download until GET /api/tasks/<id> (every
   2 ms) no longer says pending (target < 100 ms), median and p95;
3. per-step wall time of those download jobs, from the worker's timing log
   (target mediapro_worker::timing, crates/worker/src/jobs/timing.rs), median
   per step; and POST -> completed against a bare yt-dlp run of the same URL.

Environment: IDLE_SECONDS, ROUNDS, MODES (comma separated: new,old).
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from functools import partial
from http.server import ThreadingHTTPServer

from harness import QuietHandler, launch, make_clip, request, wait_final

IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "60"))
ROUNDS = int(os.environ.get("ROUNDS", "20"))
MODES = os.environ.get("MODES", "new,old").split(",")
SETTLE_SECONDS = 5.0
IDLE_GAP = 1.5  # the worker's fast phase after a job is 1 s (crates/worker/src/poll.rs)

# The product's own queue and webhook settings, not tests/isolated.toml's faster
# fault-recovery ones (a 1 s heartbeat).
COMMON = {"redis.heartbeat_seconds": None, "redis.missed_heartbeats": None, "worker.lease_seconds": None}
OVERRIDES = {
    "new": {},
    "old": {"redis.idle_poll_interval_ms": 50},
}
LABELS = {"new": "wake-on-push (defaults)", "old": "fast polling (idle_poll_interval_ms = 50)"}

TICKS = os.sysconf("SC_CLK_TCK")
STEPS = re.compile(r"job steps .*?total_ms=(\S+) steps=(\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cpu_seconds(pid):
    """utime + stime of the process and of its children it has waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
    return sum(int(v) for v in fields[11:15]) / TICKS


def live_children_cpu(pid):
    """CPU of the worker's children still running (yt-dlp, ffprobe), if any."""
    total = 0.0
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return 0.0
    for child in children:
        try:
            total += cpu_seconds(int(child)) + live_children_cpu(int(child))
        except (OSError, ValueError):
            pass
    return total


def worker_cpu(proc):
    return cpu_seconds(proc.pid) + live_children_cpu(proc.pid)


def percentile(values, pct):
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def serve(directory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bare_ytdlp(url, out_dir):
    """yt-dlp alone on the same URL: what a job could take at best."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    t = time.monotonic()
    subprocess.run(["yt-dlp", "--ignore-config", "--no-cache-dir", "--no-playlist", "-q", "--no-progress",
                    "-o", os.path.join(out_dir, "%(title)s.%(ext)s"), "--", url], check=True)
    return time.monotonic() - t


def one_pickup(svc, url):
    t0 = time.perf_counter()
    status, accepted = request("POST", svc.url + "/api/download", {"url": url})
    assert status == 202, accepted
    task_url = f"{svc.url}/api/tasks/{accepted['task_id']}"
    while True:
        _, task = request("GET", task_url)
        if task["status"] != "pending":
            pickup = time.perf_counter() - t0
            break
        if time.perf_counter() - t0 > 30:
            raise SystemExit(f"task {accepted['task_id']} still pending after 30 s")
        time.sleep(0.002)
    task = wait_final(svc, accepted["task_id"], poll=0.01)
    done = time.perf_counter() - t0
    assert task["status"] == "completed", task
    server = ts(task["started_at"]) - ts(task["created_at"])
    return pickup, server, done


def step_medians(log_path, offset):
    """Median per step over the timing lines of the worker's log after `offset`,
    and per job its total and its total but the yt-dlp run."""
    per_step, totals, others = {}, [], []
    with open(log_path, "rb") as f:
        f.seek(offset)
        lines = ANSI.sub("", f.read().decode(errors="replace")).splitlines()
        for line in lines:
            m = STEPS.search(line)
            if not m:
                continue
            totals.append(float(m.group(1)))
            seen = {}
            for item in m.group(2).split(","):
                name, _, ms = item.partition("=")
                seen[name] = seen.get(name, 0.0) + float(ms)
            for name, ms in seen.items():
                per_step.setdefault(name, []).append(ms)
            others.append(totals[-1] - seen.get("yt-dlp", 0.0))
    return {k: statistics.median(v) for k, v in per_step.items()}, totals, others


def run_mode(mode, clip_url, bare_dir):
    overrides = {**COMMON, **OVERRIDES[mode]}
    svc = launch(workers=[{"queues": "download,process"}], overrides=overrides,
                 rust_log="warn,mediapro_worker::timing=debug")
    try:
        worker = svc.workers[0]
        time.sleep(SETTLE_SECONDS)
        print(f"[bench] {mode}: measuring the idle worker (pid {worker.pid}) for {IDLE_SECONDS:.0f} s", flush=True)
        c0, t0 = worker_cpu(worker), time.monotonic()
        time.sleep(IDLE_SECONDS)
        c1, t1 = worker_cpu(worker), time.monotonic()
        idle_pct = (c1 - c0) / (t1 - t0) * 100
        print(f"[bench] {mode}: idle CPU {idle_pct:.3f} % of a core ({(c1 - c0) * 1000:.0f} ms CPU in {t1 - t0:.1f} s)",
              flush=True)

        one_pickup(svc, clip_url)  # warm-up (page cache, the first yt-dlp start)
        bare_ytdlp(clip_url, bare_dir)
        log_path = os.path.join(svc.tmp, "worker0.log")
        log_start = os.path.getsize(log_path)  # only the measured rounds' steps
        pickups, servers, jobs, bares = [], [], [], []
        for i in range(ROUNDS):
            time.sleep(IDLE_GAP)
            pickup, server, done = one_pickup(svc, clip_url)
            pickups.append(pickup * 1000)
            servers.append(server * 1000)
            jobs.append(done)
            if i % 4 == 0:
                bares.append(bare_ytdlp(clip_url, bare_dir))
            print(f"[bench] {mode}: round {i + 1:2d}: pick-up {pickup * 1000:6.1f} ms "
                  f"(server started_at - created_at {server * 1000:6.1f} ms), POST -> completed {done:.3f} s",
                  flush=True)
        steps, totals, others = step_medians(log_path, log_start)
        return {
            "idle_pct": idle_pct,
            "pickup_median": statistics.median(pickups),
            "pickup_p95": percentile(pickups, 95),
            "server_median": statistics.median(servers),
            "job_median": statistics.median(jobs),
            "bare_median": statistics.median(bares),
            "steps": steps,
            "total_median": statistics.median(totals) if totals else float("nan"),
            "other_median": statistics.median(others) if others else float("nan"),
        }
    finally:
        svc.stop()


def main():
    for tool in ("yt-dlp", "ffmpeg", "ffprobe"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: run scripts/install-deps.sh")
    www = tempfile.mkdtemp(prefix="mediapro-bench-www-")
    server = None
    try:
        make_clip(os.path.join(www, "clip.mp4"), "320x180", 2)
        server = serve(www)
        clip_url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        results = {mode: run_mode(mode, clip_url, os.path.join(www, "bare")) for mode in MODES}
    finally:
        if server:
            server.shutdown()
        shutil.rmtree(www, ignore_errors=True)

    print()
    print(f"[bench] idle worker over {IDLE_SECONDS:.0f} s and pick-up of {ROUNDS} downloads, same run:")
    print(f"| mode | idle CPU (% of a core, target <= 0.2) | pick-up median | pick-up p95 (target < 100 ms) "
          f"| server started_at - created_at, median |")
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {LABELS[mode]} | {r['idle_pct']:.3f} | {r['pickup_median']:.1f} ms | {r['pickup_p95']:.1f} ms "
              f"| {r['server_median']:.1f} ms |")
    print()
    print("[bench] download job steps (ms, median per step; crates/worker/src/jobs/timing.rs):")
    names = []
    for r in results.values():
        names += [n for n in r["steps"] if n not in names]
    print("| step | " + " | ".join(LABELS[m] for m in results) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{r['steps'].get(name, float('nan')):.1f}" for r in results.values()) + " |")
    print("| job total (claim to settled event) | "
          + " | ".join(f"{r['total_median']:.1f}" for r in results.values()) + " |")
    print("| job total but the yt-dlp step (per job, median) | "
          + " | ".join(f"{r['other_median']:.1f}" for r in results.values()) + " |")
    print("| POST -> completed (client, 10 ms polls) | "
          + " | ".join(f"{r['job_median'] * 1000:.0f}" for r in results.values()) + " |")
    print("| bare yt-dlp, same URL | " + " | ".join(f"{r['bare_median'] * 1000:.0f}" for r in results.values()) + " |")


if __name__ == "__main__":
    sys.exit(main())
