#!/usr/bin/env bash
# Every test: the Rust workspace through nextest (the `ci` profile: no fail-fast, hung tests
# terminated), then the Python client (clients/python/ci.sh: wheel, mypy --strict, pytest on
# the oldest and newest Python against a real ferryd). Both run even when the first fails.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
cargo nextest run --workspace --profile ci || status=1
bash clients/python/ci.sh || status=1
exit "$status"
