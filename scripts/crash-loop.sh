#!/usr/bin/env bash
# The long crash loop (issue #5): `kill -9` of ferryd at random moments, 100 times by default,
# under a mixed workload; see crates/ferryd/tests/daemon/crash_loop.rs for what must hold.
# Usage: scripts/crash-loop.sh [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_CRASH_LOOPS="${1:-100}"
[ -n "${2:-}" ] && export FERRY_CRASH_SEED="$2"
# A long run must not be cut by the CI slow-timeout: give it its own generous limit.
exec cargo nextest run -p ferryd --no-fail-fast --no-capture \
  --config 'profile.default.slow-timeout = { period = "60s", terminate-after = 30 }' \
  -E 'test(crash_loop::kill_9_at_random_moments_loses_nothing)'
