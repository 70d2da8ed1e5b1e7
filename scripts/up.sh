#!/usr/bin/env bash
# Sets up the machine, builds drover and runs a local HA cluster (`drover up`): 3 masters on
# 127.0.0.1:5050, 5052 and 5054, data under ./.drover/. Ctrl-C stops it. Arguments are passed
# to `drover up` (e.g. --masters 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drover-target}"
cargo build --bin drover
exec "$CARGO_TARGET_DIR/debug/drover" up "$@"
