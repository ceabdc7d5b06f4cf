#!/usr/bin/env python3
"""Checks the JSONL files `ponder generate` wrote: every line is valid JSON with the documented
fields. Usage: check_jsonl.py OUT_DIR"""
import json
import sys
from pathlib import Path

REQUIRED = {
    "pairs.jsonl": ["schema_version", "problem_id", "tree_id", "depth", "prompt", "chosen", "rejected",
                    "q_chosen", "q_rejected", "n_chosen", "n_rejected", "label_smoothing",
                    "final_correct", "critics"],
    "prm.jsonl": ["schema_version", "problem_id", "prompt", "completions", "labels", "mc_values",
                  "label_source"],
    "sft.jsonl": ["schema_version", "problem_id", "prompt", "completion", "answer", "score", "verified"],
}

def main() -> int:
    out = Path(sys.argv[1])
    for name, fields in REQUIRED.items():
        lines = (out / name).read_text().splitlines()
        if not lines:
            print(f"{name}: empty", file=sys.stderr)
            return 1
        for i, line in enumerate(lines, 1):
            rec = json.loads(line)
            missing = [f for f in fields if f not in rec]
            if missing:
                print(f"{name}:{i}: missing {missing}", file=sys.stderr)
                return 1
            if name == "pairs.jsonl":
                assert rec["q_chosen"] > rec["q_rejected"], f"{name}:{i}: chosen Q not above rejected"
                assert rec["chosen"] != rec["rejected"], f"{name}:{i}: identical steps"
                assert 0.0 <= rec["label_smoothing"] <= 0.5, f"{name}:{i}: label_smoothing"
            if name == "prm.jsonl":
                assert len(rec["completions"]) == len(rec["labels"]) == len(rec["mc_values"]), f"{name}:{i}"
        print(f"{name}: {len(lines)} records ok")
    return 0

if __name__ == "__main__":
    sys.exit(main())
