"""Benchmark: with the default settings (heartbeat 5 s x 6 missed, lease 20 s),
how long after a worker is SIGKILLed mid-job does another worker re-run the job?
Two process workers; the one running a slow job is killed with -9."""

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from harness import launch, make_clip, request, wait_final


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main():
    # Measures the DEFAULT fault recovery: not the fast heartbeat and lease of
    # tests/isolated.toml.
    defaults = dict.fromkeys(["redis.heartbeat_seconds", "redis.missed_heartbeats", "worker.lease_seconds"])
    svc = launch(workers=[{"queues": "process"}] * 2, overrides=defaults)
    try:
        rel = "uploads/bench/long.mp4"
        src = os.path.join(svc.storage_root, rel)
        os.makedirs(os.path.dirname(src))
        make_clip(src, "640x360", 60)
        ops = {"resize": {"width": 1920, "height": 1080}, "quality": 20}
        status, accepted = request("POST", svc.url + "/api/process", {"input_file": rel, "operations": ops})
        assert status == 202, accepted
        tid = accepted["task_id"]
        while True:
            task = request("GET", f"{svc.url}/api/tasks/{tid}")[1]
            if task["status"] == "processing" and task["progress"] > 0:
                break
            time.sleep(0.05)
        pid = int(task["worker"].split("-")[-3])
        os.kill(pid, 9)
        killed = time.time()
        # The killed worker's ffmpeg is in its own process group; stop it too.
        subprocess.run(["pkill", "-9", "-f", f"processed/{tid}"], check=False)
        print(f"[bench] killed worker pid {pid} running task {tid}", flush=True)
        first_start = ts(task["started_at"])
        while True:
            task = request("GET", f"{svc.url}/api/tasks/{tid}")[1]
            if task["started_at"] and ts(task["started_at"]) > first_start:
                break
            time.sleep(0.1)
        rerun = ts(task["started_at"]) - killed
        final = wait_final(svc, tid, poll=0.2)
        print(f"[bench] re-run started {rerun:.1f} s after the kill, on {final['worker']}")
        print(f"[bench] final status {final['status']}, attempts {final['attempts']}, "
              f"completed {ts(final['completed_at']) - killed:.1f} s after the kill")
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
