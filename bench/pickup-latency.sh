#!/usr/bin/env bash
# Benchmark (not a test): job pick-up latency, i.e. how long a download task stays
# "pending" before an idle worker takes it.
#
# Makes sure Redis answers (scripts/ensure-redis.sh), builds the release binaries,
# makes a 2 s clip with ffmpeg and serves it on 127.0.0.1, starts mediapro-api on a
# free port with a temporary SQLite database and storage root and its own Redis
# namespace (bench-<random>, so no other deployment's queue is touched), all from
# `tests/launcher.py env` (settings: tests/isolated.toml), starts one worker on
# the download queue, then runs bench/pickup_latency.py: one warm-up
# round, then ROUNDS (default 20) sequential rounds. Everything it started and
# created (processes, temp dir, the namespace's Redis keys) is removed on exit.
#
# Environment: ROUNDS (default 20), MEDIAPRO__REDIS__URL (default
# redis://127.0.0.1:6379/0); other MEDIAPRO__* variables (e.g.
# MEDIAPRO__REDIS__POLL_INTERVAL_MS) are passed through to the API and worker
# (`tests/launcher.py env --inherit`). MEDIAPRO_BIN_DIR / CARGO_TARGET_DIR: where
# the release binaries are.
#
# Usage: bench/pickup-latency.sh
set -euo pipefail

log() { printf '[bench] %s\n' "$*"; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

rounds="${ROUNDS:-20}"
redis_url="${MEDIAPRO__REDIS__URL:-redis://127.0.0.1:6379/0}"
namespace="" # set by tests/launcher.py below
tmp="$(mktemp -d "${TMPDIR:-/tmp}/mediapro-bench.XXXXXX")"
pids=()

cleanup() {
    local rc=$? pid i deadline
    trap - EXIT INT TERM
    # Stop in reverse start order: worker, API, HTTP server.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 30))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for f in api worker; do
            if [[ -s "$tmp/$f.log" ]]; then
                printf '[bench] last lines of the %s log:\n' "$f" >&2
                tail -n 15 "$tmp/$f.log" >&2 || true
            fi
        done
    fi
    if [[ -n "$namespace" ]]; then
        python3 "$root/tests/launcher.py" purge-redis --redis-url "$redis_url" --namespace "$namespace" \
            >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    log "cleaned up (processes, $tmp, Redis keys $namespace:*)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in ffmpeg python3 curl cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run scripts/install-deps.sh first"
done

MEDIAPRO__REDIS__URL="$redis_url" bash "$root/scripts/ensure-redis.sh"

log "building release binaries"
cargo build --release -p mediapro-api -p mediapro-worker
bin_dir="$(python3 "$root/tests/launcher.py" bin-dir --profile release)"
api_bin="$bin_dir/mediapro-api"
worker_bin="$bin_dir/mediapro-worker"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for <what> <url> <pid>: polls the URL for up to 30 s while the process lives.
wait_for() {
    local what="$1" url="$2" pid="$3"
    for _ in $(seq 1 300); do
        if curl -fsS --max-time 1 -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$what exited during start-up"
        sleep 0.1
    done
    die "$what did not answer $url within 30 s"
}

log "making a 2 s test clip with ffmpeg"
mkdir -p "$tmp/www" "$tmp/media"
ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine=frequency=440 -t 2 \
    -c:v libx264 -preset ultrafast -c:a aac -shortest "$tmp/www/clip.mp4"

http_port="$(free_port)"
python3 -m http.server "$http_port" --bind 127.0.0.1 --directory "$tmp/www" \
    </dev/null >"$tmp/http.log" 2>&1 &
pids+=($!)
clip_url="http://127.0.0.1:$http_port/clip.mp4"
wait_for "the clip HTTP server" "$clip_url" "${pids[-1]}"
log "serving $clip_url"

# The instance's settings: tests/isolated.toml, the inherited MEDIAPRO__* variables,
# no API keys, and a free port, the Redis namespace, a SQLite file and storage
# root in $tmp. (Assigned first: a failure inside `eval "$(...)"` would be lost.)
launch_env="$(python3 "$root/tests/launcher.py" env --tmp "$tmp" --name bench --redis-url "$redis_url" \
    --inherit --set security.api_keys=)"
eval "$launch_env"
namespace="$MEDIAPRO__REDIS__NAMESPACE"
api_url="http://$MEDIAPRO__SERVER__BIND"

# The children run in the temp dir, so no mediapro.toml of the repository is read.
log "starting mediapro-api on $MEDIAPRO__SERVER__BIND (namespace $namespace)"
(cd "$tmp" && exec "$api_bin") </dev/null >"$tmp/api.log" 2>&1 &
pids+=($!)
wait_for "mediapro-api" "$api_url/readyz" "${pids[-1]}"

log "starting one mediapro-worker --queues download"
(cd "$tmp" && exec "$worker_bin" --queues download) </dev/null >"$tmp/worker.log" 2>&1 &
pids+=($!)

log "worker: woken on push; polls every ${MEDIAPRO__REDIS__POLL_INTERVAL_MS:-50} ms when busy, every ${MEDIAPRO__REDIS__IDLE_POLL_INTERVAL_MS:-2000} ms when idle; $rounds rounds"
python3 "$root/bench/pickup_latency.py" --api "$api_url" --clip-url "$clip_url" --rounds "$rounds"
