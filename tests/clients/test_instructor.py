# tests/clients/test_instructor.py: instructor over the openai client against `eli serve`, in TOOLS
# mode (a forced function call), JSON_SCHEMA mode (response_format json_schema) and JSON mode
# (response_format json_object: a JSON object is guaranteed; the schema is only described in the
# prompt, so a random model's object may not validate, and instructor's retry error is accepted
# as long as what the server sent was a JSON object).
from __future__ import annotations

import pytest

import json

from clients_common import MODEL_NAME, need
from client_schemas import City

pytestmark = pytest.mark.clients

MSG = [{"role": "user", "content": "Describe a city."}]


def _client(openai_client, mode_name):
    instructor = need("instructor")
    return instructor, instructor.from_openai(openai_client, mode=getattr(instructor.Mode, mode_name))


def test_tools_mode(openai_client):
    _, client = _client(openai_client, "TOOLS")
    out = client.chat.completions.create(model=MODEL_NAME, messages=MSG, response_model=City, max_retries=0,
                                         max_tokens=160, temperature=1.0, seed=10)
    assert isinstance(out, City)


def test_json_schema_mode(openai_client):
    _, client = _client(openai_client, "JSON_SCHEMA")
    out = client.chat.completions.create(model=MODEL_NAME, messages=MSG, response_model=City, max_retries=0,
                                         max_tokens=160, temperature=1.0, seed=11)
    assert isinstance(out, City)


def test_json_mode(openai_client):
    _, client = _client(openai_client, "JSON")
    from instructor.core import InstructorRetryException
    try:
        out, raw = client.chat.completions.create_with_completion(
            model=MODEL_NAME, messages=MSG, response_model=City, max_retries=0, max_tokens=200, temperature=0)
        assert isinstance(out, City)
    except InstructorRetryException as e:  # the object did not validate (or did not finish)
        raw = e.last_completion
        assert raw is not None, e
        if raw.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(raw.choices[0].message.content), dict)
