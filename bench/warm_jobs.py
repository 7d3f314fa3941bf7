"""Benchmark: jobs end to end through the real API + worker (release binaries,
started with tests/launcher.py) with the warm yt-dlp host on (the default,
warm-up included) and off, beside bare yt-dlp measured in the same run. A 10 s
clip (640x360) served on 127.0.0.1; interleaved (the order rotates per round),
median of RUNS (default 10).

(a) `POST /api/analyze` of a URL not seen before (a fresh query string: no
    cache) vs bare `yt-dlp --dump-single-json` with the builders' argv
    (target <= 0.2x);
(b) a download job end to end: `POST /api/download` -> `GET /api/tasks/{id}`
    polled every 10 ms until `completed` (yt-dlp, the egress proxy, ffprobe
    verification, queueing) vs bare yt-dlp downloading the same file with the
    builders' argv (target <= 0.6x); with a per-step split from the task's
    timestamps (pick-up, run);
(c) 20 analyzes at once (distinct URLs): all must succeed; total wall time vs
    one analyze;
(d) idle RSS of the worker including its host (the process tree), and of the
    API with its host, vs the same with the host off.

Both instances use the same yt-dlp script as the bare runs (the one beside this
Python, not a version manager's shim). Prints a markdown table.

Usage: python3 bench/warm_jobs.py   (after cargo build --release --workspace)"""

import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "crates", "mediapro-core", "ythost"))

from harness import check, launch, pid_rss_kib, request  # noqa: E402
from testkit import FixtureServer, analyze_argv, child_env, download_argv, make_clip, run_cli, ytdlp_cli  # noqa: E402

RUNS = int(os.environ.get("RUNS", "10"))
CONCURRENT = 20


def timed(fn):
    t = time.monotonic()
    result = fn()
    return time.monotonic() - t, result


def descendants(pid):
    """pid and every process under it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_rss_mib(proc):
    return sum(pid_rss_kib(p) for p in descendants(proc.pid)) / 1024


def host_sockets(proc):
    """The sockets of the warm hosts under `proc` (from their command lines)."""
    sockets = []
    for pid in descendants(proc.pid)[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.endswith("ythost.py") for a in argv) and "--socket" in argv:
            sockets.append(argv[argv.index("--socket") + 1])
    return sockets


def wait_hosts_ready(inst, timeout=120):
    """The API's host (from /readyz) and the worker's (its socket exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, ready = request("GET", inst.url + "/readyz")
        worker_ready = any(os.path.exists(s) for s in host_sockets(inst.workers[0]))
        if ready.get("ytdlp", {}).get("host") == "ready" and worker_ready:
            return ready["ytdlp"]["version"]
        time.sleep(0.1)
    raise SystemExit(f"the warm hosts were not ready within {timeout} s: {ready}")


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Service:
    def __init__(self, name, inst):
        self.name, self.inst = name, inst

    def analyze(self, url):
        status, body = request("POST", self.inst.url + "/api/analyze", {"url": url})
        check(status == 200 and body.get("formats"), f"{self.name} analyze: {status} {body}")

    def download(self, url):
        """Seconds from POST to completed, and the task (for the split)."""
        t = time.monotonic()
        status, body = request("POST", self.inst.url + "/api/download", {"url": url})
        check(status == 202, f"{self.name} download: {status} {body}")
        task_url = f"{self.inst.url}/api/tasks/{body['task_id']}"
        while True:
            _, task = request("GET", task_url)
            if task["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.01)
        took = time.monotonic() - t
        check(task["status"] == "completed", f"{self.name} download: {task}")
        return took, task


def main():
    work = tempfile.mkdtemp(prefix="warm-jobs-bench-")
    home = os.path.join(work, "home")
    os.mkdir(home, 0o700)
    media = os.path.join(work, "media")
    os.mkdir(media)
    make_clip(os.path.join(media, "clip.mp4"), 10, size="640x360")
    server = FixtureServer(media)
    env = child_env(home)
    ytdlp = ytdlp_cli()
    common = {"tools.ytdlp": ytdlp, "limits.analyze_per_minute": 0, "limits.submissions_per_minute": 0}
    worker = [{"queues": "download", "concurrency": 2}]
    on = off = None
    try:
        started = time.monotonic()
        on = launch(workers=worker, overrides=common)
        version = wait_hosts_ready(on)
        hosts_up = time.monotonic() - started
        off = launch(workers=worker, overrides={**common, "tools.ytdlp_host": False})
        services = [Service("host on", on), Service("host off", off)]

        def fresh(path="clip.mp4"):
            return f"{server.url}/{path}?u={uuid.uuid4().hex}"

        def bare_analyze():
            run = run_cli(analyze_argv(fresh()), env)
            check(run.returncode == 0 and run.stdout.startswith("{"), run.stderr)

        def bare_download():
            out = tempfile.mkdtemp(dir=work)
            run = run_cli(download_argv(f"{server.url}/clip.mp4", out), env, cwd=out)
            check(run.returncode == 0 and "MPFILE " in run.stdout, run.stderr)
            shutil.rmtree(out)

        # One untimed round: first runs (page cache, the egress proxy, SQLite).
        for s in services:
            s.analyze(fresh())
            s.download(f"{server.url}/clip.mp4")
        bare_analyze()
        bare_download()
        time.sleep(2)
        idle = {s.name: (tree_rss_mib(s.inst.workers[0]), tree_rss_mib(s.inst.api)) for s in services}

        analyze = {"host on": [], "host off": [], "bare": []}
        download = {"host on": [], "host off": [], "bare": []}
        split = {"host on": [], "host off": []}
        sides = [("host on", services[0]), ("host off", services[1]), ("bare", None)]
        for i in range(RUNS):
            order = sides[i % 3:] + sides[:i % 3]
            for name, svc in order:
                analyze[name].append(timed(lambda: svc.analyze(fresh()) if svc else bare_analyze())[0])
            for name, svc in order:
                if svc is None:
                    download[name].append(timed(bare_download)[0])
                    continue
                took, task = svc.download(f"{server.url}/clip.mp4")
                download[name].append(took)
                created, started_at, done = ts(task["created_at"]), ts(task["started_at"]), ts(task["completed_at"])
                split[name].append((started_at - created, done - started_at))

        burst = {}
        for s in services:
            with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
                t = time.monotonic()
                list(pool.map(lambda _: s.analyze(fresh()), range(CONCURRENT)))
                burst[s.name] = time.monotonic() - t

        med = {k: statistics.median(v) for k, v in analyze.items()}
        dmed = {k: statistics.median(v) for k, v in download.items()}
        print(f"\nyt-dlp {version} ({ytdlp}), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
              f"median of {RUNS}, interleaved; warm hosts (API + worker) up {hosts_up:.1f} s after launch\n")
        print("| measure | host on | host off | bare yt-dlp | on / bare | target |")
        print("|---|---|---|---|---|---|")
        print(f"| (a) `POST /api/analyze`, new URL | {med['host on']:.3f} s | {med['host off']:.3f} s | "
              f"{med['bare']:.3f} s | {med['host on'] / med['bare']:.2f}x (off {med['host off'] / med['bare']:.2f}x) "
              f"| <= 0.2x |")
        print(f"| (b) download job, POST -> completed | {dmed['host on']:.3f} s | {dmed['host off']:.3f} s | "
              f"{dmed['bare']:.3f} s | {dmed['host on'] / dmed['bare']:.2f}x (off {dmed['host off'] / dmed['bare']:.2f}x) "
              f"| <= 0.6x |")
        for name in ("host on", "host off"):
            pickup = statistics.median(p for p, _ in split[name])
            run = statistics.median(r for _, r in split[name])
            print(f"| (b) split, {name}: pick-up / run (yt-dlp + verify + settle) | "
                  f"{pickup * 1000:.0f} ms / {run * 1000:.0f} ms | | | | |")
        for name in ("host on", "host off"):
            print(f"| (c) {CONCURRENT} analyzes at once, {name} (all 200) | {burst[name]:.2f} s total | "
                  f"| | {burst[name] / med[name]:.1f}x one analyze | |")
        for name in ("host on", "host off"):
            w, a = idle[name]
            print(f"| (d) idle RSS, {name}: worker tree / API tree | {w:.1f} MiB / {a:.1f} MiB | | | | |")
    finally:
        for inst in (on, off):
            if inst is not None:
                inst.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
