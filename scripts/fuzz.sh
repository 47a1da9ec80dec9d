#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a while.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 s each, every target
#
# Needs cargo-fuzz (installed here with `cargo install --locked cargo-fuzz` if missing, which
# needs crates.io) and a C++ compiler (libfuzzer-sys builds libFuzzer). It works on stable Rust:
# targets are built with `--sanitizer none` (coverage instrumentation only; the targets are
# safe Rust, so AddressSanitizer would find little). With a nightly toolchain installed,
# FERRY_FUZZ_SANITIZER=address runs them under ASan instead (`cargo +nightly fuzz run`).
#
# The corpus grows in fuzz/corpus/TARGET (ignored by git), seeded from fuzz/seeds/TARGET; a
# crash is saved in fuzz/artifacts/TARGET and makes the script exit non-zero. Replay one with
# `cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-…`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
sanitizer="${FERRY_FUZZ_SANITIZER:-none}"
toolchain=()
if [ "$sanitizer" != none ]; then
  toolchain=(+nightly)
fi
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
failed=()
for t in "${targets[@]}"; do
  echo "== $t: ${seconds} s (sanitizer: $sanitizer)"
  mkdir -p "fuzz/corpus/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  if ! cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" "$t" "fuzz/corpus/$t" "${seeds[@]}" \
      -- -max_total_time="$seconds" -print_final_stats=1; then
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each without a crash"
