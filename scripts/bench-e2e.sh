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
# shellcheck source=bench-up.sh
source scripts/bench-up.sh
echo "# $(date -u +%FT%TZ) kind=$KIND load=$(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" --json bench sign --kind "$KIND" --count "$COUNT"
"$BIN" --data-dir "$data" --json bench issue --count 500 --concurrency 1
"$BIN" --data-dir "$data" --json bench issue --count "$COUNT" --concurrency 16
