#!/usr/bin/env bash
# End-to-end issuance benchmark for docs/benchmarks.md: starts `sigil up` (its own
# nats-server, all five services, SQLite) in a fresh data directory with a CA of KIND,
# then runs `sigil bench issue` at concurrency 1 and 16 and prints one JSON line each,
# after the raw in-process baseline `sigil bench sign` for the same kind.
#
#   scripts/bench-e2e.sh [classical|hybrid] [COUNT]
#
# Uses $SIGIL_BIN, else the release build (built first when missing).
set -uo pipefail
cd "$(dirname "$0")/.."
KIND="${1:-hybrid}"
COUNT="${2:-4000}"
NATS="$(scripts/ensure-nats.sh)"
export SIGIL_NATS_SERVER="$NATS"
BIN="${SIGIL_BIN:-${CARGO_TARGET_DIR:-target}/release/sigil}"
if [[ ! -x "$BIN" ]]; then
  cargo build --release -q -p sigil-cli
fi
data="$(mktemp -d)"
"$BIN" --data-dir "$data" --nats nats://127.0.0.1:1 up --http 127.0.0.1:0 --ca-kind "$KIND" \
  >"$data/up.log" 2>&1 &
up=$!
trap 'kill "$up" 2>/dev/null; wait "$up" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  # The ready line comes after the admin credential that `bench issue` signs with.
  grep -q "sigil up: 5 services ready" "$data/up.log" && break
  sleep 0.5
done
echo "# $(date -u +%FT%TZ) kind=$KIND load=$(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" --json bench sign --kind "$KIND" --count "$COUNT"
"$BIN" --data-dir "$data" --json bench issue --count 500 --concurrency 1
"$BIN" --data-dir "$data" --json bench issue --count "$COUNT" --concurrency 16
