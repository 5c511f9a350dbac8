"""tfvtg.llm against the loopback OpenAI server, through the real ``openai`` client."""

from __future__ import annotations

import logging
import pickle
import socket

import pytest

from tests.fixtures.openai_server import Reply
from tfvtg.errors import InputError, LLMError
from tfvtg.llm import PLACEHOLDER_API_KEY, LLMEndpoint, LLMUnavailableError, chat

KEY = "sk-test-SECRET-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def endpoint(server, **kw) -> LLMEndpoint:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 1)
    return LLMEndpoint("test-model", server.base_url, KEY, **kw)


def test_resolve_none_without_model_key_or_url(monkeypatch):
    assert LLMEndpoint.resolve(None) is None
    assert LLMEndpoint.resolve("none", base_url="http://x/v1") is None
    assert LLMEndpoint.resolve(" ", api_key=KEY) is None
    assert LLMEndpoint.resolve("gpt-4o-mini") is None  # neither key nor URL anywhere
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    resolved = LLMEndpoint.resolve("gpt-4o-mini", timeout=7)
    assert (resolved.model, resolved.base_url, resolved.api_key) == ("gpt-4o-mini", None, KEY)
    assert resolved.timeout == 7


def test_resolve_local_server_needs_no_key(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    resolved = LLMEndpoint.resolve("qwen")
    assert resolved.base_url == "http://127.0.0.1:8000/v1"
    assert resolved.api_key == PLACEHOLDER_API_KEY
    assert LLMEndpoint.resolve("qwen", base_url="http://h:1/v1").base_url == "http://h:1/v1"  # argument wins


def test_key_hidden_from_repr_and_describe():
    ep = LLMEndpoint("m", "https://user:pw@example.com:8443/v1?token=abc", KEY)
    assert KEY not in repr(ep)
    assert ep.describe() == "model 'm' at https://example.com:8443/v1"


def test_invalid_settings_rejected():
    with pytest.raises(InputError, match="timeout"):
        LLMEndpoint("m", "http://h/v1", timeout=0)
    with pytest.raises(InputError, match="max_retries"):
        LLMEndpoint("m", "http://h/v1", max_retries=-1)


def test_good_answer_and_request(openai_server):
    openai_server.queue("hi there")
    assert chat(endpoint(openai_server), MESSAGES) == "hi there"
    (request,) = openai_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json["model"] == "test-model"
    assert request.json["temperature"] == 0
    assert request.messages == MESSAGES


def test_client_built_once_and_endpoint_pickles(openai_server):
    ep = endpoint(openai_server)
    assert ep.client() is ep.client()
    copy = pickle.loads(pickle.dumps(ep))
    assert copy == ep and copy.client() is not ep.client()


def test_500_then_success(openai_server):
    openai_server.queue(Reply(status=500), Reply(status=503), "ok")
    assert chat(endpoint(openai_server, max_retries=2), MESSAGES) == "ok"
    assert len(openai_server.requests) == 3


def test_5xx_bounded_then_unavailable(openai_server):
    openai_server.default = Reply(status=502, body={"error": {"message": "bad gateway"}})
    with pytest.raises(LLMUnavailableError, match=r"failed after 2 attempts: HTTP 502: bad gateway"):
        chat(endpoint(openai_server, max_retries=1), MESSAGES)
    assert len(openai_server.requests) == 2


def test_429_retry_after_is_honoured(openai_server):
    # Our backoff alone would wait at most 0.5 s: a gap of about 1 s shows the header was read.
    openai_server.queue(Reply(status=429, headers={"Retry-After": "1"}), "ok")
    assert chat(endpoint(openai_server), MESSAGES) == "ok"
    first, second = openai_server.requests
    assert second.received - first.received >= 0.95


def test_429_retry_after_ms_is_honoured(openai_server):
    openai_server.queue(Reply(status=429, headers={"retry-after-ms": "900"}), "ok")
    assert chat(endpoint(openai_server), MESSAGES) == "ok"
    first, second = openai_server.requests
    assert second.received - first.received >= 0.85


def test_429_retry_after_too_long_gives_up_at_once(openai_server):
    openai_server.default = Reply(status=429, headers={"Retry-After": "120"})
    with pytest.raises(LLMUnavailableError, match=r"HTTP 429.*wait 120 s, more than the 30 s"):
        chat(endpoint(openai_server, max_retries=3), MESSAGES)
    assert len(openai_server.requests) == 1


def test_timeout_is_unavailable(openai_server):
    openai_server.default = Reply(content="late", delay=10)
    with pytest.raises(LLMUnavailableError, match=r"failed after 1 attempt: no answer within 0.3 s"):
        chat(endpoint(openai_server, timeout=0.3, max_retries=0), MESSAGES)


def test_connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ep = LLMEndpoint("m", f"http://127.0.0.1:{port}/v1", KEY, timeout=2, max_retries=0)
    with pytest.raises(LLMUnavailableError, match="cannot connect"):
        chat(ep, MESSAGES)


def test_auth_error_fails_at_once_without_leaking_key(openai_server, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    openai_server.default = Reply(status=401, body=body)
    with pytest.raises(LLMError) as info:
        chat(endpoint(openai_server, max_retries=3), MESSAGES)
    assert not isinstance(info.value, LLMUnavailableError)
    assert len(openai_server.requests) == 1
    text = str(info.value)
    assert "HTTP 401" in text and "check the API key" in text and "\n" not in text
    assert KEY not in text and KEY not in caplog.text
    assert info.value.__cause__ is None


def test_server_rejecting_temperature_is_asked_without_it(openai_server):
    rejection = Reply(status=400, body={"error": {"message": "Unsupported parameter: 'temperature'"}})
    openai_server.queue(rejection, "first", "second")
    ep = endpoint(openai_server, max_retries=0)
    assert chat(ep, MESSAGES) == "first"
    assert chat(ep, MESSAGES) == "second"
    assert [("temperature" in r.json) for r in openai_server.requests] == [True, False, False]


def test_other_bad_request_fails(openai_server):
    openai_server.default = Reply(status=400, body={"error": {"message": "context too long"}})
    with pytest.raises(LLMError, match="HTTP 400: context too long"):
        chat(endpoint(openai_server), MESSAGES)
    assert len(openai_server.requests) == 1


def test_no_temperature_when_none(openai_server):
    openai_server.queue("x")
    chat(endpoint(openai_server), MESSAGES, temperature=None, max_tokens=5)
    assert "temperature" not in openai_server.requests[0].json
    assert openai_server.requests[0].json["max_tokens"] == 5
