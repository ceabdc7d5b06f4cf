"""ponder's output files as Python lists of dicts (what `datasets.Dataset.from_list` takes)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL file (`pairs.jsonl`, `prm.jsonl`, `sft.jsonl`, a dataset).

    A torn last line (a run killed mid-write) is skipped; any other bad line raises
    `ValueError` naming the file and line.
    """
    out = []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):  # no newline after it: the last record was being written
                break
            raise ValueError(f"{os.fspath(path)}:{i}: not JSON: {e}") from None
    return out


def read_pairs(path: PathLike) -> list[dict[str, Any]]:
    """The preference pairs of a `pairs.jsonl` file (`ponder generate`, `Searcher.generate`),
    checked to carry `prompt`, `chosen` and `rejected`."""
    pairs = read_jsonl(path)
    for i, p in enumerate(pairs, 1):
        for k in ("prompt", "chosen", "rejected"):
            if not isinstance(p.get(k), str):
                raise ValueError(f"{os.fspath(path)}: record {i} has no string `{k}`")
    return pairs


def dpo_records(
    pairs: Union[PathLike, Iterable[dict[str, Any]]],
    tokenizer: Any = None,
    *,
    chat_template: Optional[Callable[[str], str]] = None,
    keep: Iterable[str] = ("problem_id", "depth", "label_smoothing"),
) -> list[dict[str, Any]]:
    """Pairs as TRL's `DPOTrainer` wants them: `prompt`, `chosen`, `rejected` strings.

    A pair's `prompt` is the task prompt followed by the shared steps (`prefix`). A chat model
    sees the task prompt as the user turn and the steps as the start of its own answer, so the
    chat template goes around the task prompt only: with `tokenizer` (a transformers
    tokenizer), `apply_chat_template([{"role": "user", "content": task_prompt}],
    add_generation_prompt=True)`; or any `chat_template(task_prompt) -> str`; with neither,
    the prompt stays plain text. `chosen`/`rejected` are the two next steps. The fields in
    `keep` are copied along (`label_smoothing` is MCTS-DPO's per-pair smoothing).
    """
    if isinstance(pairs, (str, os.PathLike)):
        pairs = read_pairs(pairs)
    if tokenizer is not None and chat_template is None:

        def chat_template(text: str) -> str:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )

    out = []
    for p in pairs:
        prefix = p.get("prefix", "")
        prompt = p["prompt"]
        if prefix and not prompt.endswith(prefix):
            raise ValueError(f"pair of {p.get('problem_id')}: `prompt` does not end with `prefix`")
        task_prompt = prompt[: len(prompt) - len(prefix)] if prefix else prompt
        head = chat_template(task_prompt) if chat_template else task_prompt
        rec = {"prompt": head + prefix, "chosen": p["chosen"], "rejected": p["rejected"]}
        for k in keep:
            if k in p:
                rec[k] = p[k]
        out.append(rec)
    return out
