#!/usr/bin/env bash
# Runs docker/nginx.conf (Debian's nginx, as a child of this script) in front of a
# real mediapro-api + mediapro-worker (--queues process) and checks that answers
# through nginx are the API's own: health, JSON errors, uploads (also chunked
# and over 1 MiB), a processed result's bytes and headers, Range and If-Range,
# and the web UI at /. Never touches the system nginx service.
#
# Needs: nginx (apt-get install -y nginx), curl, ffmpeg/ffprobe, python3,
# redis-cli and a Redis answering at MEDIAPRO_TEST_REDIS_URL; the binaries built.
#
# The API and worker get their settings from tests/launcher.py (tests/isolated.toml,
# a free port, a temporary SQLite store and storage root, a random Redis namespace)
# plus worker.drain_timeout_seconds=5 for a quick shutdown.
#
# Environment:
#   MEDIAPRO_BIN_DIR         mediapro-api and mediapro-worker (default
#                            <CARGO_TARGET_DIR or repo/target>/debug)
#   MEDIAPRO_TEST_REDIS_URL  Redis to use (default redis://127.0.0.1:6379/15); keys
#                            go under a random namespace, deleted at exit
#   NGINX                    nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   NGINX_CONF_TEMPLATE      the config to test (default <repo>/docker/nginx.conf)
#   KEEP_TMP=1               keep the temporary directory (logs, configs)
#
# Prints one PASS/FAIL line per check and "nginx_test: N passed, N failed"; exits
# non-zero if a check failed (2 if something needed is missing).
#
# Usage: tests/deploy/nginx_test.sh
# shellcheck disable=SC2015 # `cond && pass || fail`: pass never fails
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="$(python3 "$root/tests/launcher.py" bin-dir --profile debug)"
redis_url="${MEDIAPRO_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
template="${NGINX_CONF_TEMPLATE:-$root/docker/nginx.conf}"
tag=nginx_test
log_files=(api.log worker.log nginx/error.log)
# shellcheck source=tests/lib/harness.sh
source "$root/tests/lib/harness.sh"

passed=0
failed=0
# pass never fails, so in `cond && pass || fail` fail runs exactly when cond is false.
pass() {
    printf 'PASS  %s\n' "$*"
    passed=$((passed + 1))
}
fail() {
    printf 'FAIL  %s\n' "$*"
    failed=$((failed + 1))
}
# Checks read `[[ condition ]] && pass "what" || fail "what"` (see pass).

# --- prerequisites ---------------------------------------------------------------
nginx_bin="${NGINX:-$(command -v nginx || true)}"
if [[ -z "$nginx_bin" && -x /usr/sbin/nginx ]]; then
    nginx_bin=/usr/sbin/nginx # not on a non-root user's PATH
fi
[[ -n "$nginx_bin" && -x "$nginx_bin" ]] || die "nginx not found: install it with 'apt-get install -y nginx' (the service is not used)"
require_tools curl ffmpeg ffprobe python3 redis-cli
require_binaries "$bin_dir"
[[ -f "$template" ]] || die "$template not found"
require_redis

# --- temporary world (tests/lib/harness.sh made $tmp and cleans up) -------------------
# nginx's worker processes run as an unprivileged user when this runs as root:
# they must be able to reach the web root and their temporary directories.
chmod 0755 "$tmp"

# json_get <file> <key>: a top-level field of a JSON object ("" if absent or null).
json_get() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2])
except Exception:
    v = None
print("" if v is None else v)
EOF
}

# header <dump file> <name>: the last value of a response header (curl -D).
header() {
    tr -d '\r' <"$1" | awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$2")" '
        BEGIN { FS = ": " }
        { k = tolower($1); if (k == n) { v = substr($0, length($1) + 3) } }
        END { print v }'
}

# fetch <name> <url> [curl args...]: body to $tmp/r/<name>.body, headers to
# <name>.head, the status code printed.
mkdir -p "$tmp/r"
fetch() {
    local name="$1" url="$2"
    shift 2
    curl -sS --max-time 60 -o "$tmp/r/$name.body" -D "$tmp/r/$name.head" -w '%{http_code}' "$@" "$url" || true
}

# --- the API and a process worker ------------------------------------------------------------
mkdir -p "$tmp/run"
# Only this test's settings: tests/launcher.py unsets inherited MEDIAPRO__*
# variables and exports MEDIAPRO_CONFIG (tests/isolated.toml) and the instance's
# keys; no mediapro.toml is read (the working directory is an empty folder).
# Assigned first: a failure inside `eval "$(...)"` would be lost.
launch_env="$(python3 "$root/tests/launcher.py" env --tmp "$tmp" --name mediapro-nginx-test \
    --redis-url "$redis_url" --set worker.drain_timeout_seconds=5)"
eval "$launch_env"
namespace="$MEDIAPRO__REDIS__NAMESPACE"
api_port="${MEDIAPRO__SERVER__BIND##*:}"
api="http://127.0.0.1:$api_port"
export RUST_LOG="${RUST_LOG:-info}"

log "mediapro-api on $api (binaries from $bin_dir, Redis $redis_url namespace $namespace)"
(cd "$tmp/run" && exec "$bin_dir/mediapro-api") >"$tmp/api.log" 2>&1 &
api_pid=$!
pids+=("$api_pid")
for _ in $(seq 1 300); do
    if curl -fsS --max-time 2 -o /dev/null "$api/healthz" 2>/dev/null; then break; fi
    if ! kill -0 "$api_pid" 2>/dev/null; then
        show_logs
        die "mediapro-api exited during start-up"
    fi
    sleep 0.2
done
curl -fsS --max-time 2 -o /dev/null "$api/healthz" || {
    show_logs
    die "mediapro-api did not answer /healthz within 60 s"
}

(cd "$tmp/run" && exec "$bin_dir/mediapro-worker" --queues process) >"$tmp/worker.log" 2>&1 &
pids+=("$!")

# --- nginx with docker/nginx.conf ----------------------------------------------------------------
nginx_port="$(free_port)"
ngx="http://127.0.0.1:$nginx_port"
prefix="$tmp/nginx"
mkdir -p "$prefix"
chmod 0755 "$prefix"

# The three lines docker/nginx.conf marks "# @ci ...": each must be there exactly once.
for marker in upstream listen; do
    n="$(grep -c "# @ci $marker\$" "$template" || true)"
    [[ "$n" == "1" ]] || die "docker/nginx.conf must have exactly one line marked '# @ci $marker' (found $n)"
done
sed -e "s|^\([[:space:]]*\)server [^;]*; # @ci upstream\$|\1server 127.0.0.1:$api_port;|" \
    -e "s|^\([[:space:]]*\)listen [^;]*; # @ci listen\$|\1listen 127.0.0.1:$nginx_port;|" \
    "$template" >"$prefix/mediapro.conf"
if grep -q '# @ci' "$prefix/mediapro.conf"; then
    die "could not substitute the '# @ci' lines of docker/nginx.conf (is each 'server|listen|root VALUE; # @ci NAME'?)"
fi

user_line=""
if [[ "$(id -u)" -eq 0 ]]; then
    user_line="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
fi
mime_line="include /etc/nginx/mime.types;"
[[ -f /etc/nginx/mime.types ]] || mime_line="types { text/html html; application/javascript js; text/css css; }"
# A minimal main configuration around the snippet, like the nginx image's own
# nginx.conf that includes conf.d/*.conf inside http { }.
cat >"$prefix/nginx.conf" <<EOF
$user_line
worker_processes 1;
error_log $prefix/error.log info;
events { worker_connections 256; }
http {
    $mime_line
    default_type application/octet-stream;
    access_log $prefix/access.log;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    include $prefix/mediapro.conf;
}
EOF
nginx_args=(-p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g "daemon off; pid $prefix/nginx.pid;")

if "$nginx_bin" -t -q "${nginx_args[@]}" 2>"$tmp/nginx-t.log"; then
    pass "nginx -t accepts docker/nginx.conf ($("$nginx_bin" -v 2>&1 | sed 's/.*: //'))"
else
    cat "$tmp/nginx-t.log" >&2
    fail "nginx -t accepts docker/nginx.conf"
    exit 1
fi
"$nginx_bin" "${nginx_args[@]}" 2>>"$prefix/error.log" &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 1 100); do
    if curl -sS --max-time 2 -o /dev/null "$ngx/" 2>/dev/null; then break; fi
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
        show_logs
        die "nginx exited during start-up"
    fi
    sleep 0.1
done
log "nginx on $ngx -> $api"

# --- (a) health through nginx -----------------------------------------------------------------
for path in /healthz /readyz; do
    name="${path#/}"
    d="$(fetch "$name-direct" "$api$path")"
    n="$(fetch "$name-nginx" "$ngx$path")"
    what="GET $path through nginx: $n (direct $d), same body: $(head -c 80 "$tmp/r/$name-nginx.body")"
    [[ "$n" == 200 && "$d" == 200 ]] && cmp -s "$tmp/r/$name-nginx.body" "$tmp/r/$name-direct.body" &&
        pass "$what" || fail "$what"
done

# --- (b) API answers (errors included) are passed through unchanged ---------------------------
task_id="$(cat /proc/sys/kernel/random/uuid)"
same_answer() {
    # same_answer <label> <path> [curl args...]: same status, Content-Type and body.
    local label="$1" path="$2" f d n
    shift 2
    f="$(tr -c 'A-Za-z0-9\n' '_' <<<"$label")"
    d="$(fetch "$f-direct" "$api$path" "$@")"
    n="$(fetch "$f-nginx" "$ngx$path" "$@")"
    if [[ "$d" == "$n" && "$d" != 000 ]] && cmp -s "$tmp/r/$f-direct.body" "$tmp/r/$f-nginx.body" &&
        [[ "$(header "$tmp/r/$f-nginx.head" content-type)" == "$(header "$tmp/r/$f-direct.head" content-type)" ]]; then
        pass "$label: same status ($n), Content-Type and body through nginx as direct: $(head -c 100 "$tmp/r/$f-nginx.body")"
    else
        fail "$label: nginx $n vs direct $d; bodies: $(head -c 100 "$tmp/r/$f-nginx.body") | $(head -c 100 "$tmp/r/$f-direct.body")"
    fi
    last_status="$n"
    last_body="$tmp/r/$f-nginx.body"
}
same_answer "GET /api/tasks/<random uuid>" "/api/tasks/$task_id"
what="GET /api/tasks/<random uuid> is a 404 with a JSON error code ($last_status, code $(json_get "$last_body" code))"
[[ "$last_status" == 404 && -n "$(json_get "$last_body" code)" ]] && pass "$what" || fail "$what"
same_answer "GET /api/tasks/<uuid>/events (SSE location)" "/api/tasks/$task_id/events"
same_answer "GET /api/events (SSE location)" "/api/events"
same_answer "POST /api/analyze with a refused URL" "/api/analyze" \
    -H 'content-type: application/json' --data '{"url": "file:///etc/passwd"}'
same_answer "GET /api/no-such-route" "/api/no-such-route"

# --- (c) uploads, processing, download-result with Range ----------------------------------------
clip="$tmp/clip.mp4"
ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i sine -t 3 \
    -c:v libx264 -preset ultrafast -c:a aac -shortest "$clip"
clip_size="$(stat -c %s "$clip")"

code="$(fetch upload "$ngx/api/uploads?filename=clip.mp4" --data-binary @"$clip")"
input_file="$(json_get "$tmp/r/upload.body" input_file)"
size_bytes="$(json_get "$tmp/r/upload.body" size_bytes)"
what="POST /api/uploads through nginx ($clip_size bytes): $code, input_file $input_file"
[[ "$code" == 201 && -n "$input_file" && "$size_bytes" == "$clip_size" ]] && pass "$what" || fail "$what"
what="the upload reached the storage root byte for byte"
[[ -n "$input_file" ]] && cmp -s "$clip" "$tmp/media/$input_file" && pass "$what" || fail "$what"

# A request body sent chunked (no Content-Length) is streamed on as it arrives.
code="$(fetch upload-chunked "$ngx/api/uploads?filename=chunked.mp4" -H 'Transfer-Encoding: chunked' --data-binary @"$clip")"
got="$(json_get "$tmp/r/upload-chunked.body" size_bytes)"
what="chunked POST /api/uploads through nginx: $code, size_bytes $got"
[[ "$code" == 201 && "$got" == "$clip_size" ]] && pass "$what" || fail "$what"

# Bodies over nginx's 1 MiB default reach the API on /api/uploads (5g there):
# 3 MiB that are not media must get the API's JSON refusal, not nginx's 413 ...
head -c $((3 * 1024 * 1024)) /dev/urandom >"$tmp/junk.bin"
code="$(fetch upload-junk "$ngx/api/uploads?filename=junk.mp4" --data-binary @"$tmp/junk.bin")"
what="3 MiB non-media upload through nginx reaches the API: $code $(head -c 100 "$tmp/r/upload-junk.body")"
[[ "$code" =~ ^4[0-9][0-9]$ && "$code" != 413 && -n "$(json_get "$tmp/r/upload-junk.body" code)" ]] &&
    pass "$what" || fail "$what"
# ... while the other API paths keep nginx's 1 MiB limit.
code="$(fetch big-json "$ngx/api/download" -H 'content-type: application/json' --data-binary @"$tmp/junk.bin")"
what="3 MiB body to /api/download is refused by nginx: $code"
[[ "$code" == 413 ]] && pass "$what" || fail "$what"

process_id=""
if [[ -n "$input_file" ]]; then
    code="$(fetch process "$ngx/api/process" -H 'content-type: application/json' \
        --data "{\"input_file\": \"$input_file\", \"operations\": {\"quality\": 30}}")"
    process_id="$(json_get "$tmp/r/process.body" task_id)"
    what="POST /api/process through nginx: $code, task $process_id"
    [[ "$code" == 202 && -n "$process_id" ]] && pass "$what" || fail "$what"
fi

status=""
if [[ -n "$process_id" ]]; then
    for _ in $(seq 1 600); do
        fetch task "$ngx/api/tasks/$process_id" >/dev/null
        status="$(json_get "$tmp/r/task.body" status)"
        [[ "$status" == completed || "$status" == failed || "$status" == cancelled ]] && break
        sleep 0.2
    done
    what="the process task completed (status: $status $(json_get "$tmp/r/task.body" error))"
    [[ "$status" == completed ]] && pass "$what" || fail "$what"
fi

if [[ "$status" == completed ]]; then
    rid="/api/download-result/$process_id"
    d="$(fetch result-direct "$api$rid")"
    n="$(fetch result-nginx "$ngx$rid")"
    len="$(stat -c %s "$tmp/r/result-direct.body")"
    what="GET download-result: $n through nginx, $d direct, $len bytes"
    [[ "$n" == 200 && "$d" == 200 && "$len" -gt 1100 ]] && pass "$what" || fail "$what"
    what="download-result: identical bytes through nginx"
    cmp -s "$tmp/r/result-direct.body" "$tmp/r/result-nginx.body" && pass "$what" || fail "$what"
    for h in Content-Type Content-Disposition Content-Length Accept-Ranges Last-Modified; do
        dv="$(header "$tmp/r/result-direct.head" "$h")"
        nv="$(header "$tmp/r/result-nginx.head" "$h")"
        what="download-result: same $h through nginx ($nv)"
        [[ -n "$nv" && "$nv" == "$dv" ]] && pass "$what" || fail "$what (direct: $dv)"
    done

    d="$(fetch range-direct "$api$rid" -r 100-1099)"
    n="$(fetch range-nginx "$ngx$rid" -r 100-1099)"
    dcr="$(header "$tmp/r/range-direct.head" Content-Range)"
    ncr="$(header "$tmp/r/range-nginx.head" Content-Range)"
    what="Range 100-1099 through nginx: $n (direct $d), Content-Range '$ncr' (direct '$dcr')"
    [[ "$n" == 206 && "$d" == 206 && "$ncr" == "$dcr" && "$ncr" == "bytes 100-1099/$len" ]] && pass "$what" || fail "$what"
    what="Range 100-1099: the same 1000 bytes through nginx as direct"
    [[ "$(stat -c %s "$tmp/r/range-nginx.body")" == 1000 ]] && cmp -s "$tmp/r/range-nginx.body" "$tmp/r/range-direct.body" &&
        pass "$what" || fail "$what"
    head -c 1100 "$tmp/r/result-direct.body" | tail -c 1000 >"$tmp/r/slice"
    what="Range 100-1099: the bytes at offset 100 of the file"
    cmp -s "$tmp/r/slice" "$tmp/r/range-nginx.body" && pass "$what" || fail "$what"

    # If-Range is the API's to judge (nginx passes the header on): the answer
    # through nginx must be the direct one, for a current and for a stale validator.
    # The API's one validator is Last-Modified (it sends no ETag).
    modified="$(header "$tmp/r/result-direct.head" Last-Modified)"
    for case in current stale; do
        validator="$modified"
        [[ "$case" == stale ]] && validator='Sat, 01 Jan 2000 00:00:00 GMT'
        d="$(fetch "ifrange-$case-direct" "$api$rid" -r 0-9 -H "If-Range: $validator")"
        n="$(fetch "ifrange-$case-nginx" "$ngx$rid" -r 0-9 -H "If-Range: $validator")"
        dl="$(stat -c %s "$tmp/r/ifrange-$case-direct.body")"
        nl="$(stat -c %s "$tmp/r/ifrange-$case-nginx.body")"
        what="Range 0-9 with If-Range ($case date) through nginx: $n, $nl bytes (direct $d, $dl bytes)"
        [[ "$n" == "$d" && "$nl" == "$dl" ]] && cmp -s "$tmp/r/ifrange-$case-direct.body" "$tmp/r/ifrange-$case-nginx.body" &&
            pass "$what" || fail "$what"
    done
    what="If-Range with the current Last-Modified gives the range (206, 10 bytes)"
    [[ -n "$modified" && "$(head -n1 "$tmp/r/ifrange-current-nginx.head" | awk '{print $2}')" == 206 && "$(stat -c %s "$tmp/r/ifrange-current-nginx.body")" == 10 ]] &&
        pass "$what" || fail "$what"
    what="If-Range with a stale date gives the whole file (200, $len bytes)"
    [[ "$(head -n1 "$tmp/r/ifrange-stale-nginx.head" | awk '{print $2}')" == 200 && "$(stat -c %s "$tmp/r/ifrange-stale-nginx.body")" == "$len" ]] &&
        pass "$what" || fail "$what"
fi

# --- (d) the web UI ------------------------------------------------------------------------------
for page in / /ui/app.js; do
    name="ui$(echo "$page" | tr '/.' '__')"
    code="$(fetch "$name" "$ngx$page")"
    direct="$(fetch "$name-direct" "$api$page")"
    what="GET $page through nginx: $code, the same bytes as the API's own answer ($direct)"
    [[ "$code" == 200 && "$direct" == 200 ]] && cmp -s "$tmp/r/$name.body" "$tmp/r/$name-direct.body" &&
        pass "$what" || fail "$what"
done

if [[ $failed -gt 0 ]]; then
    show_logs
fi
echo "nginx_test: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
