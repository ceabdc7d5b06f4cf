#!/usr/bin/env bash
# The GPU check: what a GPU machine says about ponder, one line per figure ("gpu-check ...").
# Such machines may have no network and room for small uploads only, so the model is built on
# the spot with random weights at a real model's exact shape (`ponder bench policy --random`).
#
#   scripts/gpu-check.sh [PONDER_BINARY] [ARCH]      # ARCH: smollm2-135m (default),
#                                                     # qwen2.5-0.5b, llama-1b
#   GPU_BACKEND=flex scripts/gpu-check.sh ...         # the same run on the CPU backend (a
#                                                     # dry run of the script without a GPU)
#
# It runs: the decode benchmark at batch 1, 8 and 64 on wgpu and on the host CPU (all cores);
# HF transformers at the same shape and batches (fp32 and bf16, CUDA when present) if torch and
# transformers import; a search end to end on wgpu; a DPO run on wgpu. Record the lines in the
# README's Performance section with the date and the machine.
set -euo pipefail
P="${1:-ponder}"
ARCH="${2:-smollm2-135m}"
GPU="${GPU_BACKEND:-wgpu}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { echo "gpu-check $*"; }
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)"
say "date=$(date -u +%FT%TZ) arch=$ARCH cpus=$(nproc) gpu=${gpu:-none}"

for backend in "$GPU" flex; do
  save=()
  [[ $backend == flex && ! -e "$work/model.gguf" ]] && save=(--save "$work/model.gguf")
  if ! out="$("$P" -q bench policy --random "$ARCH" --backend "$backend" --batch 8,64 \
      --tokens 32 --simulations 8 "${save[@]}" 2>&1)"; then
    say "backend=$backend failed: $(tail -1 <<<"$out")"
    continue
  fi
  sed "s/^/gpu-check backend=$backend /" <<<"$out"
done

if python3 -c "import torch, transformers" 2>/dev/null; then
  python3 "$here/bench_transformers.py" --random "$ARCH" 32 8,64 | sed 's/^/gpu-check /' ||
    say "transformers failed"
else
  say "transformers not installed: no peer figures"
fi

q="If Tom has 3 apples and buys 5 more, how many apples does he have?"
t0=$(date +%s%N)
if "$P" -q search --model "$work/model.gguf" --backend "$GPU" --simulations 16 --threads 4 "$q" \
    > "$work/search.txt" 2>&1; then
  say "search backend=$GPU simulations=16 ms=$(( ($(date +%s%N) - t0) / 1000000 )) $(grep -o 'tokens=[0-9]*' "$work/search.txt" | head -1)"
else
  say "search backend=$GPU failed: $(tail -1 "$work/search.txt")"
fi

for i in 1 2 3 4; do
  echo "{\"prompt\":\"$q\",\"chosen\":\"He has $((7 + i)) apples.\",\"rejected\":\"He has $i apples.\"}"
done > "$work/pairs.jsonl"
t0=$(date +%s%N)
if "$P" -q dpo --model "$work/model.gguf" --pairs "$work/pairs.jsonl" --backend "$GPU" \
    --epochs 1 --out "$work/dpo" > "$work/dpo.txt" 2>&1; then
  say "dpo backend=$GPU pairs=4 epochs=1 ms=$(( ($(date +%s%N) - t0) / 1000000 ))"
else
  say "dpo backend=$GPU failed: $(tail -1 "$work/dpo.txt")"
fi
