#!/usr/bin/env bash
# Fuzzes every target (or the ones named) for SECONDS each, JOBS at a time, and prints a table:
# executions, corpus size, and the crashes, hangs and out-of-memory inputs found (saved under
# fuzz/artifacts/<target>/; a fixed one goes to fuzz/regressions/<target>/, which the normal
# test suite replays).
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [-r RUNS] [target ...]
#
# With -r, each target instead runs RUNS inputs (or SECONDS, whichever ends first) from seed 1
# in one process, from the seeds alone: a short run, the same inputs on every machine (what
# CI does). The exit status is 1 when anything was
# found.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds with
# `cargo +nightly fuzz build -s none -a` (no sanitizer: the code under test has no `unsafe`;
# debug assertions and overflow checks on) into $FUZZ_TARGET_DIR (default
# ~/.cache/ponder/fuzz-target), seeds fuzz/corpus/ from `ponder-hostile`'s seeds (built in
# $CARGO_TARGET_DIR, default ~/.cache/ponder/target), then runs libFuzzer with a 2 GiB RSS
# limit and a 10 s per-input timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=600
JOBS=1
RUNS=
while getopts "t:j:r:" o; do
  case $o in
    t) SECONDS_EACH=$OPTARG ;;
    j) JOBS=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    *) echo "usage: $0 [-t SECONDS] [-j JOBS] [-r RUNS] [target ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/ponder/fuzz-target}
MAIN_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ponder/target}
ALL=(gguf safetensors tokenizer_json tokenize jsonl journal config_toml model_text remote_answer serve_request)
TARGETS=("${@:-${ALL[@]}}")
[ $# -eq 0 ] && TARGETS=("${ALL[@]}")
# The short run (-r) builds the fuzz workspace in the dev profile (quick to compile, as CI
# builds nothing with --release); a campaign builds it optimised.
PROFILE=release
DEV=
if [ -n "$RUNS" ]; then PROFILE=debug; DEV=--dev; fi
CARGO_TARGET_DIR=$FUZZ_TARGET_DIR cargo +nightly fuzz build $DEV -s none -a >&2
# The seeds come from the main workspace's debug build (its own target folder).
CARGO_TARGET_DIR=$MAIN_TARGET_DIR cargo run -q -p ponder-hostile --example seeds -- fuzz/corpus >&2
BIN=$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/$PROFILE
mkdir -p fuzz/logs
run() {
  local t=$1
  mkdir -p "fuzz/artifacts/$t"
  if [ -n "$RUNS" ]; then
    # The seeds only (a fresh corpus folder): the same inputs on every machine.
    rm -rf "fuzz/corpus-ci/$t" && mkdir -p "fuzz/corpus-ci/$t" && cp "fuzz/corpus/$t"/seed-* "fuzz/corpus-ci/$t/"
    "$BIN/$t" "fuzz/corpus-ci/$t" -artifact_prefix="fuzz/artifacts/$t/" -seed=1 -runs="$RUNS" \
      -max_total_time="$SECONDS_EACH" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1 || true
  else
    "$BIN/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
      -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
      -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1 || true
  fi
}
active=0
for t in "${TARGETS[@]}"; do
  run "$t" &
  active=$((active + 1))
  if [ "$active" -ge "$JOBS" ]; then wait -n; active=$((active - 1)); fi
done
wait
found=0
printf '%-16s %8s %12s %8s %8s %8s %8s\n' target seconds execs corpus crashes hangs ooms
for t in "${TARGETS[@]}"; do
  log=fuzz/logs/$t.log
  # (`|| true`: a pattern missing from a log is a blank cell, not the end of the script.)
  execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  cdir=fuzz/corpus
  [ -n "$RUNS" ] && cdir=fuzz/corpus-ci
  corpus=$(find "$cdir/$t" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -name 'crash-*' | wc -l)
  hangs=$(find "fuzz/artifacts/$t" -name 'timeout-*' | wc -l)
  ooms=$(find "fuzz/artifacts/$t" -name 'oom-*' | wc -l)
  secs=$(grep -oE 'time: [0-9]+s' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  secs=${secs:-$(grep -oE 'in [0-9]+ second' "$log" | grep -oE '[0-9]+' || true)}
  printf '%-16s %8s %12s %8s %8s %8s %8s\n' "$t" "${secs:-?}" "${execs:-0}" "$corpus" "$crashes" "$hangs" "$ooms"
  found=$((found + crashes + hangs + ooms))
done
if [ "$found" -gt 0 ]; then
  echo "found $found inputs that crash, hang or run out of memory: fuzz/artifacts/" >&2
  exit 1
fi
