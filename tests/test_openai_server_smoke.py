"""Smoke test: a real ``transformers serve`` answers an OpenAI chat completion for the tiny model."""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from openai_server import serve_openai  # noqa: E402
from tiny import build_tiny_model  # noqa: E402


def test_chat_completion_against_real_server(tmp_path):
    model_dir = build_tiny_model(tmp_path / "tiny")
    with serve_openai(model_dir, timeout=45) as (base_url, model_name):
        client = openai.OpenAI(base_url=base_url, api_key="unused", timeout=20, max_retries=0)
        resp = client.chat.completions.create(
            model=model_name,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=5,
            temperature=0,
        )
    assert isinstance(resp.choices[0].message.content, str)
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert 1 <= resp.usage.completion_tokens <= 5
