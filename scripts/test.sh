#!/usr/bin/env bash
# One command sets up and runs the whole test suite: installs what is missing,
# makes sure the test Redis answers, then runs the format check, clippy, the build
# of every target and the tests (cargo nextest if installed, else cargo test).
# Every step runs even if an earlier check failed (the tests are skipped only if
# the build failed); a summary is printed at the end and the exit status is
# non-zero if any step failed.
#
# Environment:
#   MEDIAPRO_TEST_REDIS_URL  Redis the tests use (default redis://127.0.0.1:6379/15)
#   MEDIAPRO_TEST_PG_URL     exported (default postgres://postgres@127.0.0.1:5432/test)
#                            only when PostgreSQL answers on 127.0.0.1:5432
#
# The end-to-end suite runs twice: with the warm yt-dlp host (the default, on
# SQLite, in the `tests` step) and with it turned off (MEDIAPRO_TEST_YTDLP_HOST=off:
# every yt-dlp run spawned), on PostgreSQL when it answers, else on SQLite again.
#
# Usage: scripts/test.sh
set -euo pipefail

log() { printf '[test] %s\n' "$*"; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash "$root/scripts/install-deps.sh"

export MEDIAPRO_TEST_REDIS_URL="${MEDIAPRO_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
log "tests use Redis at $MEDIAPRO_TEST_REDIS_URL"
MEDIAPRO__REDIS__URL="$MEDIAPRO_TEST_REDIS_URL" bash "$root/scripts/ensure-redis.sh"

if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    export MEDIAPRO_TEST_PG_URL="${MEDIAPRO_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
    log "PostgreSQL answers on 127.0.0.1:5432: MEDIAPRO_TEST_PG_URL=$MEDIAPRO_TEST_PG_URL"
else
    log "PostgreSQL not answering on 127.0.0.1:5432: MEDIAPRO_TEST_PG_URL not set (PostgreSQL tests will skip)"
fi

summary=()
failed=0

# Databases the PostgreSQL run of the e2e suite creates (one per test).
drop_test_databases() {
    local db
    for db in $(psql "$MEDIAPRO_TEST_PG_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'mediapro_e2e_%'"); do
        psql "$MEDIAPRO_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null || true
    done
}

# Warm yt-dlp hosts (crates/mediapro-core/ythost/ythost.py, run from a
# mediapro-ythost-* folder) still running a few seconds after the tests ended.
no_stray_hosts() {
    local i
    for i in 1 2 3 4 5; do
        pgrep -f 'mediapro-ythost-[^ ]*/ythost[.]py' >/dev/null || return 0
        sleep 1
    done
    log "stray yt-dlp hosts:"
    pgrep -af 'mediapro-ythost-[^ ]*/ythost[.]py' || true
    return 1
}

# step <name> <command...>: runs the command, records PASS/FAIL and its duration.
step() {
    local name="$1" start rc=0
    shift
    log "==> $name: $*"
    start=$SECONDS
    "$@" || rc=$?
    if [[ $rc -eq 0 ]]; then
        summary+=("$(printf 'PASS  %-10s %5ss' "$name" $((SECONDS - start)))")
    else
        summary+=("$(printf 'FAIL  %-10s %5ss  (exit %s)' "$name" $((SECONDS - start)) "$rc")")
        failed=$((failed + 1))
    fi
    return "$rc"
}

step fmt cargo fmt --all -- --check || true
step clippy cargo clippy --workspace --all-targets -- -D warnings || true

# The warm yt-dlp host (Python, needs no build): unittest against real yt-dlp and
# ffmpeg on a loopback fixture, about 20 s.
step ythost python3 -m unittest discover -s crates/mediapro-core/ythost -t crates/mediapro-core/ythost || true

if step build cargo build --workspace --all-targets; then
    if cargo nextest --version >/dev/null 2>&1; then
        # nextest does not run doctests; run them first so the runner's own
        # summary is the last one printed.
        step doctests cargo test --workspace --doc --no-fail-fast || true
        step tests cargo nextest run --workspace --no-fail-fast || true
        pg_e2e=(cargo nextest run -p mediapro-e2e --no-fail-fast)
    else
        step tests cargo test --workspace --no-fail-fast || true
        pg_e2e=(cargo test -p mediapro-e2e --no-fail-fast)
    fi
    # The end-to-end suite again with the warm yt-dlp host off, on PostgreSQL (a
    # throwaway database per test) when it answers, else on SQLite.
    if [[ -n "${MEDIAPRO_TEST_PG_URL:-}" ]]; then
        drop_test_databases
        step e2e-postgres env MEDIAPRO_TEST_STORE=postgres MEDIAPRO_TEST_YTDLP_HOST=off "${pg_e2e[@]}" || true
        drop_test_databases
    else
        summary+=("SKIP  e2e-postgres (no PostgreSQL on 127.0.0.1:5432)")
        step e2e-host-off env MEDIAPRO_TEST_YTDLP_HOST=off "${pg_e2e[@]}" || true
    fi
    # Every host the suites started went with its test.
    step ythost-strays no_stray_hosts || true
    # Deployment checks: compose/Dockerfile structure, nginx in front of the API,
    # and the supervisord scale test (on PostgreSQL when it answers, else SQLite).
    step compose python3 tests/deploy/check_compose.py || true
    step nginx bash tests/deploy/nginx_test.sh || true
    step scale bash tests/scale/run.sh || true
    # The running API + worker against its own OpenAPI document (Schemathesis).
    step contract bash tests/contract/schemathesis_test.sh || true
else
    summary+=("SKIP  tests      (the build failed)")
fi

echo
log "summary:"
for line in "${summary[@]}"; do
    printf '[test]   %s\n' "$line"
done
if [[ $failed -gt 0 ]]; then
    log "$failed step(s) failed"
    exit 1
fi
log "all steps passed"
