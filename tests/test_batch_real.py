"""The embedded model's batched decoding, on the real packaged 0.5B model: the K samples of one prompt decoded
together give, on a short greedy reply, the text single-stream decoding gives; they keep their own seeds, stop at
the token limit, and a prompt too long for the window costs its samples, not the run. Its speed, and how often a
long greedy reply parts from the single-stream one, are benchmarks/throughput.py's."""
from __future__ import annotations

import pytest

from secondnature.models import LlamaModel

pytestmark = pytest.mark.real
ASK = [{"role": "system", "content": "Answer in one short sentence."},
       {"role": "user", "content": "What colour is the sky on a clear day, and why?"}]


@pytest.fixture(scope="module")
def policy(policy_path):
    return LlamaModel(policy_path)


def test_greedy_samples_decoded_together_are_the_single_stream_text(policy):
    together = policy.chat(ASK, n=4, max_tokens=32)
    alone = [policy.chat(ASK, n=1, max_tokens=32, seed=i)[0] for i in range(4)]
    assert [c.text for c in together] == [c.text for c in alone] and together[0].text
    assert all(c.completion_tokens == alone[0].completion_tokens and not c.error for c in together)


def test_sampled_replies_keep_their_seeds_and_the_token_limit(policy):
    a = policy.chat(ASK, n=4, temperature=1.0, max_tokens=12, seed=3)
    b = policy.chat(ASK, n=4, temperature=1.0, max_tokens=12, seed=3)
    assert [c.text for c in a] == [c.text for c in b]  # the same seeds, the same samples
    assert len({c.text for c in a}) > 1 and all(0 < c.completion_tokens <= 12 for c in a)


def test_a_prompt_longer_than_the_window_fails_its_samples_not_the_run(policy):
    huge = [{"role": "user", "content": "word " * 5000}]
    out = policy.chat(huge, n=4, max_tokens=8)
    assert len(out) == 4 and all(c.error and "context window" in c.error for c in out)
    assert policy.chat(ASK, n=4, max_tokens=8)[0].text  # and the model still answers
