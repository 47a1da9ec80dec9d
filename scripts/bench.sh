#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md with one command: installs the peers from
# Debian's packages (scripts/bench-peers.sh), builds the release `ferry`, `ferryd` and
# `ferry-bench`, then runs `ferry-bench transfer`, `ferry-bench notify-latency` and
# `ferry-bench peer-cache`; each rewrites its own section of docs/BENCHMARKS.md.
#
#   scripts/bench.sh [OPTIONS for ferry-bench transfer, e.g. --runs 7]
#
# FERRY_BENCH_SKIP_PEERS=1 skips the package step (peers already installed; no root needed).
# Run it on an otherwise idle machine: the transfer benchmark alone takes about 10 minutes on
# 2 CPUs, both record the load average they started with, and other work skews their numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${FERRY_BENCH_SKIP_PEERS:-0}" != 1 ]; then
  bash scripts/bench-peers.sh
fi
cargo build --release -p ferry -p ferryd -p ferry-bench
target/release/ferry-bench transfer "$@"
target/release/ferry-bench notify-latency
target/release/ferry-bench peer-cache
