#!/usr/bin/env python3
"""llama.cpp on the same measurement as `ponder bench policy` (greedy decoding of N tokens after
the same chat prompt, one stream, prefill excluded; also printed with the prefill included),
for the README's side-by-side comparison. Needs llama-cpp-python (0.3.36 builds from its sdist:
`pip install llama-cpp-python==0.3.36`, about 17 minutes on 2 cores).

    ~/.cache/ponder/llama-venv/bin/python scripts/bench_llamacpp.py \
        ~/.cache/ponder/models/SmolLM2-135M-Instruct.Q4_1.gguf 32 2
"""
import sys
import time

import llama_cpp
from llama_cpp import Llama

path, n_tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=512, n_threads=threads, n_threads_batch=threads,
            n_batch=512, verbose=False)
q = "If Tom has 3 apples and buys 5 more, how many apples does he have?"
prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
for run in range(3):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    for _ in range(n_tokens):
        logits = llm.scores[llm.n_tokens - 1]
        nxt = int(logits.argmax())
        llm.eval([nxt])
    t2 = time.perf_counter()
    print(f"tokens_per_sec={n_tokens / (t2 - t1):.1f} batch=1 with_prefill={n_tokens / (t2 - t0):.1f} "
          f"prompt_tokens={len(ids)} (llama.cpp {llama_cpp.__version__}, {threads} threads, run {run})")
