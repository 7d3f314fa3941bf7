#!/usr/bin/env python3
"""Scale test of a MediaPro deployment run by supervisord (stdlib only).

Normally run by tests/scale/run.sh, which starts supervisord (API + 2 download and
2 process worker processes), Redis, the database and a clip server, and cleans up.
This script only talks to them:

1. waits for /readyz and for every supervisord program to be RUNNING;
2. batch: submits downloads of the served clips all at once, then processing
   tasks (trim/resize/quality/fps) of the downloaded files, and waits for all of
   them: each must be completed, run by a worker of its own queue (worker name
   `<host>-<pid>-<queue>-<ulid>`, pid one of the supervisord-managed processes of
   that queue), and its output must exist (with the asked size after a resize);
3. kill test: a slow processing job (60 s clip to 1920x1080, quality 10); once it
   is `processing`, SIGKILL the worker running it (pid from its worker name) and
   the ffmpeg it left behind (own process group); the task must still complete,
   with attempts >= 2, and supervisord must have restarted the killed worker;
4. prints a PASS/FAIL line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

FINAL = {"completed", "failed", "cancelled"}
QUEUES = ("download", "process")
API_PROGRAM = "mediapro-api"


def log(msg: str) -> None:
    print(f"[scale] {msg}", flush=True)


class Results:
    def __init__(self) -> None:
        self.rows: list[tuple[bool, str, str]] = []
        self.kill_to_completion: float | None = None

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        self.rows.append((bool(ok), name, detail))
        log(f"{'PASS' if ok else 'FAIL'}  {name}{(': ' + detail) if detail else ''}")
        return bool(ok)

    def failed(self) -> int:
        return sum(1 for ok, _, _ in self.rows if not ok)


class Aborted(Exception):
    """A step cannot go on (the API is unreachable, a wait timed out, …)."""


# --- HTTP ----------------------------------------------------------------------------
def call(method: str, url: str, body: dict | None = None, timeout: float = 15.0) -> tuple[int, dict]:
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"error": raw.decode(errors="replace")}


def submit(api: str, path: str, body: dict) -> str:
    status, answer = call("POST", f"{api}{path}", body)
    if status != 202 or "task_id" not in answer:
        raise Aborted(f"POST {path} {json.dumps(body)} -> HTTP {status}: {answer}")
    return answer["task_id"]


def get_task(api: str, task_id: str) -> dict:
    for attempt in range(5):
        try:
            status, task = call("GET", f"{api}/api/tasks/{task_id}")
        except (urllib.error.URLError, OSError) as err:
            # The API is restarted by supervisord if it dies; ride out a short gap.
            if attempt == 4:
                raise Aborted(f"GET /api/tasks/{task_id}: {err}") from None
            time.sleep(1)
            continue
        if status == 200:
            return task
        raise Aborted(f"GET /api/tasks/{task_id} -> HTTP {status}: {task}")
    raise AssertionError("unreachable")


def wait_final(api: str, ids: list[str], timeout: float, what: str) -> dict[str, dict]:
    """Polls every task until all are final; prints progress every 10 s."""
    start = time.monotonic()
    tasks: dict[str, dict] = {}
    pending = list(ids)
    last_report = start
    while pending:
        for task_id in list(pending):
            task = get_task(api, task_id)
            tasks[task_id] = task
            if task["status"] in FINAL:
                pending.remove(task_id)
        if not pending:
            break
        now = time.monotonic()
        if now - start > timeout:
            states = {t: tasks[t]["status"] for t in pending}
            raise Aborted(f"{what}: {len(pending)} task(s) not final after {timeout:.0f} s: {states}")
        if now - last_report >= 10:
            counts: dict[str, int] = {}
            for t in tasks.values():
                counts[t["status"]] = counts.get(t["status"], 0) + 1
            log(f"  {what}: {now - start:.0f} s, {counts}")
            last_report = now
        time.sleep(0.25)
    log(f"{what}: all {len(ids)} final after {time.monotonic() - start:.1f} s")
    return tasks


# --- supervisord ---------------------------------------------------------------------
def supervisor_status(conf: str) -> dict[str, dict]:
    """`supervisorctl status` as {name: {state, pid}}; name is group:process or program."""
    proc = subprocess.run(
        ["supervisorctl", "-c", conf, "status"], capture_output=True, text=True, timeout=30
    )
    # Exit status is non-zero when some process is not RUNNING; the output still lists all.
    out: dict[str, dict] = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[1] not in {
            "RUNNING", "STARTING", "STOPPED", "STOPPING", "BACKOFF", "EXITED", "FATAL", "UNKNOWN",
        }:
            continue
        pid = None
        if parts[1] == "RUNNING" and len(parts) == 3 and parts[2].startswith("pid "):
            pid = int(parts[2][4:].split(",")[0])
        out[parts[0]] = {"state": parts[1], "pid": pid, "line": line.strip()}
    if not out:
        raise Aborted(f"supervisorctl status gave nothing usable (exit {proc.returncode}): {proc.stdout}{proc.stderr}")
    return out


def queue_of(process_name: str) -> str | None:
    for q in QUEUES:
        if f"mediapro-worker-{q}-" in process_name:
            return q
    return None


def worker_pids(status: dict[str, dict]) -> dict[str, dict[int, str]]:
    """{queue: {pid: supervisord process name}} of the RUNNING workers."""
    pids: dict[str, dict[int, str]] = {q: {} for q in QUEUES}
    for name, s in status.items():
        q = queue_of(name)
        if q and s["pid"]:
            pids[q][s["pid"]] = name
    return pids


def wait_supervised(conf: str, expect: dict[str, int], timeout: float) -> dict[str, dict]:
    """Waits until the API and expect[queue] workers per queue are RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        status = supervisor_status(conf)
        running = {q: sum(1 for n, s in status.items() if queue_of(n) == q and s["state"] == "RUNNING") for q in QUEUES}
        api_ok = any(n.split(":")[-1] == API_PROGRAM and s["state"] == "RUNNING" for n, s in status.items())
        if api_ok and all(running[q] >= expect[q] for q in QUEUES):
            return status
        fatal = [s["line"] for s in status.values() if s["state"] == "FATAL"]
        if fatal or time.monotonic() > deadline:
            lines = "\n  ".join(s["line"] for s in status.values())
            raise Aborted(f"supervisord programs not all RUNNING:\n  {lines}")
        time.sleep(0.5)


# --- workers and files ---------------------------------------------------------------
def parse_worker(name: str | None) -> tuple[int, str] | None:
    """`<host>-<pid>-<queue>-<ulid>` → (pid, queue). Split from the right: the host
    name may itself contain dashes."""
    if not name:
        return None
    parts = name.rsplit("-", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


def probe_size(path: str) -> tuple[int, int] | None:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0:s=x", path],
        capture_output=True, text=True, timeout=60,
    )
    try:
        w, h = proc.stdout.strip().split("x")
        return int(w), int(h)
    except ValueError:
        return None


def pids_with(needle: str) -> list[int]:
    """Live processes whose command line contains needle."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != b"Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 time with any number of fraction digits."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{(digits + '000000')[:6]}{zone}"
    return datetime.fromisoformat(text).timestamp()


def check_task(r: Results, task: dict, queue: str, pids: dict[str, dict[int, str]], label: str) -> None:
    tid = task["task_id"]
    ok = task["status"] == "completed"
    r.check(ok, f"{label} {tid[:8]} completed",
            f"status {task['status']}, attempts {task.get('attempts')}"
            + (f", error: {task.get('error')}" if not ok else ""))
    worker = task.get("worker") or ""
    parsed = parse_worker(worker)
    r.check(f"-{queue}-" in worker and parsed is not None and parsed[1] == queue,
            f"{label} {tid[:8]} ran on a {queue} worker", worker or "no worker recorded")
    if parsed:
        r.check(parsed[0] in pids[queue], f"{label} {tid[:8]} worker pid {parsed[0]} is a supervised {queue} worker",
                pids[queue].get(parsed[0], f"supervised {queue} pids: {sorted(pids[queue])}"))


# --- the test ------------------------------------------------------------------------
CLIPS = [("clip-640x360-20s.mp4", 20.0), ("clip-1280x720-6s.mp4", 6.0)]
LONG_CLIP = "long-640x360-60s.mp4"


def process_ops(i: int, clip_seconds: float) -> tuple[dict, tuple[int, int] | None]:
    """Varied operations, all valid for a 16:9 clip of clip_seconds; → (ops, size)."""
    short = clip_seconds < 10
    menu = [
        ({"trim": {"start": 1, "duration": 3 if short else 5}, "resize": {"width": 320, "height": 180}}, (320, 180)),
        ({"trim": {"start": 0, "duration": 4}, "resize": {"width": 480, "height": 270}, "quality": 30}, (480, 270)),
        ({"resize": {"width": 256, "height": 144}, "fps": 15}, (256, 144)),
        ({"trim": {"start": 2, "duration": 3}, "quality": 35, "fps": 12}, None),
    ]
    return menu[i % len(menu)]


def batch(r: Results, args, pids: dict[str, dict[int, str]]) -> None:
    api = args.api
    log(f"batch: submitting {args.downloads} downloads at once")
    t0 = time.monotonic()
    downloads: dict[str, tuple[str, float]] = {}
    for i in range(args.downloads):
        clip, seconds = CLIPS[i % len(CLIPS)]
        downloads[submit(api, "/api/download", {"url": f"{args.clip_base}/{clip}"})] = (clip, seconds)
    done = wait_final(api, list(downloads), args.timeout, "downloads")
    log(f"batch: {len(done)} downloads final {time.monotonic() - t0:.1f} s after the first POST")
    names = set()
    for tid, task in done.items():
        check_task(r, task, "download", pids, "download")
        names.add(task.get("worker"))
        files = task.get("downloaded_files") or []
        path = os.path.join(args.storage_root, files[0]) if files else ""
        r.check(bool(path) and os.path.isfile(path) and os.path.getsize(path) > 0,
                f"download {tid[:8]} file exists", files[0] if files else "no downloaded_files")
    dl_pids = {parse_worker(n)[0] for n in names if parse_worker(n)}
    log(f"downloads ran on {len(names)} worker name(s) / {len(dl_pids)} process(es): {sorted(n or '' for n in names)}")
    if len(dl_pids) < 2:
        log("note: only one download worker process took jobs (nice-to-have: both)")

    completed = [(t["downloaded_files"][0], downloads[tid][1]) for tid, t in done.items()
                 if t["status"] == "completed" and t.get("downloaded_files")]
    if not completed:
        raise Aborted("no download completed; cannot submit processing tasks")
    log(f"batch: submitting {args.processes} processing tasks at once")
    t1 = time.monotonic()
    procs: dict[str, tuple[int, int] | None] = {}
    for i in range(args.processes):
        input_file, seconds = completed[i % len(completed)]
        ops, size = process_ops(i, seconds)
        procs[submit(api, "/api/process", {"input_file": input_file, "operations": ops})] = size
    done = wait_final(api, list(procs), args.timeout, "processing")
    log(f"batch: {len(done)} processing tasks final {time.monotonic() - t1:.1f} s after the first POST")
    names = set()
    for tid, task in done.items():
        check_task(r, task, "process", pids, "process")
        names.add(task.get("worker"))
        out = task.get("output_file")
        path = os.path.join(args.storage_root, out) if out else None
        exists = bool(path) and os.path.isfile(path) and os.path.getsize(path) > 0
        r.check(exists, f"process {tid[:8]} output exists", out or "no output_file")
        if exists and procs[tid]:
            got = probe_size(path)
            r.check(got == procs[tid], f"process {tid[:8]} output is {procs[tid][0]}x{procs[tid][1]}", f"ffprobe: {got}")
    pr_pids = {parse_worker(n)[0] for n in names if parse_worker(n)}
    log(f"processing ran on {len(names)} worker name(s) / {len(pr_pids)} process(es): {sorted(n or '' for n in names)}")
    if len(pr_pids) < 2:
        log("note: only one process worker process took jobs (nice-to-have: both)")


def registered_workers(args) -> list[str]:
    """Worker names apalis-redis registered in Redis under our namespace (best effort)."""
    try:
        keys = subprocess.run(["redis-cli", "-u", args.redis_url, "--scan", "--pattern", f"{args.namespace}:*"],
                              capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return []
    names: set[str] = set()
    for key in keys:
        if not key.endswith(":workers"):
            continue
        typ = subprocess.run(["redis-cli", "-u", args.redis_url, "type", key],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        cmd = {"zset": ["zrange", key, "0", "-1"], "set": ["smembers", key], "hash": ["hkeys", key]}.get(typ)
        if cmd:
            out = subprocess.run(["redis-cli", "-u", args.redis_url, *cmd], capture_output=True, text=True,
                                 timeout=10).stdout
            names.update(n for n in out.split() if parse_worker(n))
    return sorted(names)


def check_worker_identities(r: Results, args, pids: dict[str, dict[int, str]]) -> None:
    """Each of the 2+2 supervised processes registered under its own distinct name."""
    # Workers register when they start; RUNNING (3 s up) normally means done, but
    # give a slow machine a few more seconds.
    want = {pid for q in QUEUES for pid in pids[q]}
    deadline = time.monotonic() + 15
    while True:
        names = registered_workers(args)
        if want <= {parse_worker(n)[0] for n in names} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not names:
        log("note: found no worker registry in Redis; worker names are checked through tasks only")
        return
    by_pid: dict[int, set[str]] = {}
    for n in names:
        pid, queue = parse_worker(n)
        by_pid.setdefault(pid, set()).add(n)
    for q in QUEUES:
        for pid, proc_name in sorted(pids[q].items()):
            mine = sorted(n for n in by_pid.get(pid, set()) if parse_worker(n)[1] == q)
            r.check(bool(mine), f"{proc_name} (pid {pid}) registered as a {q} worker", ", ".join(mine) or "not registered")
    live = [n for n in names if parse_worker(n)[0] in pids["download"] or parse_worker(n)[0] in pids["process"]]
    r.check(len(live) == len(set(live)) and len({parse_worker(n)[0] for n in live}) == sum(len(p) for p in pids.values()),
            "the 2+2 supervised workers have distinct names", f"{len(live)} live names")


def kill_test(r: Results, args) -> None:
    api = args.api
    log(f"kill test: downloading {LONG_CLIP}")
    dl = submit(api, "/api/download", {"url": f"{args.clip_base}/{LONG_CLIP}"})
    task = wait_final(api, [dl], args.timeout, "long clip download")[dl]
    if task["status"] != "completed":
        raise Aborted(f"the long clip download did not complete: {task}")
    before = worker_pids(wait_supervised(args.supervisor_conf, {"download": 2, "process": 2}, 60))

    ops = {"resize": {"width": 1920, "height": 1080}, "quality": 10}
    pid_task = submit(api, "/api/process", {"input_file": task["downloaded_files"][0], "operations": ops})
    log(f"kill test: processing task {pid_task} {json.dumps(ops)}; waiting for it to be processing")
    deadline = time.monotonic() + 120
    while True:
        task = get_task(api, pid_task)
        if task["status"] == "processing" and (task.get("progress") or 0) > 0 and task.get("worker"):
            break
        if task["status"] in FINAL:
            raise Aborted(f"the slow job finished before it could be killed: {task['status']} (make it slower)")
        if time.monotonic() > deadline:
            raise Aborted(f"the slow job is not processing after 120 s: {task}")
        time.sleep(0.1)
    first_worker = task["worker"]
    parsed = parse_worker(first_worker)
    if not parsed:
        raise Aborted(f"cannot read a pid from worker name {first_worker!r}")
    victim = parsed[0]
    proc_name = before["process"].get(victim)
    r.check(proc_name is not None, "the slow job runs on a supervised process worker",
            f"{first_worker} (pid {victim}{', ' + proc_name if proc_name else ''})")
    log(f"kill test: task at {task.get('progress')}% on {first_worker}; kill -9 {victim}")
    os.kill(victim, signal.SIGKILL)
    killed_mono = time.monotonic()
    killed_wall = time.time()
    # Its ffmpeg runs in a process group of its own and would go on writing; a
    # container or cgroup stop would kill it, here it is done by hand.
    orphans: list[int] = []
    for _ in range(2):
        for pid in pids_with(f"processed/{pid_task}"):
            try:
                os.kill(pid, signal.SIGKILL)
                orphans.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.3)
    log(f"kill test: killed leftover ffmpeg pid(s) {sorted(set(orphans)) or 'none'}")

    restarted_after = None
    rerun_seen_after = None
    new_pid = None
    deadline = killed_mono + args.timeout
    while True:
        task = get_task(api, pid_task)
        now = time.monotonic()
        if rerun_seen_after is None and task.get("worker") and task["worker"] != first_worker:
            rerun_seen_after = now - killed_mono
            log(f"kill test: re-run picked up by {task['worker']} {rerun_seen_after:.1f} s after the kill")
        if restarted_after is None and proc_name:
            s = supervisor_status(args.supervisor_conf).get(proc_name)
            if s and s["state"] == "RUNNING" and s["pid"] and s["pid"] != victim:
                restarted_after, new_pid = now - killed_mono, s["pid"]
                log(f"kill test: supervisord restarted {proc_name} as pid {new_pid} {restarted_after:.1f} s after the kill")
        if task["status"] in FINAL:
            break
        if now > deadline:
            raise Aborted(f"the killed job is not final {args.timeout:.0f} s after the kill: {task}")
        time.sleep(0.25)
    done_after = time.monotonic() - killed_mono
    log(f"kill test: task final ({task['status']}) {done_after:.1f} s after the kill")

    r.check(task["status"] == "completed", "killed job completed",
            f"status {task['status']}" + (f", error: {task.get('error')}" if task["status"] != "completed" else ""))
    r.check((task.get("attempts") or 0) >= 2, "killed job has attempts >= 2", f"attempts {task.get('attempts')}")
    r.check(task.get("worker") != first_worker, "killed job finished on another worker",
            f"{first_worker} -> {task.get('worker')}")
    rerun = parse_worker(task.get("worker"))
    if rerun:
        who = "the restarted worker" if rerun[0] == new_pid else (
            "the other process worker" if rerun[0] in before["process"] else f"pid {rerun[0]}")
        r.check(rerun[1] == "process", "killed job re-ran on a process worker", f"{task.get('worker')} ({who})")
    if task.get("started_at"):
        try:
            log(f"kill test: re-run started {rfc3339(task['started_at']) - killed_wall:.1f} s after the kill"
                " (heartbeat 1 s x 3 missed)")
        except ValueError:
            pass
    out = task.get("output_file")
    path = os.path.join(args.storage_root, out) if out else ""
    got = probe_size(path) if path and os.path.isfile(path) else None
    r.check(got == (1920, 1080), "killed job output is 1920x1080", f"{out}: {got}")

    if restarted_after is None and proc_name:
        status = wait_supervised(args.supervisor_conf, {"download": 2, "process": 2}, 30)
        s = status.get(proc_name, {})
        if s.get("pid") and s["pid"] != victim:
            restarted_after = time.monotonic() - killed_mono
    r.check(restarted_after is not None, "supervisord restarted the killed worker",
            f"{proc_name} pid {victim} -> {new_pid}" + (f" within {restarted_after:.1f} s" if restarted_after else ""))
    r.check(not pids_with(f"processed/{pid_task}"), "no ffmpeg of the killed job left running")
    r.kill_to_completion = done_after


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", required=True, help="API base URL")
    ap.add_argument("--clip-base", required=True, help="base URL of the served clips")
    ap.add_argument("--storage-root", required=True, help="MEDIAPRO__STORAGE__ROOT of the deployment")
    ap.add_argument("--supervisor-conf", required=True, help="supervisord.conf (for supervisorctl -c)")
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--namespace", required=True, help="Redis key namespace of the deployment")
    ap.add_argument("--db", default="?", help="task store description, for the summary")
    ap.add_argument("--downloads", type=int, default=8)
    ap.add_argument("--processes", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per wait")
    args = ap.parse_args()

    r = Results()
    started = time.monotonic()
    aborted = None
    try:
        log(f"waiting for {args.api}/readyz")
        deadline = time.monotonic() + 90
        while True:
            try:
                status, body = call("GET", f"{args.api}/readyz", timeout=2)
                if status == 200:
                    break
            except (urllib.error.URLError, OSError) as err:
                body = str(err)
            api = [s for n, s in supervisor_status(args.supervisor_conf).items() if n.split(":")[-1] == API_PROGRAM]
            if api and api[0]["state"] in ("FATAL", "EXITED", "STOPPED"):
                raise Aborted(f"mediapro-api did not start under supervisord: {api[0]['line']} (see its log)")
            if time.monotonic() > deadline:
                raise Aborted(f"/readyz not 200 within 90 s: {body}")
            time.sleep(0.5)
        log("API ready")
        status = wait_supervised(args.supervisor_conf, {"download": 2, "process": 2}, 60)
        for s in status.values():
            log(f"  {s['line']}")
        pids = worker_pids(status)
        r.check(len(pids["download"]) == 2 and len(pids["process"]) == 2, "supervisord runs the API + 2 download + 2 process workers",
                f"download pids {sorted(pids['download'])}, process pids {sorted(pids['process'])}")
        check_worker_identities(r, args, pids)
        batch(r, args, pids)
        kill_test(r, args)
        final = wait_supervised(args.supervisor_conf, {"download": 2, "process": 2}, 30)
        r.check(not any(s["state"] != "RUNNING" for s in final.values()), "all supervised programs RUNNING at the end",
                "; ".join(s["line"] for s in final.values() if s["state"] != "RUNNING"))
    except Aborted as err:
        aborted = str(err)
        r.check(False, "test aborted", aborted)
    except KeyboardInterrupt:
        aborted = "interrupted"
        r.check(False, "test aborted", "interrupted")

    total = time.monotonic() - started
    failed = r.failed()
    print(flush=True)
    log(f"summary ({args.db}):")
    for ok, name, detail in r.rows:
        if not ok:
            log(f"  FAIL  {name}{(': ' + detail) if detail else ''}")
    if r.kill_to_completion is not None:
        log(f"  kill -9 to completion of the killed job: {r.kill_to_completion:.1f} s")
    log(f"  {len(r.rows) - failed} of {len(r.rows)} checks passed in {total:.0f} s")
    log("RESULT: PASS" if failed == 0 else f"RESULT: FAIL ({failed} check(s) failed)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
