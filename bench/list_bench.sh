#!/usr/bin/env bash
# Latency of GET /api/tasks filters (TaskStore::list) on a large task table, for
# SQLite and, when a local server answers, PostgreSQL: guards against a filter that
# falls back to scanning every row. Prints one markdown table per store (p50/p99 ms).
# Usage: bench/list_bench.sh [--tasks N] [other list_bench flags, see the example's header]
# Env: PG_URL (default postgres://postgres@127.0.0.1:5432/test; the bench creates and
# drops its own throwaway database next to it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
args=("$@")
[[ " ${args[*]-} " == *" --tasks "* ]] || args+=(--tasks 1000000)
cargo build --release -p mediapro-core --example list_bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/list_bench"
echo "## sqlite"
"$bin" --store sqlite "${args[@]}"
if pg_isready -q -h 127.0.0.1; then
    echo
    echo "## postgres"
    "$bin" --store postgres --pg-url "${PG_URL:-postgres://postgres@127.0.0.1:5432/test}" "${args[@]}"
else
    echo "PostgreSQL does not answer on 127.0.0.1: skipped" >&2
fi
