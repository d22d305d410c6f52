#!/usr/bin/env bash
# How long a server takes, from start, until its stream source holds its
# partitions ("Partition assigned.") and until the first events it consumed
# are servable ("First events since the partitions were assigned are
# servable."): on a first start, after a SIGTERM restart and after a SIGKILL
# restart, with a producer sending 200 events/s throughout.
#
# Usage: scripts/bench-stream-start.sh [FSTORE_BINARY] [extra FSTORE_* assignments...]
#   e.g. scripts/bench-stream-start.sh target/release/fstore FSTORE_KAFKA__SESSION_TIMEOUT_MS=45000
# Runs a memory-only broker (scripts/kafka-broker.sh) on 127.0.0.1:19192 and
# everything else under a temporary directory; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
F="${1:-target/release/fstore}"; shift || true
F="$(realpath "$F")"
T="$(scripts/kafka-broker.sh)"
dir="$(mktemp -d)"
port=19192
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

"$T" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://start/ >"$dir/broker.log" 2>&1 &
pids+=($!)
sleep 1
"$F" produce --brokers "127.0.0.1:$port" --count 1 >/dev/null 2>&1   # creates the topic
"$F" produce --brokers "127.0.0.1:$port" --count 0 --rate 200 --users 1000 >/dev/null 2>&1 &
pids+=($!)
cp -r feature_defs "$dir/defs"

# Seconds from the server's first log line to the first line matching $2.
since_start() {
  python3 - "$1" "$2" <<'PY'
import re, sys, datetime
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read()).splitlines()
stamp = lambda l: datetime.datetime.fromisoformat(l.split()[0].rstrip("Z"))
first = stamp(text[0])
hit = next((l for l in text if sys.argv[2] in l), None)
print("never" if hit is None else f"{(stamp(hit) - first).total_seconds():.2f} s")
PY
}

start() {
  env FSTORE_SERVER__DEFINITIONS_DIR="$dir/defs" FSTORE_SERVER__DATA_DIR="$dir/store" \
    FSTORE_SERVER__LISTEN=127.0.0.1:16566 FSTORE_SERVER__METRICS_LISTEN=127.0.0.1:19566 \
    FSTORE_KAFKA__BROKERS="127.0.0.1:$port" RUST_LOG=info "$@" "$F" serve >"$dir/$run.log" 2>&1 &
  server=$!
  pids+=($server)
  for _ in $(seq 1 1200); do
    grep -q "First events since the partitions were assigned are servable" "$dir/$run.log" && break
    sleep 0.05
  done
  printf '%-18s assigned after %-8s first events servable after %s\n' "$run" \
    "$(since_start "$dir/$run.log" "Partition assigned")" \
    "$(since_start "$dir/$run.log" "First events since the partitions were assigned are servable")"
}

for run in "first start" "SIGTERM restart" "SIGKILL restart"; do
  start "$@"
  case "$run" in
    "first start") kill -TERM "$server"; wait "$server" || true ;;
    "SIGTERM restart") kill -KILL "$server"; wait "$server" 2>/dev/null || true ;;
    *) kill -TERM "$server"; wait "$server" || true ;;
  esac
done
