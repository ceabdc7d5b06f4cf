#!/usr/bin/env python3
"""The Python loop end to end: ponder generates step-level preference pairs with the installed
SmolLM2-135M-Instruct, `ponder.dpo_records` turns them into TRL rows, and one `DPOTrainer`
epoch trains the same model in transformers on them (loaded from the very GGUF ponder
searched with, dequantised by transformers; or `--hf` an HF model id or folder). Needs the
`ponder` package (maturin develop), `trl`, `transformers`, `gguf`, `datasets` and torch.

    python3 scripts/trl_roundtrip.py [--problems 16] [--simulations 16] [--hf ID_OR_FOLDER]
"""
import argparse
import json
import os
import tempfile
import time

import ponder

ap = argparse.ArgumentParser()
ap.add_argument("--hf", default=None, help="an HF model id or folder (default: the GGUF below)")
ap.add_argument("--gguf", default=os.path.expanduser("~/.cache/ponder/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--model", default="smollm2-135m", help="what ponder searches with")
ap.add_argument("--problems", type=int, default=16)
ap.add_argument("--simulations", type=int, default=16)
ap.add_argument("--out", default=None)
a = ap.parse_args()

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

out = a.out or tempfile.mkdtemp(prefix="ponder-trl-")
questions = [
    {"id": f"w{i}", "question": f"A box holds {i + 3} pens. Sam buys {i + 2} boxes. How many pens does Sam have?",
     "answer": str((i + 3) * (i + 2))}
    for i in range(a.problems)
]
t0 = time.time()
s = ponder.Searcher(a.model, simulations=a.simulations)
stats = s.generate(questions, os.path.join(out, "gen"), parallel_trees=4)  # resumes if there
t_gen = time.time() - t0
pairs_path = os.path.join(out, "gen", "pairs.jsonl")
src = dict(pretrained_model_name_or_path=a.hf) if a.hf else dict(
    pretrained_model_name_or_path=os.path.dirname(a.gguf), gguf_file=os.path.basename(a.gguf))
tok = AutoTokenizer.from_pretrained(**src)
rows = ponder.dpo_records(pairs_path, tok)
print(f"generated: {stats['done']} problems, {len(rows)} pairs in {t_gen:.0f} s")
if not rows:
    raise SystemExit("no pairs to train on: raise --problems or --simulations")
model = AutoModelForCausalLM.from_pretrained(**src)
if not a.hf:
    # transformers marks a GGUF-loaded model as quantised (and refuses to train or save it)
    # although it dequantised the weights: copy them into a plain model of the same config.
    conf = model.config
    if hasattr(conf, "quantization_config"):
        del conf.quantization_config
    plain, ref = AutoModelForCausalLM.from_config(conf), AutoModelForCausalLM.from_config(conf)
    plain.load_state_dict(model.state_dict())
    ref.load_state_dict(model.state_dict())
    model = plain
else:
    ref = None
train = Dataset.from_list(rows)
import torch  # noqa: E402

cpu = not torch.cuda.is_available()
cfg = DPOConfig(output_dir=os.path.join(out, "dpo"), num_train_epochs=1, per_device_train_batch_size=4,
                learning_rate=5e-6, logging_steps=1, report_to=[], save_strategy="no",
                use_cpu=cpu, bf16=not cpu)
t1 = time.time()
trainer = DPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=train, processing_class=tok)
result = trainer.train()
print(json.dumps({"pairs": len(rows), "train_loss": result.training_loss,
                  "train_seconds": round(time.time() - t1, 1), "out": out}))
