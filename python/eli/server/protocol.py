# eli/server/protocol.py: the OpenAI-compatible request bodies (pydantic) and the error type the
# server answers with.
#
# Invariants: models only check JSON *shapes* and simple ranges (so pydantic's messages become
# 400s with the offending field as `param`); cross-field rules, context-length checks and the
# translation to eli.SamplingParams live in validation.py. Unknown fields are ignored (clients
# send vendor extras), as vLLM does. Every bound on an amplifying field is a constant here.
from __future__ import annotations

import re
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

kMaxN = 16                 # choices per prompt
kMaxLogprobs = 20          # completions `logprobs`, chat `top_logprobs`
kMaxPrompts = 64           # prompts in one completions request
kMaxBodyBytes = 8 << 20    # request body (413 above)
kMaxSeed = 2**64 - 1
kMaxLogprobEntries = 1 << 17  # sum over choices of max_tokens x (logprobs + 1) per request
kMaxCacheSaltChars = 256
kDefaultMaxTokens = 2048   # chat max_tokens when the request sets none (eli serve --max-tokens-default)

# "[file.cc:12: check failed: ...]": where a C++ error was raised; for bug reports, not for clients.
_INTERNAL_LOCATION = re.compile(r"\s*\[[\w./-]+\.(?:cc|cpp|cxx|cu|cuh|h|hpp):\d+(?:\]|: [^\n]*\])")


def public_message(message: str) -> str:
    """`message` without C++ source locations."""
    return _INTERNAL_LOCATION.sub("", message)


class ApiError(Exception):
    """An error answered as OpenAI-style JSON: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002
                 param: Optional[str] = None, code: Optional[str] = None):
        message = public_message(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Base):
    include_usage: Optional[StrictBool] = False
    continuous_usage_stats: Optional[StrictBool] = False


class _SamplingFields(_Base):
    model: Optional[str] = None
    n: StrictInt = Field(1, ge=1, le=kMaxN)
    temperature: Optional[float] = Field(None, ge=0.0, le=100.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    stop: Optional[Union[str, List[str]]] = None
    seed: Optional[StrictInt] = Field(None, ge=-(2**63), le=kMaxSeed)
    presence_penalty: Optional[float] = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: Optional[float] = Field(None, ge=-2.0, le=2.0)
    stream: Optional[StrictBool] = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    logit_bias: Optional[Dict[str, float]] = None
    # extensions (vLLM names)
    top_k: Optional[StrictInt] = Field(None, ge=-1)
    min_p: Optional[float] = Field(None, ge=0.0, le=1.0)
    repetition_penalty: Optional[float] = Field(None, gt=0.0)
    ignore_eos: Optional[StrictBool] = False
    stop_token_ids: Optional[List[StrictInt]] = None
    include_stop_str_in_output: Optional[StrictBool] = False
    skip_special_tokens: Optional[StrictBool] = True
    cache_salt: Optional[str] = Field(None, min_length=1, max_length=kMaxCacheSaltChars)


class CompletionRequest(_SamplingFields):
    prompt: Union[str, List[str], List[StrictInt], List[List[StrictInt]]]
    max_tokens: Optional[StrictInt] = 16
    logprobs: Optional[StrictInt] = Field(None, ge=0, le=kMaxLogprobs)
    echo: Optional[StrictBool] = False
    suffix: Optional[str] = None
    best_of: Optional[StrictInt] = None
    prompt_logprobs: Optional[StrictInt] = Field(None, ge=0, le=kMaxLogprobs)  # vLLM's extension


class ContentPart(_Base):
    type: str
    text: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, tool_calls... go to the template
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[str, List[ContentPart]]] = None


class ChatCompletionRequest(_SamplingFields):
    messages: List[ChatMessage] = Field(..., min_length=1)
    max_tokens: Optional[StrictInt] = None
    max_completion_tokens: Optional[StrictInt] = None
    logprobs: Optional[StrictBool] = False
    top_logprobs: Optional[StrictInt] = Field(None, ge=0, le=kMaxLogprobs)
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    parallel_tool_calls: Optional[StrictBool] = None
    response_format: Optional[Dict[str, Any]] = None
    prompt_logprobs: Optional[StrictInt] = Field(None, ge=0, le=kMaxLogprobs)  # vLLM's extension
    add_generation_prompt: StrictBool = True
    chat_template_kwargs: Optional[Dict[str, Any]] = None
