#!/usr/bin/env python3
"""CI's check of `ponder serve` with the official `openai` Python client (pip-installed by
.ci/run): a served synthetic model answers a chat completion and a completion, 8 clients at
once, a wrong key is refused, and SIGTERM stops the server cleanly.

    python3 scripts/check_serve.py target/debug/ponder
"""
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import openai

binary = sys.argv[1]
env = dict(os.environ, PONDER_TEST_KEY="k-123")
server = subprocess.Popen(
    [binary, "-q", "serve", "--policy", "synthetic", "--port", "0", "--api-key-env", "PONDER_TEST_KEY"],
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
    c = client.completions.create(model="ponder-sc", prompt=q)
    assert "The answer is" in c.choices[0].text, c
    assert [m.id for m in client.models.list()] == ["ponder-mcts", "ponder-sc", "ponder-greedy"]

    def ask(i):
        return client.chat.completions.create(
            model="ponder-mcts",
            messages=[{"role": "user", "content": f"Start with {i}. Add 1. What is the result?"}],
            extra_body={"ponder": {"simulations": 12}}).model_extra["ponder"]["answer"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert all(a is not None for a in answers), answers
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError:
        pass
    print(f"serve ok: {url}, 8 concurrent answers {answers}")
finally:
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
assert code == 0, f"exit code {code} after SIGTERM"
