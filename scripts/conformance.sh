#!/usr/bin/env bash
# Conformance of ponder's remote policy against a real OpenAI-compatible server: llama-cpp-python's
# server on the default model, installed into a cached venv (its sdist builds llama.cpp: ~17 min
# on 2 cores the first time), then `ponder bench remote --endpoint` (probe + a search whose every
# stored step is checked against the step rule). Not part of CI (the build is too slow); the
# mock server in the tests carries the behaviours seen here.
#
#   scripts/conformance.sh [--ponder PATH] [--port N] [extra `ponder bench remote` flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

ponder="${CARGO_TARGET_DIR:-$HOME/.cache/ponder/target}/debug/ponder"
port=18082
if [[ "${1:-}" == "--ponder" ]]; then ponder="$2"; shift 2; fi
if [[ "${1:-}" == "--port" ]]; then port="$2"; shift 2; fi
venv="$HOME/.cache/ponder/llama-venv"
version="0.3.36"
model="$HOME/.cache/ponder/models/SmolLM2-135M-Instruct.Q4_1.gguf"

[[ -x "$ponder" ]] || { echo "no ponder binary at $ponder (cargo build first, or --ponder PATH)" >&2; exit 1; }
[[ -f "$model" ]] || { echo "no model at $model (run scripts/setup.sh)" >&2; exit 1; }
if ! "$venv/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$version')" 2>/dev/null; then
  echo "installing llama-cpp-python[server]==$version into $venv (builds llama.cpp from source)"
  python3 -m venv "$venv"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/pip" install -q "llama-cpp-python[server]==$version"
fi

log="$(mktemp)"
"$venv/bin/python" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$port" \
  --n_threads "$(nproc)" --n_ctx 2048 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "the server died:" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 1
done
curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null || { echo "the server did not come up" >&2; exit 1; }

echo "llama-cpp-python $version on 127.0.0.1:$port"
"$ponder" bench remote --endpoint "http://127.0.0.1:$port/v1" --remote-model smollm2 \
  --template chatml --problems 2 --simulations 4 --threads 2 --parallel-trees 2 --concurrency 4 "$@"
