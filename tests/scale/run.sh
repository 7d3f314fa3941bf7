#!/usr/bin/env bash
# Scale test (CI): MediaPro run by supervisord from the repository's supervisor/
# definitions, with 2 download + 2 process worker processes, real Redis and
# PostgreSQL (or SQLite), a batch of downloads and processings, and a worker
# killed with SIGKILL mid-job whose task must still complete.
#
# Installs nothing and builds nothing: it needs supervisord + supervisorctl
# (Debian package `supervisor`, see scripts/install-deps.sh), ffmpeg/ffprobe,
# yt-dlp, python3, redis-cli, curl, psql (PostgreSQL only), and the binaries
# mediapro-api and mediapro-worker, e.g. from `cargo build --workspace`.
#
# What it does: makes sure the test Redis answers (scripts/ensure-redis.sh), makes
# clips with ffmpeg and serves them with `python3 -m http.server` on 127.0.0.1,
# creates a throwaway PostgreSQL database mediapro_scale_<random> (or a temporary
# SQLite file), starts supervisord (daemonized, pid file, socket and logs in a
# temporary directory) with supervisor/supervisord.conf, then runs
# tests/scale/scale_test.py, which prints a PASS/FAIL summary. On exit (also on
# failure or Ctrl-C) it shuts supervisord down, kills what is left of the
# processes it started, drops the database, deletes the Redis keys of its
# namespace and removes the temporary directory.
#
# Environment:
#   MEDIAPRO_BIN_DIR         binaries (default <CARGO_TARGET_DIR or target>/debug; the
#                            first argument wins)
#   MEDIAPRO_TEST_REDIS_URL  Redis (default redis://127.0.0.1:6379/15); the keys go
#                            under a random namespace scale-<random>
#   MEDIAPRO_TEST_PG_URL     PostgreSQL server to create the throwaway database on,
#                            e.g. postgres://postgres@127.0.0.1:5432/test; unset =
#                            a temporary SQLite file
#   MEDIAPRO_SCALE_KEEP=1    keep the temporary directory (logs) after a failure
# Inherited MEDIAPRO__* settings and MEDIAPRO_CONFIG are ignored: supervisord and
# its programs get MEDIAPRO_CONFIG=tests/isolated.toml (fast fault recovery:
# heartbeat 1 s x 3, lease 3 s) and the per-instance keys from
# `tests/launcher.py env`, with the default task timeout (the killed 60 s job
# re-runs from the start on a busy machine). RUST_LOG is passed through.
#
# Usage: tests/scale/run.sh [BIN_DIR]
set -euo pipefail

log() { printf '[scale] %s\n' "$*"; }
die() {
    printf '[scale] ERROR: %s\n' "$*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# --- binaries ---------------------------------------------------------------------
bin_dir="${1:-$(python3 "$root/tests/launcher.py" bin-dir --profile debug)}"
[[ -d "$bin_dir" ]] || die "binaries directory '$bin_dir' does not exist; build first (cargo build --workspace) or pass the directory holding mediapro-api and mediapro-worker"
bin_dir="$(cd "$bin_dir" && pwd)"
for b in mediapro-api mediapro-worker; do
    [[ -x "$bin_dir/$b" ]] || die "$bin_dir/$b is missing or not executable; build first (cargo build --workspace, or cargo build --release -p mediapro-api -p mediapro-worker and pass target/release)"
done

# --- tools --------------------------------------------------------------------------
missing=()
for tool in supervisord supervisorctl ffmpeg ffprobe yt-dlp python3 redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
pg_url="${MEDIAPRO_TEST_PG_URL:-}"
if [[ -n "$pg_url" ]] && ! command -v psql >/dev/null 2>&1; then
    missing+=(psql)
fi
[[ ${#missing[@]} -eq 0 ]] || die "not found: ${missing[*]} (scripts/install-deps.sh installs all but psql; psql is Debian package postgresql-client)"

redis_url="${MEDIAPRO_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
MEDIAPRO__REDIS__URL="$redis_url" bash "$root/scripts/ensure-redis.sh"

# --- state that the cleanup removes -------------------------------------------------
rand="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
namespace="" # set by tests/launcher.py below
# Short path: the supervisord socket path must stay under ~100 bytes.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/mediapro-scale.XXXXXX")"
conf="$root/supervisor/supervisord.conf"
http_pid=""
test_pid=""
pg_db=""
supervisord_started=0

# pids_of_ours: processes this run started that may outlive supervisord: anything
# carrying our Redis namespace in its environment (API, workers), or our temp dir
# on its command line (ffmpeg, yt-dlp, the clip server). Prints them on one line.
pids_of_ours() {
    python3 - "${namespace:-no namespace yet}" "$tmp/" <<'PY'
import os, sys
env_tag = ("MEDIAPRO__REDIS__NAMESPACE=" + sys.argv[1]).encode()
path = sys.argv[2].encode()
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) in (os.getpid(), os.getppid()):
        continue
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        continue
    if not zombie and (env_tag in environ or path in cmdline):
        found.append(pid)
print(" ".join(found))
PY
}

cleanup() {
    local rc=$? pid deadline left f
    trap - EXIT INT TERM
    set +e
    if [[ -n "$test_pid" ]] && kill -0 "$test_pid" 2>/dev/null; then
        kill -TERM "$test_pid" 2>/dev/null
        wait "$test_pid" 2>/dev/null
    fi
    if [[ $supervisord_started -eq 1 ]]; then
        pid="$(cat "$tmp/run/supervisord.pid" 2>/dev/null)"
        log "stopping supervisord${pid:+ (pid $pid)}: supervisorctl shutdown"
        supervisorctl -c "$conf" shutdown >/dev/null 2>&1
        # Workers drain up to 25 s and get stopwaitsecs=30, the API 35.
        deadline=$((SECONDS + 45))
        while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            log "supervisord still running after 45 s: SIGKILL $pid"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    if [[ -n "$http_pid" ]]; then
        kill -TERM "$http_pid" 2>/dev/null
        wait "$http_pid" 2>/dev/null
    fi
    # Not in a pipeline: its other commands would carry our environment too.
    left="$(pids_of_ours)"
    if [[ -n "$left" ]]; then
        log "killing leftover processes of this run: $left"
        # shellcheck disable=SC2086 # a list of pids
        kill -KILL $left 2>/dev/null
        sleep 0.5
    fi
    if [[ $rc -ne 0 && -d "$tmp/logs" ]]; then
        for f in "$tmp"/logs/*.log; do
            [[ -s "$f" ]] || continue
            printf '[scale] ---- last lines of %s ----\n' "${f#"$tmp"/}" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [[ -n "$pg_db" ]]; then
        if psql "$pg_url" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 ||
            psql "$pg_url" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $pg_db" >/dev/null; then
            log "dropped PostgreSQL database $pg_db"
        else
            log "WARNING: could not drop PostgreSQL database $pg_db"
        fi
    fi
    if [[ -n "$namespace" ]]; then
        python3 "$root/tests/launcher.py" purge-redis --redis-url "$redis_url" --namespace "$namespace" >/dev/null 2>&1
    fi
    local kept="$tmp"
    if [[ $rc -ne 0 && "${MEDIAPRO_SCALE_KEEP:-0}" == 1 ]]; then
        log "kept $tmp (MEDIAPRO_SCALE_KEEP=1): logs in $tmp/logs"
        kept=""
    else
        rm -rf "$tmp"
    fi
    log "cleaned up (supervisord and its programs, clip server, Redis keys $namespace:*${pg_db:+, database $pg_db}${kept:+, $kept})"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

mkdir -p "$tmp/www" "$tmp/home" "$tmp/media" "$tmp/logs" "$tmp/run"

# --- database -----------------------------------------------------------------------
if [[ -n "$pg_url" ]]; then
    pg_db="mediapro_scale_$rand"
    log "creating PostgreSQL database $pg_db on $pg_url"
    psql "$pg_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $pg_db" >/dev/null ||
        {
            pg_db=""
            die "could not create database on $pg_url"
        }
    db_url="$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$pg_url" "$pg_db")"
    db_kind="PostgreSQL ($db_url)"
else
    db_url="sqlite://$tmp/home/mediapro.db"
    db_kind="SQLite ($tmp/home/mediapro.db; MEDIAPRO_TEST_PG_URL is not set, so PostgreSQL is not tested)"
fi
log "task store: $db_kind"

# --- clips and their HTTP server ------------------------------------------------------
make_clip() { # make_clip <file> <WxH> <seconds>
    ffmpeg -hide_banner -loglevel error -nostdin -y \
        -f lavfi -i "testsrc2=size=$2:rate=25" -f lavfi -i sine=frequency=440 -t "$3" \
        -c:v libx264 -preset ultrafast -c:a aac -shortest "$tmp/www/$1"
}
log "making clips with ffmpeg"
make_clip clip-640x360-20s.mp4 640x360 20
make_clip clip-1280x720-6s.mp4 1280x720 6
make_clip long-640x360-60s.mp4 640x360 60

http_port="$(free_port)"
python3 -m http.server "$http_port" --bind 127.0.0.1 --directory "$tmp/www" \
    </dev/null >"$tmp/logs/http-server.txt" 2>&1 &
http_pid=$!
clip_base="http://127.0.0.1:$http_port"
for _ in $(seq 1 100); do
    curl -fsS --max-time 1 -o /dev/null "$clip_base/long-640x360-60s.mp4" 2>/dev/null && break
    kill -0 "$http_pid" 2>/dev/null || die "the clip HTTP server exited"
    sleep 0.1
done
curl -fsS --max-time 1 -o /dev/null "$clip_base/long-640x360-60s.mp4" || die "the clip HTTP server does not answer on $clip_base"
log "serving clips on $clip_base"

# --- supervisord --------------------------------------------------------------------
api_port="$(free_port)"
api_url="http://127.0.0.1:$api_port"

# Read by supervisor/*.conf.
export MEDIAPRO_BIN_DIR="$bin_dir"
export MEDIAPRO_HOME="$tmp/home"
export MEDIAPRO_LOG_DIR="$tmp/logs"
export MEDIAPRO_RUN_DIR="$tmp/run"
export MEDIAPRO_DOWNLOAD_WORKERS=2
export MEDIAPRO_PROCESS_WORKERS=2
# Inherited by every program supervisord starts: tests/launcher.py unsets the
# inherited MEDIAPRO__* variables and exports MEDIAPRO_CONFIG (tests/isolated.toml)
# and the instance's keys; storage root $tmp/media. Assigned first: a failure
# inside `eval "$(...)"` would be lost.
launch_env="$(python3 "$root/tests/launcher.py" env --tmp "$tmp" --name scale --port "$api_port" \
    --redis-url "$redis_url" --database-url "$db_url" --default limits.task_timeout_seconds)"
eval "$launch_env"
namespace="$MEDIAPRO__REDIS__NAMESPACE"

log "starting supervisord -c supervisor/supervisord.conf (API on $api_url, 2 download + 2 process workers, namespace $namespace, run dir $tmp/run)"
supervisord -c "$conf" || die "supervisord did not start (exit $?)"
supervisord_started=1
for _ in $(seq 1 100); do
    [[ -s "$tmp/run/supervisord.pid" ]] && break
    sleep 0.1
done
[[ -s "$tmp/run/supervisord.pid" ]] || die "supervisord wrote no pid file ($tmp/run/supervisord.pid)"
log "supervisord pid $(cat "$tmp/run/supervisord.pid")"

# In the background + wait, so that a SIGTERM/SIGINT to this script runs the
# cleanup at once (bash runs traps only between foreground commands).
python3 "$root/tests/scale/scale_test.py" \
    --api "$api_url" \
    --clip-base "$clip_base" \
    --storage-root "$tmp/media" \
    --supervisor-conf "$conf" \
    --redis-url "$redis_url" \
    --namespace "$namespace" \
    --db "$db_kind" </dev/null &
test_pid=$!
wait "$test_pid"
