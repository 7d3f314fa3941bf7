#!/usr/bin/env bash
# Makes sure the Redis at MEDIAPRO__REDIS__URL (default redis://127.0.0.1:6379/0)
# answers. If it does not and the URL points at this machine (127.0.0.1 or
# localhost), starts a local redis-server (daemonized, AOF persistence under
# <repo>/data/redis) and waits up to 10 s for it. A remote Redis is never started:
# the script fails saying it is unreachable.
#
# Usage: scripts/ensure-redis.sh
set -euo pipefail

log() { printf '[ensure-redis] %s\n' "$*"; }
die() {
    printf '[ensure-redis] ERROR: %s\n' "$*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
url="${MEDIAPRO__REDIS__URL:-redis://127.0.0.1:6379/0}"

command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found; run scripts/install-deps.sh first"

ping() {
    local answer
    answer="$(timeout 3 redis-cli -u "$url" ping 2>/dev/null || true)"
    [[ "$answer" == "PONG" ]]
}

if ping; then
    log "Redis at $url answers PONG: nothing to do"
    exit 0
fi

# Parse host and port: scheme://[user[:password]@]host[:port][/db][?query]
case "$url" in
redis://*) rest="${url#redis://}" ;;
*) die "the configured Redis ($url) is unreachable, and only a redis:// URL can be started locally" ;;
esac
rest="${rest%%[/?]*}" # drop /db and ?query
rest="${rest##*@}"    # drop user:password@
host="${rest%%:*}"
port="6379"
if [[ "$rest" == *:* ]]; then
    port="${rest##*:}"
fi
[[ -n "$host" ]] || host="127.0.0.1"
[[ "$port" =~ ^[0-9]+$ ]] || die "cannot read a port from the Redis URL $url"

if [[ "$host" != "127.0.0.1" && "$host" != "localhost" ]]; then
    die "the configured Redis at $url is unreachable (host '$host' is not local, so it is not started here)"
fi

command -v redis-server >/dev/null 2>&1 || die "redis-server not found; run scripts/install-deps.sh first"

dir="$root/data/redis"
mkdir -p "$dir"
log "Redis at $url does not answer; starting a local redis-server on 127.0.0.1:$port (data in $dir)"
redis-server --daemonize yes --port "$port" --bind 127.0.0.1 --appendonly yes \
    --dir "$dir" --maxmemory-policy noeviction \
    --logfile "$dir/redis-server.log" --pidfile "$dir/redis-server.pid" >/dev/null ||
    die "redis-server failed to start (see $dir/redis-server.log)"

for _ in $(seq 1 50); do
    if ping; then
        log "local redis-server is up on 127.0.0.1:$port (log: $dir/redis-server.log)"
        exit 0
    fi
    sleep 0.2
done

if [[ -f "$dir/redis-server.log" ]]; then
    tail -n 20 "$dir/redis-server.log" >&2 || true
fi
die "started redis-server on 127.0.0.1:$port but it did not answer PONG within 10 s (log: $dir/redis-server.log)"
