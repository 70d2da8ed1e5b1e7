#!/usr/bin/env bash
# Fuzzes Drover's decoders with cargo-fuzz (libFuzzer); the targets are listed in
# fuzz-targets/src/lib.rs and their committed corpora are under fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]  each target (default: all) for SECONDS (default 60),
#                                          starting from its committed corpus; new inputs go to
#                                          $DROVER_FUZZ_WORK/corpus/<target> (not committed)
#   scripts/fuzz.sh smoke                  what CI runs: every target for
#                                          ${DROVER_FUZZ_SMOKE_SECONDS:-5} seconds
#   scripts/fuzz.sh seeds                  rewrites the corpora's seed inputs (seed-*)
#   scripts/fuzz.sh keep TARGET            merges what runs found into the committed corpus
#                                          (libFuzzer's -merge: only inputs that add coverage)
#
# A crash stops the run with a non-zero exit; its input is under fuzz/artifacts/<target>/.
# Copy it into fuzz/corpus/<target>/ (the ordinary test run replays every corpus input:
# the test of fuzz-targets/src/tests.rs) and fix the decoder.
#
# Builds are debug builds (overflow checks on) without a sanitizer: Drover's decoders are safe
# Rust, and the build stays a few minutes on two cores. DROVER_FUZZ_SANITIZER=address and
# DROVER_FUZZ_RELEASE=1 change that for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. "$HOME/.cargo/env" 2>/dev/null || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drover-target}"
fuzz_target_dir="$CARGO_TARGET_DIR/fuzz"
work="${DROVER_FUZZ_WORK:-$HOME/.cache/drover-fuzz}"
# cargo-fuzz passes the fuzzer's -Z flags to rustc; the stable toolchain takes them so. Only
# for cargo fuzz: cargo fingerprints it, and the main build must not see it.
fuzz() {
  RUSTC_BOOTSTRAP=1 cargo fuzz "$@"
}

targets() {
  sed -n 's/^    ("\([a-z_]*\)", .*/\1/p' fuzz-targets/src/lib.rs
}

ensure_cargo_fuzz() {
  if ! fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --locked --quiet cargo-fuzz@0.13.2
  fi
}

build_flags=(--fuzz-dir fuzz --target-dir "$fuzz_target_dir" -s "${DROVER_FUZZ_SANITIZER:-none}")
if [ "${DROVER_FUZZ_RELEASE:-0}" != 1 ]; then
  build_flags+=(--dev)
fi

run() {
  local seconds="$1"
  shift
  ensure_cargo_fuzz
  fuzz build "${build_flags[@]}"
  local t
  for t in "$@"; do
    mkdir -p "$work/corpus/$t"
    echo "fuzz: $t for ${seconds}s" >&2
    # The first corpus directory takes what the run finds; the committed one is only read.
    local log="$work/$t.log"
    if ! fuzz run "${build_flags[@]}" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
      tail -n 60 "$log" >&2
      echo "fuzz: $t failed; the input is under fuzz/artifacts/$t/ (the whole log: $log)" >&2
      return 1
    fi
    echo "fuzz: $t: $(grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" | tr '\n' ' ')" >&2
  done
}

case "${1:-}" in
  smoke)
    mapfile -t all < <(targets)
    run "${DROVER_FUZZ_SMOKE_SECONDS:-5}" "${all[@]}"
    ;;
  seeds)
    # The whole workspace (not -p: that would build the master without its default features).
    DROVER_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo test --workspace --lib -- --ignored --exact tests::write_seeds
    ;;
  keep)
    t="${2:?which target}"
    ensure_cargo_fuzz
    fuzz run "${build_flags[@]}" "$t" "fuzz/corpus/$t" "$work/corpus/$t" -- -merge=1
    ;;
  *)
    seconds="${1:-60}"
    shift || true
    if [ "$#" -eq 0 ]; then
      mapfile -t all < <(targets)
      set -- "${all[@]}"
    fi
    run "$seconds" "$@"
    ;;
esac
