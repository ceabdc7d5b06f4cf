#!/usr/bin/env bash
# CI's browser check of `ponder view`: a synthetic search's tree drawn as HTML, loaded in headless
# Chromium (Debian's package, installed when missing), must render one element per node and
# highlight the answer path (root to chosen node). Optionally writes a screenshot.
#
#   scripts/check_view.sh PONDER_BINARY [SCREENSHOT.png]
set -euo pipefail
P="$1"
shot="${2:-}"
if ! command -v chromium > /dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$P" -q search --policy synthetic --synthetic 1 --level 3 --simulations 40 \
  --dump-tree "$work/tree.json" > /dev/null
"$P" -q view "$work/tree.json" --out "$work/tree.html"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$work/profile")
timeout 120 "${chrome[@]}" --dump-dom "file://$work/tree.html" 2> /dev/null > "$work/dom.html"
python3 - "$work/tree.json" "$work/dom.html" <<'PY'
import json, re, sys
tree = json.load(open(sys.argv[1]))
dom = open(sys.argv[2]).read()
nodes = len(re.findall(r'class="node[ "]', dom))
path = len(re.findall(r'class="node[^"]*on-path', dom))
by_id = {n["id"]: n for n in tree["nodes"]}
want_path = by_id[tree["answer"]["node"]]["depth"] + 1
assert nodes == len(tree["nodes"]), (nodes, len(tree["nodes"]))
assert path == want_path, (path, want_path)
assert f'data-rendered="{nodes}"' in dom
# The pairs `generate` would take from this tree: marked on their nodes.
pairs = tree.get("pairs", [])
assert pairs, "the dump carries no preference pairs"
assert f'data-pairs="{len(pairs)}"' in dom
chosen = len(re.findall(r'class="pair-chosen"', dom))
assert chosen == len({p["chosen"] for p in pairs}), (chosen, pairs)
print(f"view ok: {nodes} nodes rendered, answer path of {path} highlighted, {len(pairs)} pairs marked")
PY
if [[ -n $shot ]]; then
  timeout 120 "${chrome[@]}" --screenshot="$shot" --window-size=1280,720 \
    "file://$work/tree.html" 2> /dev/null
fi
