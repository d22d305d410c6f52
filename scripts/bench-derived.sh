#!/usr/bin/env bash
# What derived features cost at lookup: one store, two services over the
# same 20 stored features of a view, one of them with four derived features
# (request fields, arithmetic, a comparison, `in`), looked up in alternating
# rounds at the same open-loop rate, 100 rows per request.
#
# Usage: scripts/bench-derived.sh [FSTORE_BINARY] [ROWS] [RATE] [ROUNDS] [OUT_DIR]
# Everything runs under a temporary directory on 127.0.0.1:16578; stops by itself.
# JSON results (one file per run, as `fstore bench --json` writes them) go to OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
F="$(realpath "${1:-target/release/fstore}")"
ROWS="${2:-100000}"
RATE="${3:-500}"
ROUNDS="${4:-5}"
OUT="${5:-$(mktemp -d)}"
mkdir -p "$OUT"
dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

"$F" bench-ingest --rows "$ROWS" --features 20 --dir "$dir" --json "$OUT/load.json" 2>&1 | grep -v INFO
# Derived features hold no data: adding the service keeps the loaded view.
cat >"$dir/defs/derived.fdl" <<'FDL'
service bench_derived {
  request { device: string, shown_price: float64 }
  features = [bench_view.*]
  derived {
    price_ratio: float64 = shown_price / bench_view.f1
    is_mobile: bool = device in ("ios", "android")
    score: float64 = bench_view.f1 * 0.3 + bench_view.f2 * 0.7 - bench_view.f0
    tagged: bool = bench_view.f3 == "v7" or bench_view.f4 > 100
  }
}
FDL
env FSTORE_SERVER__DEFINITIONS_DIR="$dir/defs" FSTORE_SERVER__DATA_DIR="$dir/store" \
  FSTORE_SERVER__LISTEN=127.0.0.1:16578 FSTORE_SERVER__METRICS_LISTEN=127.0.0.1:19578 \
  FSTORE_SERVER__LOAD_SOURCES_ON_START=false RUST_LOG=warn "$F" serve >"$dir/server.log" 2>&1 &
pids+=($!)
addr=http://127.0.0.1:16578
for _ in $(seq 1 300); do
  (exec 3<>/dev/tcp/127.0.0.1/16578) 2>/dev/null && break
  sleep 0.1
done

b() { "$F" bench --addr "$addr" --duration 10s --warmup 2s --key "id=0..$ROWS" --rows 100 --rate "$RATE" "$@"; }
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round: 100 rows at $RATE req/s"
  b --service bench --json "$OUT/plain-$round.json" | tail -n +1 | grep -E "lookup|p99" || true
  b --service bench_derived --request device=ios --request shown_price=3.5 \
    --json "$OUT/derived-$round.json" | grep -E "lookup|p99" || true
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def runs(kind):
    return [json.load(open(f"{out}/{kind}-{r}.json"))[0] for r in range(1, rounds + 1)]
plain, derived = runs("plain"), runs("derived")
for q in ("p50_ms", "p99_ms"):
    p = statistics.median(r[q] for r in plain)
    d = statistics.median(r[q] for r in derived)
    print(f"{q}: plain median {p:.3f} ms, derived median {d:.3f} ms, ratio {d / p:.3f}")
    print(f"  per round: plain {[round(r[q], 3) for r in plain]}, derived {[round(r[q], 3) for r in derived]}")
errors = sum(r["errors"] for r in plain + derived)
print(f"errors: {errors}")
PY
echo "results in $OUT"
