#!/usr/bin/env bash
# Sets up the machine, then checks formatting, dependencies (cargo deny) and lints and runs
# every test (unit, property, openraft's storage suite, the end-to-end tests that start real
# clusters on loopback) and a short fuzz run of every decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Outside the work tree, so a reused machine does not rebuild RocksDB (about 14 minutes).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drover-target}"
# The Marathon client's virtualenv (made by setup.sh): its test must run here, not skip.
export DROVER_PYTHON="${DROVER_VENV:-$HOME/.cache/drover-venv}/bin/python"
export DROVER_REQUIRE_PYTHON=1
cargo fmt --all -- --check
# Licences, duplicate versions and sources (deny.toml). Advisories need the RustSec database
# from GitHub, which CI cannot reach (README, Security).
cargo deny check licenses bans sources
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# Every fuzz target for a few seconds from its committed corpus (scripts/fuzz.sh); the corpora
# themselves were replayed by cargo test above.
scripts/fuzz.sh smoke
