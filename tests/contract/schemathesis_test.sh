#!/usr/bin/env bash
# Checks the running service against its own OpenAPI document with Schemathesis:
# a real mediapro-api + mediapro-worker (settings from tests/launcher.py), an API
# key required and sent as `Authorization: Bearer`, every check on (--checks all:
# not_a_server_error, status_code_conformance, content_type_conformance,
# response_schema_conformance, response_headers_conformance,
# positive_data_acceptance, negative_data_rejection, ignored_auth,
# unsupported_method, allow_header_conformance, … — all but use_after_free, see
# below), a bounded run time. Prints
# Schemathesis' summary (operations, generated test cases, failures).
#
# Nothing leaves loopback:
#   - tests/contract/st_hooks.py rewrites, right before each request is sent, every
#     `url` / `*_url` string of a body into an IP-literal loopback URL (the fixture
#     clip on 127.0.0.1, or http://127.0.0.2:9/… which is refused) — no host name
#     is left to resolve, so there is no DNS query either;
#   - the instance runs with security.allow_private_networks=false (the default,
#     instead of tests/isolated.toml's true) and security.allowed_networks =
#     127.0.0.1/32: 127.0.0.2 and every other private address are refused by
#     validation and by the egress proxy every yt-dlp run goes through, and a
#     public address would be refused by nothing but the hooks, which never send one;
#   - Schemathesis itself talks only to the API on 127.0.0.1 (and the swagger page
#     is not opened).
# GET /api/events is excluded: it is an endless event stream (tested by the e2e
# suite, crates/e2e/tests/e2e/events.rs).
#
# Needs: the Schemathesis venv that scripts/install-deps.sh makes
# (SCHEMATHESIS, default ${XDG_CACHE_HOME:-~/.cache}/mediapro/schemathesis-<version>/bin/st),
# ffmpeg, curl, python3, redis-cli and a Redis at MEDIAPRO_TEST_REDIS_URL; the
# binaries built (MEDIAPRO_BIN_DIR, default <CARGO_TARGET_DIR or target>/debug).
#
# Environment: ST_MAX_EXAMPLES (default 8), ST_MAX_TIME (seconds, default 120),
# KEEP_TMP=1 keeps the temporary directory (logs, the report).
#
# Exit status: Schemathesis' (0: no failure), 2 if something needed is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/contract"
# shellcheck source=/dev/null
source "$root/scripts/schemathesis-version.sh"
st="${SCHEMATHESIS:-${XDG_CACHE_HOME:-$HOME/.cache}/mediapro/schemathesis-$SCHEMATHESIS_VERSION/bin/st}"
bin_dir="$(python3 "$root/tests/launcher.py" bin-dir --profile debug)"
redis_url="${MEDIAPRO_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
max_examples="${ST_MAX_EXAMPLES:-8}"
max_time="${ST_MAX_TIME:-120}"

tag=schemathesis
log_files=(api.log worker.log fixture.log)
# shellcheck source=tests/lib/harness.sh
source "$root/tests/lib/harness.sh"

[[ -x "$st" ]] || die "$st not found: run scripts/install-deps.sh (or set SCHEMATHESIS)"
require_tools curl ffmpeg python3 redis-cli timeout
require_binaries "$bin_dir"
require_redis


# --- a clip on 127.0.0.1 (what every rewritten URL points at) ------------------------------
mkdir -p "$tmp/www" "$tmp/run"
ffmpeg -nostdin -loglevel error -f lavfi -i testsrc=size=160x120:rate=10 -f lavfi -i sine=frequency=440 \
    -t 1 -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest "$tmp/www/clip.mp4"
fixture_port="$(free_port)"
python3 -m http.server --bind 127.0.0.1 --directory "$tmp/www" "$fixture_port" >"$tmp/fixture.log" 2>&1 &
pids+=("$!")

# --- the API and a worker ------------------------------------------------------------------
key="st-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
launch_env="$(python3 "$root/tests/launcher.py" env --tmp "$tmp" --name mediapro-schemathesis \
    --redis-url "$redis_url" \
    --default security.allow_private_networks \
    --set security.allowed_networks=127.0.0.1/32 \
    --set security.api_keys="$key" \
    --set limits.submissions_per_minute=0 \
    --set limits.analyze_per_minute=0 \
    --set limits.task_timeout_seconds=30 \
    --set limits.ffmpeg_threads=1 \
    --set worker.drain_timeout_seconds=5)"
eval "$launch_env"
namespace="$MEDIAPRO__REDIS__NAMESPACE"
api="http://127.0.0.1:${MEDIAPRO__SERVER__BIND##*:}"
export RUST_LOG="${RUST_LOG:-warn}"

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
(cd "$tmp/run" && exec "$bin_dir/mediapro-worker" --queues download,process --concurrency 1) \
    >"$tmp/worker.log" 2>&1 &
pids+=("$!")

# An uploaded clip, so some processing requests name a real input file.
input_file="$(curl -fsS --max-time 60 -H "Authorization: Bearer $key" --data-binary "@$tmp/www/clip.mp4" \
    "$api/api/uploads?filename=clip.mp4" | python3 -c 'import json, sys; print(json.load(sys.stdin)["input_file"])')" ||
    {
        show_logs
        die "the fixture upload failed"
    }
# A completed task, so GET /api/download-result/{task_id} is tested with a result
# (schemathesis.toml passes its id as MEDIAPRO_ST_RESULT_TASK_ID).
result_task="$(curl -fsS --max-time 60 -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d "{\"input_file\": \"$input_file\", \"operations\": {\"quality\": 35}}" "$api/api/process" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["task_id"])')" || {
    show_logs
    die "the fixture processing request failed"
}
status=""
for _ in $(seq 1 120); do
    status="$(curl -fsS --max-time 5 -H "Authorization: Bearer $key" "$api/api/tasks/$result_task" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' || true)"
    [[ "$status" == "completed" || "$status" == "failed" || "$status" == "cancelled" ]] && break
    sleep 0.5
done
[[ "$status" == "completed" ]] || {
    show_logs
    die "the fixture processing task ended '$status', not completed"
}
log "API $api (key required), fixture http://127.0.0.1:$fixture_port/clip.mp4, input_file $input_file, completed task $result_task"

# --- the document is valid OpenAPI 3.1 ------------------------------------------------------
# Against the OpenAPI 3.1 JSON Schema that this pinned Schemathesis bundles (the
# OAI's schemas/v3.1/schema.yaml), with its own jsonschema_rs; Schemathesis checks the
# same on load, this says so plainly first.
curl -fsS --max-time 10 "$api/api/openapi.json" >"$tmp/openapi.json"
"$(dirname "$st")/python" - "$tmp/openapi.json" <<'PY' || die "the served document is not valid OpenAPI 3.1"
import json, sys
import jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31
doc = json.load(open(sys.argv[1]))
assert str(doc.get("openapi", "")).startswith("3.1"), f"openapi is {doc.get('openapi')!r}, not 3.1"
errors = list(jsonschema_rs.validator_for(OPENAPI_31).iter_errors(doc))
for e in errors[:10]:
    print(f"  {'/'.join(map(str, e.instance_path))}: {e.message}", file=sys.stderr)
if errors:
    sys.exit(1)
ops = sum(1 for item in doc["paths"].values() for m in item if m in ("get", "put", "post", "delete", "patch"))
print(f"[schemathesis] /api/openapi.json: valid OpenAPI {doc['openapi']}, {len(doc['paths'])} paths, {ops} operations")
PY

# --- Schemathesis ------------------------------------------------------------------------------
export MEDIAPRO_ST_FIXTURE_URL="http://127.0.0.1:$fixture_port/clip.mp4"
export MEDIAPRO_ST_INPUT_FILE="$input_file"
export MEDIAPRO_ST_RESULT_TASK_ID="$result_task"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=st_hooks
# No proxy from the environment for Schemathesis' requests to 127.0.0.1.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
log "schemathesis $("$st" --version 2>/dev/null | awk '{print $NF}'): max ${max_examples} examples per operation, ${max_time} s budget"
# use_after_free is the one check left out: it expects a resource to be gone (404)
# after a successful DELETE, but `DELETE /api/tasks/{task_id}` cancels — the task
# stays, `cancelled`, and GET keeps answering 200 with it (the documented contract,
# README "HTTP API"). (The option: `--checks all` overrides `enabled = false` in
# the configuration file.)
rc=0
# Run from the temporary directory: Schemathesis and Hypothesis keep state
# (.schemathesis/, .hypothesis/) in the working directory.
cd "$tmp"
timeout --kill-after=10 $((max_time + 90)) \
    "$st" --config-file "$here/schemathesis.toml" --no-color run "$api/api/openapi.json" \
    --url "$api" \
    -H "Authorization: Bearer $key" \
    --checks all \
    --exclude-checks use_after_free \
    --max-examples "$max_examples" \
    --max-time "$max_time" \
    --exclude-path /api/events \
    --workers 1 \
    --request-timeout 45 \
    --seed 1 \
    --report junit --report-dir "$tmp/report" || rc=$?
if [[ $rc -ne 0 ]]; then
    [[ $rc -eq 124 || $rc -eq 137 ]] && log "Schemathesis did not finish within $((max_time + 90)) s"
    show_logs
fi
exit "$rc"
