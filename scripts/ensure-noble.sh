#!/usr/bin/env bash
# Make sure @noble/post-quantum (an independent JavaScript ML-DSA implementation, used
# by sigil-pki's tests to cross-check our ML-DSA signatures) is installed, and print
# the absolute path of the node_modules directory that holds it on stdout. All
# progress goes to stderr, so callers can do
#   NODE_PATH=$(scripts/ensure-noble.sh)
#
# Install location: $SIGIL_NODE_TOOLS if set, else $HOME/.cache/sigil/tools/node
# (`npm install --prefix` there). Needs node >= 20 and npm on PATH.
#
# Idempotent: when the package is already there (at a version matching NOBLE_SPEC) it
# only runs `node` once to read the installed version.
set -euo pipefail

NOBLE_PKG="@noble/post-quantum"
# Caret on 0.x pins the minor version: 0.7.x.
NOBLE_SPEC="^0.7.1"
PREFIX="${SIGIL_NODE_TOOLS:-${HOME}/.cache/sigil/tools/node}"
MODULES="${PREFIX}/node_modules"

log() { echo "ensure-noble: $*" >&2; }

case "${1:-}" in
  "") ;;
  -h | --help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 0
    ;;
  *)
    echo "ensure-noble: unknown argument: $1" >&2
    exit 2
    ;;
esac

if ! command -v node >/dev/null 2>&1; then
  log "node not found; install Node.js >= 20 (e.g. 'apt-get install -y nodejs npm')"
  exit 1
fi

# Prints the installed version, or fails when the package is absent/unreadable.
installed_version() {
  [ -r "${MODULES}/${NOBLE_PKG}/package.json" ] || return 1
  node -e 'process.stdout.write(require(process.argv[1]).version)' \
    "${MODULES}/${NOBLE_PKG}/package.json" 2>/dev/null
}

# Succeeds when version $1 is 0.7.x with x >= 1 (what NOBLE_SPEC accepts).
version_ok() {
  case "$1" in
    0.7.0 | 0.7.0-*) return 1 ;;
    0.7.*) return 0 ;;
    *) return 1 ;;
  esac
}

if ver="$(installed_version)" && version_ok "$ver"; then
  log "${NOBLE_PKG} ${ver} already in ${MODULES}"
else
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found; install npm (e.g. 'apt-get install -y npm')"
    exit 1
  fi
  mkdir -p "${PREFIX}"
  # Serialise concurrent installs into the same prefix (e.g. parallel test runs).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${PREFIX}/.ensure-noble.lock"
    flock 9
  fi
  log "npm install --prefix ${PREFIX} ${NOBLE_PKG}@${NOBLE_SPEC}"
  npm install --prefix "${PREFIX}" --no-audit --no-fund --loglevel=error \
    "${NOBLE_PKG}@${NOBLE_SPEC}" >&2
  if ! ver="$(installed_version)" || ! version_ok "$ver"; then
    log "installing ${NOBLE_PKG}@${NOBLE_SPEC} into ${PREFIX} failed"
    exit 1
  fi
  log "installed ${NOBLE_PKG} ${ver}"
fi

printf '%s\n' "$(cd "${MODULES}" && pwd)"
