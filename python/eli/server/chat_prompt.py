# eli/server/chat_prompt.py: the token ids of a chat prompt in which every string a client supplied
# is data, never control (RELIABILITY item 16; issue 20 item 4). Pure function of (job, tokenizer):
# the render worker (render_worker.py) runs it in a separate process; render_workers=0 runs it in a
# thread of the server. The rendering itself is the library's one data-safe path,
# eli.chat_template.render_chat_ids (every client string tracked through the template and tokenized
# as text); this module adds what only the server knows: the names a client may not set through
# chat_template_kwargs, the size bound derived from the context, and the 400 it answers with.
from __future__ import annotations

import inspect
from typing import Optional

from ..chat_template import kDefaultMaxOutputChars, render_chat, render_chat_ids
from ..errors import InvalidRequestError

# Template variables a client may not set through chat_template_kwargs: render_chat's own
# parameters (budgets, the template), the variables the server sets, and the names of the
# template's globals (shadowing raise_exception or namespace would change the template's code).
kReservedTemplateNames = frozenset(
    {"messages", "add_generation_prompt", "bos_token", "eos_token", "tools", "template",
     "time_budget_s", "max_output_chars", "raise_exception", "strftime_now", "namespace", "dict",
     "range", "lipsum", "cycler", "joiner"}
    | {p for p in inspect.signature(render_chat).parameters if p != "extra"})


class PromptError(ValueError):
    """A request the prompt cannot be built for (400), naming the offending field."""

    def __init__(self, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def build_prompt_ids(job: dict, tokenizer) -> list[int]:
    """Token ids for a chat job (validation.chat_job): keys template, messages, variables, tools
    (the request's validated tools for the template's `tools` variable, or None),
    add_generation_prompt, max_chars. Raises PromptError."""
    messages, variables = job["messages"], job["variables"]
    bad = sorted(set(variables) & kReservedTemplateNames)
    if bad:  # validation.chat_job refuses these first; checked again where they reach the template
        raise PromptError(f"chat_template_kwargs may not set {bad[0]!r}", param=f"chat_template_kwargs.{bad[0]}")
    if job.get("tools"):
        variables = dict(variables, tools=job["tools"])  # the server's own, after the check above
    try:
        return render_chat_ids(tokenizer, job["template"], messages, add_generation_prompt=job["add_generation_prompt"],
                               template_vars=variables,
                               max_output_chars=min(job["max_chars"], kDefaultMaxOutputChars))
    except (InvalidRequestError, ValueError) as e:
        raise PromptError(str(e), param="messages") from None
