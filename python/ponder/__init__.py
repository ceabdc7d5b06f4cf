"""ponder: Monte Carlo tree search over reasoning steps, from Python.

    import ponder
    s = ponder.Searcher("smollm2-135m", simulations=32)
    r = s.search("If Tom has 3 apples and buys 5 more, how many does he have?")
    print(r.answer, r.score, r.text)

`Searcher` loads a model (a GGUF file, an HF folder, an installed model's name, or
`endpoint=` an OpenAI-compatible server) and its critics once; `search`, `search_many` and
`generate` run the Rust engine with the interpreter released. Python callables can be the
critics (`critics={"prm": f}`) and an object the task (`task=`). `read_jsonl`, `read_pairs`
and `dpo_records` turn ponder's output files into lists of dicts for
`datasets.Dataset.from_list` and TRL's `DPOTrainer`.
"""

from ._native import PonderError, Result, Searcher, __version__
from .data import dpo_records, read_jsonl, read_pairs

__all__ = [
    "PonderError",
    "Result",
    "Searcher",
    "__version__",
    "dpo_records",
    "read_jsonl",
    "read_pairs",
]
