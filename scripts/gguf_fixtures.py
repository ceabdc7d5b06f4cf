#!/usr/bin/env python3
"""Random quantised blocks of every block type ponder's GGUF reader dequantises, with the values
an independent implementation gives for them. Writes fixtures/gguf_blocks.json, which
policies/tests/suite/gguf_blocks.rs checks `ponder_policies::gguf::dequantize` against.

Made with gguf 0.19.0 and numpy 2.4.6 (Python 3.11):

    python3 -m venv /tmp/ggufvenv && /tmp/ggufvenv/bin/pip install gguf==0.19.0 numpy
    /tmp/ggufvenv/bin/python scripts/gguf_fixtures.py

The reference is `gguf.quants.dequantize` for every type but Q8_K, which that package lists
(block size only) but cannot dequantise; its values are computed here as ggml's
`dequantize_row_q8_K` defines them, `f32 d * i8 q`, in float32.

Each type gets two blocks of random bytes (fixed seed) whose f16 scale fields are overwritten
with small finite values, so no NaN or infinity appears and every value is compared exactly.
"""
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

BLOCKS = 2

# type -> byte offsets of its f16 scale fields (d, dmin, m) inside one block.
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.Q8_K: [],  # its scale is an f32, set below
    T.IQ4_NL: [0],
}


def q8_k(raw: np.ndarray) -> np.ndarray:
    """ggml's dequantize_row_q8_K: block = f32 d, 256 x i8 q, 16 x i16 sums (unused)."""
    blocks = raw.reshape(-1, 292)
    d = blocks[:, :4].copy().view(np.float32)
    q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def main() -> None:
    rng = np.random.default_rng(20240607)
    out = []
    for ty, fields in F16_FIELDS.items():
        per_block, size = GGML_QUANT_SIZES[ty]
        raw = rng.integers(0, 256, size=BLOCKS * size, dtype=np.uint8)
        for b in range(BLOCKS):
            for at in fields:
                h = np.array([rng.uniform(-0.5, 0.5)], dtype=np.float16).view(np.uint8)
                raw[b * size + at : b * size + at + 2] = h
            if ty == T.Q8_K:
                f = np.array([rng.uniform(-0.05, 0.05)], dtype=np.float32).view(np.uint8)
                raw[b * size : b * size + 4] = f
        if ty == T.Q8_K:
            vals = q8_k(raw)
            reference = "numpy (ggml dequantize_row_q8_K: d * q)"
        else:
            vals = dequantize(raw, ty).astype(np.float32).reshape(-1)
            reference = f"gguf {version('gguf')} quants.dequantize"
        assert vals.dtype == np.float32 and vals.size == BLOCKS * per_block
        assert np.all(np.isfinite(vals)), ty.name
        out.append(
            {
                "type": ty.name,
                "id": int(ty),
                "block_elements": per_block,
                "block_bytes": size,
                "reference": reference,
                "hex": raw.tobytes().hex(),
                # float32 -> Python float is exact, and json writes the shortest repr that
                # round-trips, so the Rust side reads back the same f32.
                "values": [float(v) for v in vals],
            }
        )
    path = Path(__file__).resolve().parent.parent / "fixtures" / "gguf_blocks.json"
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, "with", len(out), "types")


if __name__ == "__main__":
    main()
