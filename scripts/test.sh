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
