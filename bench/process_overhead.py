"""Benchmark: end-to-end time of a process job (POST /api/process until the task
is seen completed) against the bare ffmpeg command doing the same work on the
same file, median of N runs each. Prints the ratio (target <= 1.05)."""

import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime

from harness import launch, make_clip, request, wait_final


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

RUNS = int(os.environ.get("RUNS", "5"))
OPS = {"trim": {"start": 5, "duration": 40}, "resize": {"width": 854, "height": 480}, "quality": 26, "fps": 25}


def bare_ffmpeg(src, out):
    # What the job runs, minus MediaPro: the same seek, filters and encoder settings.
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
           "-ss", "5.000", "-t", "40.000", "-i", src,
           "-map", "0:v:0?", "-map", "0:a:0?", "-vf", "scale=854:480,setsar=1,fps=25",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart", "-f", "mp4", out]
    t = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t


def main():
    svc = launch(workers=[{"queues": "process"}])
    try:
        rel = "uploads/bench/clip.mp4"
        src = os.path.join(svc.storage_root, rel)
        os.makedirs(os.path.dirname(src))
        print("[bench] making a 60 s 1280x720 clip", flush=True)
        make_clip(src, "1280x720", 60)
        out = os.path.join(svc.tmp, "bare.mp4")
        bare_ffmpeg(src, out)  # warm the page cache
        bare, job, ratios = [], [], []
        for i in range(RUNS):
            b = bare_ffmpeg(src, out)
            t = time.monotonic()
            status, accepted = request("POST", svc.url + "/api/process", {"input_file": rel, "operations": OPS})
            assert status == 202, accepted
            task = wait_final(svc, accepted["task_id"], poll=0.05)
            j = time.monotonic() - t
            assert task["status"] == "completed", task
            bare.append(b)
            job.append(j)
            ratios.append(j / b)
            wait = ts(task["started_at"]) - ts(task["created_at"])
            work = ts(task["completed_at"]) - ts(task["started_at"])
            print(f"[bench] run {i + 1}: bare ffmpeg {b:.3f} s, MediaPro job {j:.3f} s "
                  f"(queued {wait * 1000:.0f} ms, worker {work:.3f} s)", flush=True)
        mb, mj = statistics.median(bare), statistics.median(job)
        print(f"[bench] median bare ffmpeg: {mb:.3f} s")
        print(f"[bench] median MediaPro process job (POST to completed): {mj:.3f} s")
        print(f"[bench] ratio of medians job/bare: {mj / mb:.3f} (target <= 1.05)")
        print(f"[bench] median of per-run ratios: {statistics.median(ratios):.3f}")
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
