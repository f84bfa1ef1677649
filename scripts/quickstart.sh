#!/usr/bin/env bash
# Build Sigil, bring the whole system up (NATS with JetStream + the five services) and
# issue a demo certificate. Needs only Rust; gets nats-server itself.
#
#   scripts/quickstart.sh            # leaves `sigil up` running in the background
#   kill "$(cat .sigil/sigil.pid)"   # stops it
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${SIGIL_DATA_DIR:-./.sigil}"
mkdir -p "$DATA"
SIGIL_NATS_SERVER="$(scripts/ensure-nats.sh)"
export SIGIL_NATS_SERVER

echo "quickstart: building sigil (first build takes a few minutes)…" >&2
cargo build -q -p sigil-cli
SIGIL="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/sigil"

if [[ -f "$DATA/sigil.pid" ]] && kill -0 "$(cat "$DATA/sigil.pid")" 2>/dev/null; then
  echo "quickstart: sigil up is already running (pid $(cat "$DATA/sigil.pid"))" >&2
else
  : > "$DATA/up.log"
  nohup "$SIGIL" --data-dir "$DATA" up >"$DATA/up.log" 2>&1 &
  echo $! >"$DATA/sigil.pid"
  for _ in $(seq 1 120); do
    if grep -q "sigil up: 5 services ready" "$DATA/up.log"; then break; fi
    if ! kill -0 "$(cat "$DATA/sigil.pid")" 2>/dev/null; then
      echo "quickstart: sigil up exited; its log:" >&2
      cat "$DATA/up.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  grep "sigil up:" "$DATA/up.log" || { echo "quickstart: not ready after 60s; see $DATA/up.log" >&2; exit 1; }
fi

echo
echo "\$ sigil issue --dns demo.localhost --ttl 24h --out $DATA/demo"
"$SIGIL" --data-dir "$DATA" issue --dns demo.localhost --ttl 24h --out "$DATA/demo" --force
echo
echo "\$ sigil ls"
sleep 1
"$SIGIL" --data-dir "$DATA" ls
echo
echo "Sigil is running (pid $(cat "$DATA/sigil.pid"), log $DATA/up.log). Try:"
echo "  $SIGIL show <SERIAL>"
echo "  $SIGIL revoke <SERIAL> --reason key-compromise"
echo "  $SIGIL events"
echo "Stop it with: kill \$(cat $DATA/sigil.pid)"
