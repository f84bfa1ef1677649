#!/usr/bin/env bash
# Where the CPU of an issuance goes, for docs/benchmarks.md: starts `sigil up` (its own
# nats-server, all five services, SQLite) in a fresh data directory with a CA of KIND,
# runs `sigil bench issue` at concurrency 16, and prints the CPU time (user + system)
# per certificate of each group of threads: nats-server, the tokio workers (every
# service's Rust code, crypto included), sqlx's SQLite worker threads, and the client.
#
#   scripts/bench-cpu.sh [classical|hybrid] [COUNT]
#
# Linux only (reads /proc/<pid>/task/*/stat). Uses $SIGIL_BIN, else the release build.
set -uo pipefail
cd "$(dirname "$0")/.."
KIND="${1:-classical}"
COUNT="${2:-4000}"
# shellcheck source=bench-up.sh
source scripts/bench-up.sh
nats_pid="$(pgrep -f "nats-server.*$data" | head -1)"
"$BIN" --data-dir "$data" --json bench issue --count 300 --concurrency 16 >/dev/null
tick="$(getconf CLK_TCK)"
# "<thread name> <ticks>" summed per thread name, for the server processes.
snapshot() {
  for pid in "$up" "$nats_pid"; do
    for t in /proc/"$pid"/task/*; do
      printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
    done
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
before="$(snapshot)"
echo "# $(date -u +%FT%TZ) kind=$KIND load=$(cut -d' ' -f1-3 /proc/loadavg)"
command -v /usr/bin/time >/dev/null || apt-get install -y -q time >/dev/null
/usr/bin/time -f "%U %S" -o "$data/client.time" \
  "$BIN" --data-dir "$data" --json bench issue --count "$COUNT" --concurrency 16
client_s="$(awk '{print $1 + $2}' "$data/client.time")"
sleep 2 # let the consumers finish the last events
after="$(snapshot)"
join <(echo "$before") <(echo "$after") |
  awk -v n="$COUNT" -v hz="$tick" -v c="$client_s" '
    { us = ($3 - $2) * 1e6 / hz / n; printf "%-18s %6.0f µs/certificate\n", $1, us; total += us }
    END {
      cu = c * 1e6 / n; printf "%-18s %6.0f µs/certificate\n", "client", cu
      printf "%-18s %6.0f µs/certificate\n", "total", total + cu
    }'
