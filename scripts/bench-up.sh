# Sourced by the end-to-end benchmark scripts (bench-e2e.sh, bench-cpu.sh): starts
# `sigil up` (its own nats-server, all five services, SQLite) with a CA of kind $KIND in
# a fresh data directory and waits until it is ready. Sets BIN (the sigil binary:
# $SIGIL_BIN, else the release build, built when missing), data (the data directory)
# and up (the pid of `sigil up`); on exit, stops it and its nats-server and removes the
# directory.
NATS="$(scripts/ensure-nats.sh 2>/dev/null)"
export SIGIL_NATS_SERVER="$NATS"
BIN="${SIGIL_BIN:-${CARGO_TARGET_DIR:-target}/release/sigil}"
if [[ ! -x "$BIN" ]]; then
  cargo build --release -q -p sigil-cli
fi
data="$(mktemp -d)"
"$BIN" --data-dir "$data" --nats nats://127.0.0.1:1 up --http 127.0.0.1:0 --ca-kind "$KIND" \
  >"$data/up.log" 2>&1 &
up=$!
trap 'kill "$up" 2>/dev/null; wait "$up" 2>/dev/null; pkill -f "nats-server.*$data"; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  # The ready line comes after the admin credential that `bench issue` signs with.
  grep -q "sigil up: 5 services ready" "$data/up.log" && break
  sleep 0.5
done
