#!/usr/bin/env bash
# Runs every test of the project: the README's test command, and what CI runs.
#
# It must work on a machine that has only the Rust toolchain: whatever the tests need
# beyond it is installed (from Debian's packages) or started here when absent, and used
# as it is when already running.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# ---- redis-server, nginx and psql for the cluster tests (owned by the cluster tests) ----
# tests/tests/e2e/cluster.rs starts its own redis-server (a free port, no persistence) and
# nginx (a private prefix, no root needed) as child processes, and creates a throw-away
# database with psql; only the binaries must exist. The PostgreSQL server itself is made
# available by its own block. Missing packages come from Debian; if that fails, the
# cluster tests say what is missing and the other tests still run.
log "redis-server, nginx and psql for the cluster tests"
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have redis-server || missing+=(redis-server)
have nginx || missing+=(nginx)
have psql || missing+=(postgresql-client)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  echo "installing ${missing[*]}"
  { $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } ||
    echo "WARNING: could not install ${missing[*]}; the cluster tests will fail" >&2
fi
# ---- end of the cluster tests' binaries ------------------------------------------------

# ---- PostgreSQL for the PostgreSQL store's tests (owned by the cluster stores) ---------
# supervisor/src/store/postgres/tests.rs needs a server on which role postgres connects
# over TCP without a password. One already answering on 127.0.0.1:5432 is used as it is;
# otherwise Debian's postgresql package is installed if needed, loopback connections of
# role postgres are trusted, and its cluster is started. The tests fail loudly when they
# cannot connect; TRAITOR_TEST_POSTGRES_URL picks another server, and
# TRAITOR_TEST_SKIP_POSTGRES=1 skips them. Each test works in a schema of its own.
log "PostgreSQL for the PostgreSQL store tests"
if [ "${TRAITOR_TEST_SKIP_POSTGRES:-}" = 1 ]; then
  echo "skipped: TRAITOR_TEST_SKIP_POSTGRES=1"
elif [ -n "${TRAITOR_TEST_POSTGRES_URL:-}" ]; then
  echo "using TRAITOR_TEST_POSTGRES_URL"
else
  pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }
  if ! pg_up; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
      echo "installing postgresql"
      { $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql; } ||
        echo "WARNING: could not install postgresql; the PostgreSQL store tests will fail" >&2
    fi
    pg_version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    if [ -z "$pg_version" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
      pg_version=$(ls /usr/lib/postgresql | sort -V | tail -1)
      $sudo pg_createcluster "$pg_version" main || true
    fi
    if [ -n "$pg_version" ]; then
      hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
      # The first matching line wins: trust role postgres from loopback, ahead of the rest.
      if [ -f "$hba" ] && ! $sudo grep -Eq '^host[[:space:]]+all[[:space:]]+(all|postgres)[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        $sudo sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
      fi
      $sudo pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start ||
        $sudo pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload || true
      for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    fi
    pg_up || echo "WARNING: no PostgreSQL on 127.0.0.1:5432; the PostgreSQL store tests will fail" >&2
  fi
  export TRAITOR_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/postgres"
  echo "TRAITOR_TEST_POSTGRES_URL=$TRAITOR_TEST_POSTGRES_URL"
fi
# ---- end of PostgreSQL ----------------------------------------------------------------

log "building the binaries the end-to-end tests start"
cargo build --workspace --bins --quiet

log "unit, integration and end-to-end tests"
# A failing test must not end the script before the browser tests and the summary.
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

# ---- browser tests of the web UI (tests/browser; owned by the web UI) -----------------
# Real headless Chromium (Debian's package) driven by playwright-core from npm, against
# the traitor binary built above. Their node:test summary is folded into the totals.
log "browser tests of the web UI (headless Chromium)"
browser_status=0
if ! command -v node >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq nodejs npm) >/dev/null 2>&1 || true
fi
node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || true)
if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
  echo "ERROR: the browser tests need Node.js 20 or newer with npm (found: ${node_major:-none})." >&2
  echo "       Install Node.js 20+, then run scripts/test.sh again." >&2
  browser_status=1
else
  command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) || browser_status=1
  lock=tests/browser/package-lock.json
  installed=tests/browser/node_modules/.package-lock.json
  if [ "$browser_status" -eq 0 ] && { [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; }; then
    (cd tests/browser && npm ci --no-audit --no-fund) || browser_status=1
  fi
  if [ "$browser_status" -eq 0 ]; then
    if node --test tests/browser/ 2>&1 | tee target/browser-test-output.txt; then :; else browser_status=$?; fi
    browser_passed=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' target/browser-test-output.txt | tail -1)
    browser_failed=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' target/browser-test-output.txt | tail -1)
    cat target/browser-test-output.txt >>target/test-output.txt
    printf 'browser tests: %s passed; %s failed\n' "${browser_passed:-0}" "${browser_failed:-0}" | tee -a target/test-output.txt
  fi
fi
if [ "$browser_status" -ne 0 ] && [ "$status" -eq 0 ]; then status=$browser_status; fi
# ---- end of the browser tests ---------------------------------------------------------

passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
printf '\ntotal: %s passed, %s failed\n' "$passed" "$failed"
exit "$status"
