#!/usr/bin/env bash
# One command sets up and runs MediaPro: installs what is missing, makes sure Redis
# answers, builds the release binaries, starts the API (which applies the database
# migrations), waits for it to answer /healthz, then starts a worker on the
# download and process queues. Both run with the repository root as working
# directory, so the default data/ paths land in the repository.
#
# Ctrl-C or SIGTERM stops both; if either process dies, the other is stopped and
# the script exits non-zero.
#
# Settings: defaults, mediapro.toml (or $MEDIAPRO_CONFIG), MEDIAPRO__SECTION__KEY
# variables, e.g. MEDIAPRO__SERVER__BIND=127.0.0.1:5000.
#
# Usage: scripts/run.sh
set -euo pipefail

log() { printf '[run] %s\n' "$*"; }
die() {
    printf '[run] ERROR: %s\n' "$*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash "$root/scripts/install-deps.sh"
bash "$root/scripts/ensure-redis.sh"

log "building release binaries (cargo build --release -p mediapro-api -p mediapro-worker)"
cargo build --release -p mediapro-api -p mediapro-worker

api_bin="$root/target/release/mediapro-api"
worker_bin="$root/target/release/mediapro-worker"
[[ -x "$api_bin" && -x "$worker_bin" ]] || die "release binaries not found in $root/target/release"

bind="${MEDIAPRO__SERVER__BIND:-127.0.0.1:5000}"
bind_host="${bind%:*}"
bind_port="${bind##*:}"
case "$bind_host" in
"" | 0.0.0.0) probe_host="127.0.0.1" ;;
"[::]") probe_host="[::1]" ;;
*) probe_host="$bind_host" ;;
esac
base_url="http://$probe_host:$bind_port"

healthy() { curl -fsS --max-time 1 -o /dev/null "$base_url/healthz" 2>/dev/null; }

if healthy; then
    die "something already answers at $base_url/healthz; stop it or set MEDIAPRO__SERVER__BIND to another address"
fi

api_pid=""
worker_pid=""

# Sends SIGTERM to the children still running, waits for them (the worker drains
# running jobs for up to worker.drain_timeout_seconds, 25 s by default), and kills
# what is left after 40 s.
stop_children() {
    local pid pids=() deadline
    for pid in "$worker_pid" "$api_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    worker_pid=""
    api_pid=""
    [[ ${#pids[@]} -gt 0 ]] || return 0
    log "stopping (pids ${pids[*]}); running jobs may take a moment to drain"
    deadline=$((SECONDS + 40))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop in time; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    log "stopped"
}

# shellcheck disable=SC2317 # invoked by the traps below
on_signal() {
    trap - INT TERM
    log "received SIG$1"
    stop_children
    exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap stop_children EXIT

log "starting mediapro-api on $bind"
"$api_bin" </dev/null &
api_pid=$!

log "waiting for $base_url/healthz"
for _ in $(seq 1 300); do
    if healthy; then
        break
    fi
    if ! kill -0 "$api_pid" 2>/dev/null; then
        status=0
        wait "$api_pid" || status=$?
        api_pid=""
        die "mediapro-api exited during start-up (status $status)"
    fi
    sleep 0.2
done
healthy || die "mediapro-api did not answer $base_url/healthz within 60 s"
log "mediapro-api is up"

log "starting mediapro-worker --queues download,process"
"$worker_bin" --queues download,process </dev/null &
worker_pid=$!

cat <<EOF

  MediaPro is running: $base_url   (health: $base_url/healthz, readiness: $base_url/readyz)
  mediapro-api pid $api_pid, mediapro-worker pid $worker_pid
  Stop both with Ctrl-C, or: kill -TERM $$

EOF

# Wait until a child exits (a signal interrupts this wait and runs on_signal).
status=0
wait -n || status=$?

name="a child process"
if [[ -n "$api_pid" ]] && ! kill -0 "$api_pid" 2>/dev/null; then
    name="mediapro-api"
    api_pid=""
elif [[ -n "$worker_pid" ]] && ! kill -0 "$worker_pid" 2>/dev/null; then
    name="mediapro-worker"
    worker_pid=""
fi
printf '[run] ERROR: %s exited unexpectedly (status %s); stopping the rest\n' "$name" "$status" >&2
stop_children
if [[ "$status" -eq 0 ]]; then
    status=1
fi
exit "$status"
