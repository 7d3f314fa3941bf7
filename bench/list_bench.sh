#!/usr/bin/env bash
# Latency of GET /api/tasks filters (TaskStore::list) on a large task table, for
# SQLite and, when a local server answers, PostgreSQL: guards against a filter that
# falls back to scanning every row. Prints one markdown table per store (p50/p99 ms).
# Usage: bench/list_bench.sh [--tasks N] [other list_bench flags, see the example's header]
# Env: PG_URL (default postgres://postgres@127.0.0.1:5432/test; the bench creates and
# drops its own throwaway database next to it).
# The fill is generated inside the database (INSERT ... SELECT over a number series):
# 1,000,000 tasks take seconds per store.
# BEFORE/AFTER of the list indexes (migrations/20261201000001_list_indexes.sql and the
# list.rs rewrite, commit aa70714): AFTER is this tree. BEFORE was measured from an
# uncommitted copy of this tree with crates/mediapro-core/src/store/list.rs restored
# from `git show 8c17303^:crates/mediapro-core/src/store/list.rs` (one query:
# `status IN (...) AND kind = ... ORDER BY created_at DESC, task_id DESC LIMIT n+1`,
# cursor `(created_at < t OR (created_at = t AND task_id < id))`) and that migration
# file deleted, running this script there (same example, same fill, ANALYZE after it);
# the `check` column matches between the two runs.
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
