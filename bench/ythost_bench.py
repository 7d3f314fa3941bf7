"""Benchmark: yt-dlp through the warm, forking host (crates/mediapro-core/ythost/)
against bare yt-dlp, on a local fixture (a 10 s clip served on 127.0.0.1).

- analyze: the argv of `POST /api/analyze` (`--dump-single-json`) for a URL not
  seen before (a fresh query string per run), through the host vs the bare CLI;
- download: the argv of a download job of the clip into a fresh folder.

Both sides get the environment the Rust runner gives a child. Interleaved (the
side that goes first alternates), median of RUNS (default 10) each. Prints both
medians and the ratio host/bare, plus what the host costs: start-up with
warm-up, and its idle RSS. This measures the host alone, not a job end to end
through the API and worker (the Rust client is not wired in yet).

Usage: python3 bench/ythost_bench.py"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "crates", "mediapro-core", "ythost"))

from testkit import (FixtureServer, HostProcess, Job, analyze_argv, child_env, download_argv,  # noqa: E402
                     make_clip, run_cli, ytdlp_cli)

RUNS = int(os.environ.get("RUNS", "10"))


def timed(fn):
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def check(ok, what):
    if not ok:
        raise SystemExit(f"bench run failed: {what}")


def main():
    work = tempfile.mkdtemp(prefix="ythost-bench-")
    home = os.path.join(work, "home")
    os.mkdir(home, 0o700)
    media = os.path.join(work, "media")
    os.mkdir(media)
    make_clip(os.path.join(media, "clip.mp4"), 10)
    server = FixtureServer(media)
    env = child_env(home)
    started = time.monotonic()
    host = HostProcess()
    host_start = time.monotonic() - started
    try:
        def host_analyze():
            job = Job(host.socket, analyze_argv(f"{server.url}/clip.mp4?u={uuid.uuid4().hex}"), env).finish()
            check(job.exit["code"] == 0 and job.stdout.startswith("{"), job.stderr)

        def bare_analyze():
            run = run_cli(analyze_argv(f"{server.url}/clip.mp4?u={uuid.uuid4().hex}"), env)
            check(run.returncode == 0 and run.stdout.startswith("{"), run.stderr)

        def host_download():
            out = tempfile.mkdtemp(dir=work)
            job = Job(host.socket, download_argv(f"{server.url}/clip.mp4", out), env, cwd=out).finish()
            check(job.exit["code"] == 0 and "MPFILE " in job.stdout, job.stderr)
            shutil.rmtree(out)

        def bare_download():
            out = tempfile.mkdtemp(dir=work)
            run = run_cli(download_argv(f"{server.url}/clip.mp4", out), env, cwd=out)
            check(run.returncode == 0 and "MPFILE " in run.stdout, run.stderr)
            shutil.rmtree(out)

        idle_rss_kib = host.ready["rss_kib"]
        figures = {}
        for name, warm, bare in (("analyze", host_analyze, bare_analyze), ("download", host_download, bare_download)):
            warm_times, bare_times = [], []
            for i in range(RUNS):
                pair = [(warm, warm_times), (bare, bare_times)]
                for fn, times in pair if i % 2 == 0 else reversed(pair):
                    times.append(timed(fn))
            figures[name] = (statistics.median(warm_times), statistics.median(bare_times))

        print(f"yt-dlp {host.ready['yt_dlp']} (bare: {ytdlp_cli()}), Python {host.ready['python']}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, median of {RUNS}, interleaved")
        print(f"host start-up incl. warm-up: {host_start:.2f} s  (warm-up {host.ready['warmup']}); "
              f"idle host RSS: {idle_rss_kib / 1024:.1f} MiB")
        for name, label in (("analyze", "analyze, new URL (--dump-single-json)"),
                            ("download", "download of the 10 s clip")):
            warm, bare = figures[name]
            print(f"{label:40s} host {warm:6.3f} s   bare {bare:6.3f} s   ratio {warm / bare:.2f}x")
    finally:
        host.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
