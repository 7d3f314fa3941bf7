"""Shared helpers of the benchmarks. An isolated API (+ workers) comes from
tests/launcher.py (release binaries, free port, temporary SQLite store and storage
root, random Redis namespace, tests/isolated.toml; everything removed on exit);
this module only adds the bench defaults and a few measuring helpers."""

import http.server
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from launcher import Instance, request  # noqa: E402  (needs the path above)

__all__ = ["Instance", "request", "launch", "wait_final", "rss_kib", "make_clip", "check", "timed", "pid_rss_kib",
           "QuietHandler"]

# The benches' Redis (database 0 unless MEDIAPRO__REDIS__URL says otherwise); the
# keys go under a random bench-<hex> namespace, deleted at the end.
REDIS_URL = os.environ.get("MEDIAPRO__REDIS__URL", "redis://127.0.0.1:6379/0")

# Keys of tests/isolated.toml no bench keeps: a benchmark measures the product,
# so a slow machine must not turn a long job into a test timeout.
BENCH_DEFAULTS = {"limits.task_timeout_seconds": None}


def launch(workers=(), overrides=None, bins=None, rust_log="warn"):
    """An isolated instance from the release binaries: the API and one worker
    process per entry of `workers` ({"queues": "process"}, …). `overrides` maps
    SECTION.KEY to a value, or to None for the built-in default (see
    tests/launcher.py). `bins`: a directory holding other binaries (e.g. a build of
    an older commit, for a before/after comparison in the same run). `rust_log`:
    the processes' RUST_LOG (their logs are in the instance's temp dir)."""
    return Instance(workers=workers, overrides={**BENCH_DEFAULTS, **(overrides or {})},
                    redis_url=REDIS_URL, name="bench", bins=bins, rust_log=rust_log)


def wait_final(inst, task_id, poll=0.02):
    while True:
        _, task = request("GET", f"{inst.url}/api/tasks/{task_id}")
        if task["status"] in ("completed", "failed", "cancelled"):
            return task
        time.sleep(poll)


def rss_kib(proc):
    """Resident memory of a process (children excluded), in KiB."""
    return pid_rss_kib(proc.pid)


def pid_rss_kib(pid):
    """VmRSS of a pid in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def make_clip(path, size, seconds):
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path],
        check=True,
    )


def check(ok, what):
    """Ends the bench run with `what` unless `ok`: a figure from a run that went
    wrong is not a figure."""
    if not ok:
        raise SystemExit(f"bench run failed: {what}")


def timed(fn):
    """Seconds `fn()` took (monotonic clock)."""
    t = time.monotonic()
    fn()
    return time.monotonic() - t


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A fixture file server that logs nothing (its log would swamp the figures)."""

    def log_message(self, *args):
        pass
