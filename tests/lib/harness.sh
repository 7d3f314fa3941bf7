# Shell helpers shared by the script tests that boot an isolated API + worker with
# tests/launcher.py (tests/deploy/nginx_test.sh, tests/contract/schemathesis_test.sh).
# Source it after setting:
#   tag        the prefix of log lines, e.g. "nginx_test"
#   root       the repository root
#   redis_url  the Redis the launched services use
#   log_files  the logs (relative to $tmp) `show_logs` prints the end of
# It defines `tmp` (a fresh temporary folder, removed on exit unless KEEP_TMP=1),
# `namespace` (set it to the launcher's Redis namespace; purged on exit) and `pids`
# (append every background process; stopped on exit, last first), and installs the
# EXIT/INT/TERM traps.

log() { printf '[%s] %s\n' "$tag" "$*"; }
die() {
    printf '[%s] ERROR: %s\n' "$tag" "$*" >&2
    exit 2
}

# require_tools <tool...>: each on PATH, or stop with how to get it.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-deps.sh installs it)"
    done
}

# require_binaries <dir>: the API and worker binaries built there.
require_binaries() {
    local b
    for b in mediapro-api mediapro-worker; do
        [[ -x "$1/$b" ]] || die "$1/$b not found: build it first (cargo build --workspace) or set MEDIAPRO_BIN_DIR"
    done
}

require_redis() {
    [[ "$(timeout 3 redis-cli -u "$redis_url" ping 2>/dev/null || true)" == "PONG" ]] ||
        die "Redis at $redis_url does not answer (scripts/ensure-redis.sh starts one)"
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/mediapro-$tag.XXXXXX")"
namespace=""
pids=()

# stop_pid <pid>: SIGTERM, up to 10 s, then SIGKILL; reaps it.
stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[$i]}"
    done
    if [[ -n "$namespace" ]]; then
        python3 "$root/tests/launcher.py" purge-redis --redis-url "$redis_url" --namespace "$namespace" \
            >/dev/null 2>&1 || true
    fi
    if [[ "${KEEP_TMP:-0}" == "1" ]]; then
        log "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show_logs: the last lines of each of log_files that exists, on stderr.
show_logs() {
    local f
    for f in "${log_files[@]}"; do
        [[ -f "$tmp/$f" ]] || continue
        printf -- '--- last lines of %s\n' "$f" >&2
        tail -n 25 "$tmp/$f" >&2 || true
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
