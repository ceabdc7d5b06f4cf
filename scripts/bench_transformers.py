#!/usr/bin/env python3
"""The same measurement as `ponder bench policy` (greedy decoding after a shared prompt,
tokens/s at batch 1 and each batch given, prefill excluded) with HF transformers + torch, for
the README's side-by-side comparison. On a CUDA machine it runs on the GPU in fp32 and bf16;
on a CPU in fp32 with 2 threads (the development machine's cores).

    python3 scripts/bench_transformers.py MODEL.gguf 32 8           # the real model file
    python3 scripts/bench_transformers.py --random smollm2-135m 32 8,64
                                                    # random weights at the exact shape
"""
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

# Kept equal to `ponder_testkit::tiny_llama::Shape::named`.
SHAPES = {
    "smollm2-135m": dict(arch="llama", d=576, ffn=1536, layers=30, heads=9, kv=3, vocab=49152, rope=1e5),
    "qwen2.5-0.5b": dict(arch="qwen2", d=896, ffn=4864, layers=24, heads=14, kv=2, vocab=151936, rope=1e6),
    "llama-1b": dict(arch="llama", d=2048, ffn=8192, layers=16, heads=32, kv=8, vocab=128256, rope=5e5),
}

args = sys.argv[1:]
random_arch = None
if args[0] == "--random":
    random_arch, args = args[1], args[2:]
source, n_tokens, batches = (None if random_arch else args[0]), int(args[-2]), [int(b) for b in args[-1].split(",")]
cuda = torch.cuda.is_available()
if not cuda:
    torch.set_num_threads(2)


def build(dtype):
    if random_arch:
        s = SHAPES[random_arch]
        cls = transformers.Qwen2Config if s["arch"] == "qwen2" else transformers.LlamaConfig
        cfg = cls(vocab_size=s["vocab"], hidden_size=s["d"], intermediate_size=s["ffn"],
                  num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                  num_key_value_heads=s["kv"], max_position_embeddings=8192, rope_theta=s["rope"],
                  tie_word_embeddings=True)
        torch.manual_seed(7)
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        ids = list(range(300, 361))  # 61 tokens, the real chat prompt's length
    else:
        from pathlib import Path
        from transformers import AutoTokenizer
        path = Path(source)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
        q = "If Tom has 3 apples and buys 5 more, how many apples does he have?"
        prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                  f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
        ids = tok.encode(prompt, add_special_tokens=False)
    return model.to("cuda" if cuda else "cpu").eval(), ids


def sync():
    if cuda:
        torch.cuda.synchronize()


dtypes = [torch.float32, torch.bfloat16] if cuda else [torch.float32]
for dtype in dtypes:
    model, ids = build(dtype)
    name = str(dtype).removeprefix("torch.")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    with torch.no_grad():
        for b in [1] + batches:
            x = torch.tensor([ids] * b, device=model.device)
            out = model(x, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            start = time.perf_counter()
            for _ in range(n_tokens):
                out = model(nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            # The argmax's token ids come back to the host each step, as ponder's do.
            nxt.cpu()
            sync()
            secs = time.perf_counter() - start
            print(f"peer=transformers tokens_per_sec={b * n_tokens / secs:.1f} batch={b} dtype={name} "
                  f"(transformers {transformers.__version__}, torch {torch.__version__}, {where})")
    del model
