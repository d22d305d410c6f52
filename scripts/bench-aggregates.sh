#!/usr/bin/env bash
# An aggregating service against a row service of as many features, served
# side by side from one store, in one run:
# - `fstore bench-ingest --aggregating`: USERS users with a week of events
#   each (100, and 1 % of them 2,000), loaded through the merge path;
# - `bench_agg` (six aggregates over 1 h, 24 h and 7 d at 1-minute tiles)
#   against `bench_row6` (six features of each user's last event): 100-row
#   lookups at RATE100 req/s, and 1-row lookups at RATE1 req/s with the
#   no-op (health Check) at the same rate;
# - the same lookups of the busy users only.
#
# Usage: scripts/bench-aggregates.sh [FSTORE_BINARY] [USERS] [RATE100] [RATE1] [OUT_DIR]
# Everything runs under a temporary directory on 127.0.0.1:16577; stops by itself.
# JSON results (one file per run, as `fstore bench --json` writes them) go to OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
F="$(realpath "${1:-target/release/fstore}")"
USERS="${2:-2000}"
RATE100="${3:-200}"
RATE1="${4:-5000}"
OUT="${5:-$(mktemp -d)}"
mkdir -p "$OUT"
dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

"$F" bench-ingest --aggregating --rows "$USERS" --dir "$dir" --json "$OUT/load.json" 2>&1 | grep -v INFO
env FSTORE_SERVER__DEFINITIONS_DIR="$dir/defs" FSTORE_SERVER__DATA_DIR="$dir/store" \
  FSTORE_SERVER__LISTEN=127.0.0.1:16577 FSTORE_SERVER__METRICS_LISTEN=127.0.0.1:19577 \
  RUST_LOG=warn "$F" serve >"$dir/server.log" 2>&1 &
pids+=($!)
addr=http://127.0.0.1:16577
busy=$(python3 -c "print(','.join(str(i) for i in range(0, $USERS, 100)))")

b() { "$F" bench --addr "$addr" --duration 10s --warmup 2s "$@"; }
echo "== 100 rows, uniform users, $RATE100 req/s"
b --service bench_row6 --key "id=0..$USERS" --rows 100 --rate "$RATE100" --json "$OUT/row6-100.json"
b --service bench_agg --key "id=0..$USERS" --rows 100 --rate "$RATE100" --json "$OUT/agg-100.json"
echo "== 100 rows, busy users only, $RATE100 req/s"
b --service bench_row6 --key "id=$busy" --rows 100 --rate "$RATE100" --json "$OUT/row6-100-busy.json"
b --service bench_agg --key "id=$busy" --rows 100 --rate "$RATE100" --json "$OUT/agg-100-busy.json"
echo "== 1 row, uniform users, $RATE1 req/s, against the no-op"
b --service bench_row6 --key "id=0..$USERS" --rate "$RATE1" --compare-baseline --json "$OUT/row6-1.json"
b --service bench_agg --key "id=0..$USERS" --rate "$RATE1" --compare-baseline --json "$OUT/agg-1.json"
echo "results in $OUT"
