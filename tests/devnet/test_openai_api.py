"""The OpenAI stand-in, driven by the unchanged `openai` client as the AI worker will drive it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from devnet.openai_api import DEFAULT_DIMENSIONS, OpenAIStub, count_tokens, embed, sentiment_label

KEY = "sk-devnet-test"
EMBED_MODEL = "text-embedding-3-small"
CHAT_MODEL = "gpt-4o-mini"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_leftover_faults(stub: OpenAIStub) -> Iterator[None]:
    yield
    stub.clear_faults()


def client(stub: OpenAIStub, *, key: str = KEY, max_retries: int = 0, timeout: float = 5) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=stub.base_url, max_retries=max_retries, timeout=timeout)


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


# --- embeddings -----------------------------------------------------------------------------------


def test_embeddings_decode_in_both_encodings_with_the_right_dimension(stub: OpenAIStub) -> None:
    c = client(stub)
    text = "Ethereum gas fees spiked after the NFT mint"
    as_base64 = c.embeddings.create(model=EMBED_MODEL, input=text)  # the client asks for base64 by default
    as_float = c.embeddings.create(model=EMBED_MODEL, input=text, encoding_format="float")
    assert len(as_base64.data[0].embedding) == DEFAULT_DIMENSIONS
    assert as_base64.data[0].embedding == as_float.data[0].embedding
    assert np.allclose(as_float.data[0].embedding, embed(text))  # the plain function gives the same vector
    assert np.linalg.norm(as_float.data[0].embedding) == pytest.approx(1.0, abs=1e-5)

    small = c.embeddings.create(model=EMBED_MODEL, input=text, dimensions=64)
    small_float = c.embeddings.create(model=EMBED_MODEL, input=text, dimensions=64, encoding_format="float")
    assert len(small.data[0].embedding) == len(small_float.data[0].embedding) == 64


def test_embeddings_batch_keeps_order_and_counts_tokens(stub: OpenAIStub) -> None:
    texts = ["gm farcaster", "Solana validators restarted, again!", "x"]
    response = client(stub).embeddings.create(model=EMBED_MODEL, input=texts)
    assert [d.index for d in response.data] == [0, 1, 2]
    assert response.data[1].embedding == pytest.approx(embed(texts[1]).tolist())
    expected = sum(count_tokens(t) for t in texts)
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected == 9
    assert response.model == EMBED_MODEL


def test_similar_texts_are_closer_than_unrelated_ones(stub: OpenAIStub) -> None:
    texts = [
        "Ethereum gas fees are very high today",
        "gas fees on etherium are high today",  # reworded, with a typo
        "My cat loves sleeping on the warm windowsill",
    ]
    vectors = [d.embedding for d in client(stub).embeddings.create(model=EMBED_MODEL, input=texts).data]
    similar, unrelated = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert similar > 0.5
    assert similar > unrelated + 0.4


def test_bad_embedding_request_is_a_400(stub: OpenAIStub) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stub).embeddings.create(model=EMBED_MODEL, input="hi", dimensions=0)
    assert caught.value.status_code == 400


# --- chat -----------------------------------------------------------------------------------------


def test_chat_completion_returns_summary_sentiment_and_usage(stub: OpenAIStub) -> None:
    post = "I love the new Base bridge, transfers are fast. Fees are low too."
    response = client(stub).chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            {"role": "system", "content": "Summarize the post and give its sentiment."},
            {"role": "user", "content": f"Post:\n{post}"},
        ],
    )
    content = response.choices[0].message.content
    assert content == "Sentiment: positive\nSummary: I love the new Base bridge, transfers are fast."
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens > count_tokens(post)
    assert usage.completion_tokens == count_tokens(content)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_json_mode_and_plain_summary(stub: OpenAIStub) -> None:
    c = client(stub)
    as_json = c.chat.completions.create(
        model=CHAT_MODEL,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "What is the sentiment of: this rug pull was a total scam"}],
    )
    assert json.loads(as_json.choices[0].message.content or "") == {
        "summary": "What is the sentiment of: this rug pull was a total scam",
        "sentiment": "negative",
    }
    plain = c.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Validators met."}])
    assert plain.choices[0].message.content == "Validators met."


def test_sentiment_lexicon_handles_negation() -> None:
    assert sentiment_label("this is not good") == "negative"
    assert sentiment_label("this isn't bad at all") == "positive"
    assert sentiment_label("the block was produced") == "neutral"


def test_models_are_listed(stub: OpenAIStub) -> None:
    ids = {m.id for m in client(stub).models.list()}
    assert {EMBED_MODEL, CHAT_MODEL} <= ids


# --- auth and faults ------------------------------------------------------------------------------


def test_wrong_or_missing_key_is_a_401(stub: OpenAIStub) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(stub, key="sk-wrong-key-1234").embeddings.create(model=EMBED_MODEL, input="hi")
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "invalid_api_key"
    assert "sk-wrong-key-1234" not in str(caught.value)  # the key is masked, never echoed

    request = urllib.request.Request(stub.base_url + "/models")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=5)
    assert missing.value.code == 401
    assert "error" in json.loads(missing.value.read())


def test_rate_limit_raises_after_honouring_retry_after(stub: OpenAIStub) -> None:
    stub.inject_fault("rate_limit", count=5, path_prefix="/v1/embeddings", retry_after=0.01)
    before = stub.request_count("/v1/embeddings")
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client(stub, max_retries=2).embeddings.create(model=EMBED_MODEL, input="hi")
    assert time.monotonic() - started < 1.0  # retry-after-ms: 10 was honoured, not the 0.5 s default backoff
    assert stub.request_count("/v1/embeddings") - before == 3
    assert caught.value.status_code == 429
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after-ms"] == "10"
    assert caught.value.response.headers["retry-after"] == "1"
    assert [f.remaining for f in stub.pending_faults()] == [2]


def test_one_rate_limit_is_retried_through(stub: OpenAIStub) -> None:
    stub.inject_fault("429", count=1, path_prefix="/v1/chat")
    response = client(stub, max_retries=1).chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hello"}]
    )
    assert response.choices[0].message.content == "hello"
    statuses = [(r.status, r.fault) for r in list(stub.requests)[-2:]]
    assert statuses == [(429, "429"), (200, None)]


def test_faults_injected_over_http(stub: OpenAIStub) -> None:
    control = stub.url + "/_devnet/fault"
    post_json(control, {"kind": "server_error", "count": 1, "path_prefix": "/v1/embeddings"})
    with pytest.raises(openai.InternalServerError):
        client(stub).embeddings.create(model=EMBED_MODEL, input="hi")

    post_json(control, {"kind": "truncated", "path_prefix": "/v1/embeddings"})
    with pytest.raises(ValueError):  # the client raises json.JSONDecodeError on a cut-off body
        client(stub).embeddings.create(model=EMBED_MODEL, input="hi")

    post_json(control, {"kind": "disconnect", "path_prefix": "/v1/embeddings"})
    with pytest.raises(openai.APIConnectionError):
        client(stub).embeddings.create(model=EMBED_MODEL, input="hi")

    listed = post_json(control, {"kind": "slow", "delay": 0.5, "path_prefix": "/v1/models"})
    assert listed["faults"][0]["kind"] == "slow"
    with pytest.raises(openai.APITimeoutError):
        client(stub, timeout=0.1).models.list()

    with pytest.raises(urllib.error.HTTPError) as bad:
        post_json(control, {"kind": "meteor"})
    assert bad.value.code == 400


def test_runs_as_a_module_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devnet.openai_api", "--port", "0", "--api-key", KEY],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        c = openai.OpenAI(api_key=KEY, base_url=url + "/v1", max_retries=0, timeout=5)
        assert len(c.embeddings.create(model=EMBED_MODEL, input="gm").data[0].embedding) == DEFAULT_DIMENSIONS
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
