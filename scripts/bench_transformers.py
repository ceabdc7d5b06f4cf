#!/usr/bin/env python3
"""The same measurement as `ponder bench policy` (greedy decoding after the same chat prompt,
tokens/s at batch 1 and batch N, prefill excluded) with HF transformers + CPU torch, for the
README's side-by-side comparison.

    /tmp/refvenv/bin/python scripts/bench_transformers.py ~/.cache/ponder/models/SmolLM2-135M-Instruct.Q4_1.gguf 32 8
"""
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path, n_tokens, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
q = "If Tom has 3 apples and buys 5 more, how many apples does he have?"
prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
ids = tok.encode(prompt, add_special_tokens=False)
with torch.no_grad():
    for b in [1, batch]:
        x = torch.tensor([ids] * b)
        out = model(x, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        start = time.perf_counter()
        for _ in range(n_tokens):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        secs = time.perf_counter() - start
        print(f"tokens_per_sec={b * n_tokens / secs:.1f} batch={b} (transformers {torch.__version__} CPU, 2 threads)")
