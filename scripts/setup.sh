#!/usr/bin/env bash
# Prepares ponder on a fresh machine and runs its main job once.
# Today: builds the `ponder` binary and searches a problem of the built-in synthetic task
# (the default LLM model is added here when the LLM policy lands). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
cargo build --bin ponder
bin="${CARGO_TARGET_DIR:-target}/debug/ponder"
"$bin" search "Start with 7. Add 3. Multiply by 2. Subtract 5. What is the result?" --gold 15
echo "setup: ok ($bin)"
