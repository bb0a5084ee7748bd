# tests/clients/test_pydantic_ai.py: pydantic-ai agents against `eli serve` (OpenAI chat model with a
# custom provider): output_type as a tool output (ToolOutput: a forced "final_result" call), as
# NativeOutput (response_format json_schema), and an agent with a function tool, whose calls and
# results go back to the server as tool-call history before the final output.
from __future__ import annotations

import pytest

from typing import Annotated

from pydantic import Field

from clients_common import API_KEY, MODEL_NAME, need
from client_schemas import City, Weather

pytestmark = pytest.mark.clients


def _model(eli_server):
    need("pydantic_ai")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(MODEL_NAME, provider=OpenAIProvider(base_url=eli_server, api_key=API_KEY))


SETTINGS = {"max_tokens": 160, "temperature": 1.0, "seed": 9}


def test_output_type_tool_output(eli_server):
    from_ai = need("pydantic_ai")
    agent = from_ai.Agent(_model(eli_server), output_type=from_ai.ToolOutput(City), model_settings=SETTINGS, retries=0)
    assert isinstance(agent.run_sync("Describe a city.").output, City)


def test_output_type_native(eli_server):
    from_ai = need("pydantic_ai")
    agent = from_ai.Agent(_model(eli_server), output_type=from_ai.NativeOutput(City), model_settings=SETTINGS,
                          retries=0)
    assert isinstance(agent.run_sync("Describe a city.").output, City)


def test_agent_with_a_tool(eli_server):
    from_ai = need("pydantic_ai")
    calls = []
    # ToolOutput: text output is not allowed, so every request forces a call (tool_choice required):
    # lookup_city or final_result; random weights pick arbitrarily, the grammar keeps both valid
    agent = from_ai.Agent(_model(eli_server), output_type=from_ai.ToolOutput(Weather),
                          model_settings=dict(SETTINGS, parallel_tool_calls=False), retries=0)

    async def once(ctx, tool_def):  # offered until called once, so the run ends with final_result
        return None if calls else tool_def

    @agent.tool_plain(prepare=once)
    def lookup_city(name: Annotated[str, Field(max_length=8)]) -> str:
        """Look a city up by name."""
        calls.append(name)
        return "a small town"

    result = agent.run_sync("What is the weather in Paris?",
                            usage_limits=from_ai.UsageLimits(request_limit=4))
    assert isinstance(result.output, Weather)
    # every request went through the server: history with tool calls and results rendered
    usage = result.usage if hasattr(result.usage, "requests") else result.usage()
    assert len(calls) <= 1 and usage.requests == len(calls) + 1
