#!/usr/bin/env python3
"""CI's check of `ponder serve` with the official `openai` Python client (pip-installed by
.ci/run): a served synthetic model answers a chat completion, a streamed chat completion and a
completion, 32 clients at once (batched together: /metrics shows more than one row per model call), a wrong key
is refused, --record writes the trees' pairs through the journal, and SIGTERM stops the server
cleanly.

    python3 scripts/check_serve.py target/debug/ponder
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai

binary = sys.argv[1]
env = dict(os.environ, PONDER_TEST_KEY="k-123")
record = tempfile.mkdtemp(prefix="ponder-record-")
server = subprocess.Popen(
    [binary, "-q", "serve", "--policy", "synthetic", "--port", "0",
     "--api-key-env", "PONDER_TEST_KEY", "--record", record],
    stdout=subprocess.PIPE, env=env, text=True)
try:
    line = server.stdout.readline()
    url = re.search(r"http://\S+", line).group(0)
    client = openai.OpenAI(base_url=url + "/v1", api_key="k-123", max_retries=0)
    q = "Start with 7. Add 3. Multiply by 2. What is the result?"
    r = client.chat.completions.create(
        model="ponder-mcts", messages=[{"role": "user", "content": q}],
        reasoning_effort="low", extra_body={"ponder": {"simulations": 16}})
    text = r.choices[0].message.content
    assert "The answer is 20" in text, text
    assert r.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="ponder-mcts", messages=[{"role": "user", "content": q}], stream=True,
        extra_body={"ponder": {"simulations": 16}})
    pieces = [ch.choices[0].delta.content or "" for ch in stream if ch.choices]
    assert "The answer is 20" in "".join(pieces), pieces
    c = client.completions.create(model="ponder-sc", prompt=q)
    assert "The answer is" in c.choices[0].text, c
    assert [m.id for m in client.models.list()] == ["ponder-mcts", "ponder-sc", "ponder-greedy"]

    def ask(i):
        return client.chat.completions.create(
            model="ponder-mcts",
            messages=[{"role": "user", "content": f"Start with {i}. Add 1. What is the result?"}],
            extra_body={"ponder": {"simulations": 12}}).model_extra["ponder"]["answer"]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, range(32)))
    assert all(a is not None for a in answers), answers
    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    rows = float(re.search(r"^ponder_policy_batch_size (\S+)$", metrics, re.M).group(1))
    assert rows > 1.0, f"not batched together: {rows} rows per model call"
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError:
        pass
    print(f"serve ok: {url}, 32 concurrent answers ({rows:.1f} rows per model call): {answers}")
finally:
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
assert code == 0, f"exit code {code} after SIGTERM"
recorded = [l for l in open(os.path.join(record, "journal.jsonl"))]
# MCTS answers (1 + 1 streamed + 32) and the self-consistency one: every finished tree.
assert len(recorded) == 35, len(recorded)
print(f"record ok: {len(recorded)} trees journaled")
shutil.rmtree(record)
