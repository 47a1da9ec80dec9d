#!/usr/bin/env bash
# The long crash loop: `kill -9` of ferryd at random moments, 100 times by default,
# under a mixed workload; see crates/ferryd/tests/daemon/crash_loop.rs for what must hold.
# Runs under plain `cargo test`, so nextest's CI time limit does not cut the long run.
# Usage: scripts/crash-loop.sh [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_CRASH_LOOPS="${1:-100}"
if [ -n "${2:-}" ]; then export FERRY_CRASH_SEED="$2"; fi
cargo build -q -p ferryd
exec cargo test -q -p ferryd --test daemon crash_loop:: -- --nocapture
