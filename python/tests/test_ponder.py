"""ponder from Python, on the synthetic test double and the tiny test GGUF (CI builds the
extension in debug with `maturin develop` into a venv and runs these with pytest)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import ponder
from ponder import _native

Q = "Start with 7. Add 3. Multiply by 2. What is the result?"


def synthetic(**kw):
    return ponder.Searcher(policy="synthetic", **kw)


def test_search_answers_with_the_chosen_solution():
    s = synthetic(simulations=32)
    r = s.search(Q, gold="20")
    assert r.answer == "20" and r.correct is True
    assert r.steps and "The answer is 20" in r.text
    assert 0.0 <= r.score <= 1.0
    assert r.stats["simulations"] == 32 and r.stats["tokens"] > 0
    tree = r.tree
    assert len(tree["nodes"]) > 1 and tree["question"] == Q
    assert all({"prompt", "chosen", "rejected"} <= set(p) for p in r.pairs)
    d = r.to_dict()
    assert d["answer"] == "20" and "tree" not in d
    assert s.config["search"]["budget"]["simulations"] == 32


def test_settings_are_validated_with_the_field_named():
    with pytest.raises(ponder.PonderError, match="simulations"):
        synthetic(simulations=0)
    with pytest.raises(ponder.PonderError, match="colour"):
        synthetic(search__colour=1)
    with pytest.raises(ValueError, match="unknown kind"):
        synthetic(critics={"taste": lambda b: [0.5] * len(b)})


def test_search_many_keeps_order_and_reports_progress():
    qs = [f"Start with {i}. Add 1. What is the result?" for i in range(12)]
    qs[3] = {"question": qs[3], "answer": "4", "id": "third"}
    seen = []
    s = synthetic(simulations=16)
    rs = s.search_many(qs, parallel_trees=4, progress=lambda done, total: seen.append((done, total)))
    assert [r.id for r in rs][:4] == ["q0", "q1", "q2", "third"]
    assert [r.answer for r in rs] == [str(i + 1) for i in range(12)]
    assert rs[3].correct is True and rs[0].correct is None
    assert seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_python_critic_changes_the_chosen_answer():
    # The oracle critics steer MCTS to 20; critics that love a wrong answer the policy also
    # proposes steer it there instead.
    base = synthetic(simulations=48).search(Q)
    assert base.answer == "20"
    wrong = next(n["answer"] for n in base.tree["nodes"] if n["terminal"] and n["answer"] not in (None, "20"))
    calls = []

    def loves_wrong(paths):
        calls.append(len(paths))
        return [1.0 if f"The answer is {wrong}" in p["text"] else 0.0 for p in paths]

    s = synthetic(simulations=48, critics={"value": loves_wrong, "prm": loves_wrong, "orm": loves_wrong})
    r = s.search(Q)
    assert calls and sum(calls) > 0
    assert r.answer == wrong, (r, wrong)


def test_a_python_critic_that_raises_is_a_clean_error():
    def broken(paths):
        raise RuntimeError("reward model offline")

    s = synthetic(simulations=8, critics={"prm": broken})
    with pytest.raises(ponder.PonderError, match="reward model offline"):
        s.search(Q)
    # The searcher stays usable for the next call (the error was the call's, not its state).
    with pytest.raises(ponder.PonderError):
        s.search(Q)


def test_a_python_critic_returning_the_wrong_shape_is_named():
    s = synthetic(simulations=8, critics={"prm": lambda paths: []})
    with pytest.raises(ponder.PonderError, match="python:prm"):
        s.search(Q)


class Strict:
    """A task that reads answers like the synthetic one but refuses every gold check."""

    name = "strict"

    def __init__(self):
        self.prompts = 0

    def prompt(self, question):
        self.prompts += 1
        return question

    def extract_answer(self, text):
        marker = "The answer is "
        if marker not in text:
            return None
        return text.rsplit(marker, 1)[1].strip().rstrip(".")

    def check(self, answer, gold):
        return False


def test_a_python_task_reads_and_checks_the_answers():
    t = Strict()
    s = synthetic(simulations=24, task=t)
    r = s.search(Q, gold="20")
    assert t.prompts >= 1
    assert r.answer == "20" and r.correct is False


def test_a_python_task_that_raises_is_a_clean_error():
    class Bad(Strict):
        def extract_answer(self, text):
            raise KeyError("no parser")

    with pytest.raises(ponder.PonderError, match="extract_answer.*no parser"):
        synthetic(simulations=8, task=Bad()).search(Q)
    with pytest.raises(TypeError, match="check"):
        synthetic(task=object())


def test_the_tiny_gguf_model_searches(tmp_path):
    path = tmp_path / "tiny.gguf"
    _native.write_test_gguf(str(path), 7)
    # Random weights answer nonsense: short steps keep it inside the tiny model's context.
    s = ponder.Searcher(str(path), simulations=3, policy__step__max_tokens=4,
                        critics={"value": lambda b: [0.5] * len(b)})
    r = s.search("What is 2 + 2?")
    assert r.stats["simulations"] == 3 and r.stats["tokens"] > 0
    assert r.tree["nodes"]


def test_generate_writes_the_journal_and_resumes_after_a_kill(tmp_path):
    out = tmp_path / "run"
    # Many more problems than the kill waits for, so that a starved test process cannot miss the
    # run: the kill lands mid-run however loaded the machine is.
    n = 200
    qs = [f"Start with {i}. Add 2. Multiply by 3. What is the result?" for i in range(n)]
    data = tmp_path / "qs.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": q}) + "\n" for i, q in enumerate(qs)))
    script = (
        "import sys, ponder\n"
        "s = ponder.Searcher(policy='synthetic', simulations=64)\n"
        "s.generate(sys.argv[1], sys.argv[2], parallel_trees=1)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(data), str(out)])
    journal = out / "journal.jsonl"
    # Kill by progress: once a few problems are journaled (never by a guessed time).
    deadline = time.time() + 300
    while not (journal.exists() and journal.read_text().count("\n") >= 3):
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = journal.read_text().count("\n")
    assert done_before < n
    stats = synthetic(simulations=64).generate(str(data), str(out), parallel_trees=2)
    assert stats["done"] == n, stats
    entries = ponder.read_jsonl(journal)
    assert sorted(e["problem_id"] for e in entries) == sorted(f"p{i}" for i in range(n))
    pairs = ponder.read_pairs(out / "pairs.jsonl")
    assert len(pairs) == sum(e["records"]["pairs.jsonl"] for e in entries)


def test_dpo_records_template_the_task_prompt_only(tmp_path):
    out = tmp_path / "run"
    synthetic(simulations=48).generate([Q, "Start with 2. Add 5. What is the result?"], str(out))
    pairs = ponder.read_pairs(out / "pairs.jsonl")
    assert pairs
    recs = ponder.dpo_records(out / "pairs.jsonl", chat_template=lambda t: f"<user>{t}</user><assistant>")
    for p, r in zip(pairs, recs):
        assert r["prompt"].startswith("<user>") and r["prompt"].endswith("<assistant>" + p["prefix"])
        assert (r["chosen"], r["rejected"]) == (p["chosen"], p["rejected"])
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(recs)
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    assert all(isinstance(ds[0][k], str) for k in ("prompt", "chosen", "rejected"))
    assert len(ds) == len(pairs)


def test_read_jsonl_skips_a_torn_last_line_and_names_a_bad_one(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert ponder.read_jsonl(f) == [{"a": 1}, {"a": 2}]
    f.write_text('{"a": 1}\nnope\n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2"):
        ponder.read_jsonl(f)


def test_ctrl_c_cancels_a_long_search():
    # A child process searches with a huge budget; its value critic says `searching` once, so
    # SIGINT lands while the search runs (driven by progress, not by time). It must end with
    # KeyboardInterrupt promptly: the search is cancelled, not run to its budget.
    script = (
        "import ponder, sys\n"
        "said = []\n"
        "def value(paths):\n"
        "    if not said:\n"
        "        said.append(1); print('searching', flush=True)\n"
        "    return [0.5] * len(paths)\n"
        "s = ponder.Searcher(policy='synthetic', simulations=100000000, wall_seconds=600,\n"
        "                    critics={'value': value})\n"
        "try:\n"
        "    s.search('Start with 7. Add 3. Multiply by 2. What is the result?')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(3)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "searching"
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 3 and "interrupted" in out
