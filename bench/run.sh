#!/usr/bin/env bash
# Benchmarks (they print figures; they are not tests). Builds the release binaries,
# makes sure Redis answers, then runs: pick-up latency, process-job overhead vs bare
# ffmpeg, API memory during a 200 MB upload, idle RSS of both binaries, and the
# delay before a SIGKILLed worker's job re-runs elsewhere (default settings), HTTP
# throughput of enqueue and status with wrk, 1,000 event-stream clients, and the
# task list on 1,000,000 tasks (SQLite and PostgreSQL), and yt-dlp through the warm
# host vs bare yt-dlp (analyze and download), analyze and download jobs through the
# API and worker with the warm host on and off vs bare yt-dlp, and an idle worker's CPU
# with its pick-up latency and a download job's steps, wake-on-push vs fast polling,
# the API's RSS while it streams a large collection's ZIP, and task status latency
# while a 10,000-entry collection expands.
# Usage: bench/run.sh [pickup|process|upload|idle|idle-cpu|orphan|http|http-metrics|events|list|ythost|warm-jobs|zip-rss|expand-latency]...
# (default: all but http-metrics, the metrics on/off comparison)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/ensure-redis.sh
cargo build --release -p mediapro-api -p mediapro-worker
which=("$@")
[[ ${#which[@]} -gt 0 ]] || which=(pickup process upload idle idle-cpu orphan http events list ythost warm-jobs zip-rss expand-latency)
for b in "${which[@]}"; do
    case "$b" in
        pickup) bash bench/pickup-latency.sh ;;
        process) python3 bench/process_overhead.py ;;
        upload) python3 bench/upload_rss.py ;;
        idle) python3 bench/idle_rss.py ;;
        idle-cpu) python3 bench/idle_cpu.py ;;
        orphan) python3 bench/orphan_delay.py ;;
        http) python3 bench/http_throughput.py ;;
        http-metrics) python3 bench/http_throughput.py metrics ;;
        events) python3 bench/event_clients.py ;;
        list) bash bench/list_bench.sh ;;
        ythost) python3 bench/ythost_bench.py ;;
        warm-jobs) python3 bench/warm_jobs.py ;;
        zip-rss) python3 bench/zip_rss.py ;;
        expand-latency) python3 bench/expand_latency.py ;;
        *) echo "unknown benchmark $b" >&2; exit 2 ;;
    esac
done
