#!/usr/bin/env python3
# bench/cpu_structured_bench.py: the speed of constrained decoding on the CPU (issue "Structured
# output"): eli (llguidance) against llama.cpp's GBNF on the same grammar, on the default model
# (SmolLM2-135M-Instruct Q4_1 GGUF), batch 1, the same thread count for both engines.
#
# Cases (CASES below), in increasing grammar complexity: a flat object schema, nested objects with
# arrays and enums, a pydantic-like schema ($defs/$ref, anyOf with null, optional fields), free
# JSON (json_object) and one regex. Each case has one chat prompt (rendered once with the model's
# chat template by eli; both engines get the very same prompt token ids) and one grammar:
#   eli:       eli.SamplingParams(json_schema=... | json_object=True | regex=...)
#   llama.cpp: llama_cpp.LlamaGrammar.from_json_schema (llama.cpp's own JSON-schema -> GBNF
#              converter) for the schemas ({"type": "object"} for json_object), a hand-written GBNF
#              of the same language for the regex.
# Per case and engine, interleaved over --reps repetitions after --warmup:
#   constrained: greedy under the grammar, until the grammar ends (EOS) or max_tokens;
#   plain:       then the same prompt, greedy, EOS ignored, as many tokens as that constrained run
#                generated (the same positions: the same attention cost per token).
#   decode tok/s = (generated tokens - 1) / time of the steps after the first generated token
#   (the prompt's forward and the first sample are the "prefill"; the tokens actually generated
#   are counted, so a constrained run that ends early is still a fair rate; the final EOS step
#   of a constrained run is timed for llama.cpp, not counted as a token by either engine).
# Reported: decode tok/s of both modes, ratio constrained / plain per engine, eli constrained /
# llama.cpp constrained, eli's host time per token in the grammar (llguidance mask + token accept,
# timed around eli.structured's constraint calls in the worker, which run on the engine's step
# thread), llama.cpp's sampling time per token (grammar + greedy), and "valid": how many
# constrained outputs parse and match their schema (jsonschema) / full-match the regex; an output
# cut at max_tokens counts as invalid.
#
# Engines:
#   eli: eli.SamplingParams(json_schema=... etc.).engine_params(...) (the constraint the public API
#     attaches: a fresh llguidance matcher per request) on the synchronous compiled engine
#     (_eli.Engine add_request/step, stepped from the worker, with the native GGUF kernels, as
#     bench/cpu_bench.py's "eli" rows): each step's wall time, the mask filled on the host within the
#     step. eli.LLM is loaded first only for the tokenizer, the chat template and the EOS ids.
#   llama.cpp (llama-cpp-python's low-level API, as bench/cpu_bench.py): llama_decode of one token
#     per step, then sampling as llama-server / llama-cli do it (common_sampler: a greedy pick on the
#     raw logits, checked against the grammar alone; only if the grammar rejects it, the grammar
#     runs over the whole vocabulary and the pick is redone), the "resample" mode. --llama-modes
#     chain adds the plain sampler chain [grammar, greedy] (the grammar over the whole vocabulary
#     at every step: llama_sampler_sample).
# Each engine runs in its own subprocess (one engine's idle threads never compete with the other's).
#
# Output: a table and JSON in bench/results/<date>_<cpu-short-name>_cpu_structured.json.
# Usage: PYTHONPATH=python python bench/cpu_structured_bench.py [--threads 2] [--reps 5]
#        [--max-tokens 128] [--cases flat,nested,pydantic,json_object,regex] [--engines eli,llama.cpp]
#        [--llama-modes resample[,chain]] [--model smollm2|PATH] [--out PATH] [--no-json]
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from cpu_bench import _spread, llama_open, cpu_busy, cpu_name, cpu_short_name, eli_build, git_commit, load_avg, wait_idle  # noqa: E402

# ---- the cases --------------------------------------------------------------------------------
FLAT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 32},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "maxLength": 32},
        "employed": {"type": "boolean"},
    },
    "required": ["name", "age", "city", "employed"],
    "additionalProperties": False,
}

NESTED = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1, "maximum": 999999},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 32},
                           "tier": {"enum": ["gold", "silver", "bronze"]}},
            "required": ["name", "tier"], "additionalProperties": False},
        "items": {
            "type": "array", "minItems": 1, "maxItems": 4,
            "items": {"type": "object",
                      "properties": {"product": {"type": "string", "maxLength": 24},
                                     "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                                     "category": {"enum": ["book", "food", "tool", "toy"]}},
                      "required": ["product", "quantity", "category"], "additionalProperties": False}},
        "status": {"enum": ["pending", "shipped", "delivered"]},
    },
    "required": ["order_id", "customer", "items", "status"],
    "additionalProperties": False,
}

# What pydantic's model_json_schema() writes for Person(name, age, address: Address,
# pets: list[Pet] (max 3), nickname: str | None = None) with extra="forbid".
PYDANTIC = {
    "$defs": {
        "Address": {"additionalProperties": False, "title": "Address", "type": "object",
                    "properties": {"street": {"title": "Street", "type": "string", "maxLength": 32},
                                   "city": {"title": "City", "type": "string", "maxLength": 24},
                                   "country": {"title": "Country", "type": "string", "maxLength": 24}},
                    "required": ["street", "city", "country"]},
        "Pet": {"additionalProperties": False, "title": "Pet", "type": "object",
                "properties": {"name": {"title": "Name", "type": "string", "maxLength": 16},
                               "species": {"enum": ["cat", "dog", "bird", "fish"], "title": "Species",
                                           "type": "string"},
                               "age": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 40},
                                                 {"type": "null"}], "default": None, "title": "Age"}},
                "required": ["name", "species"]},
    },
    "additionalProperties": False, "title": "Person", "type": "object",
    "properties": {"name": {"title": "Name", "type": "string", "maxLength": 32},
                   "age": {"title": "Age", "type": "integer", "minimum": 0, "maximum": 150},
                   "address": {"$ref": "#/$defs/Address"},
                   "pets": {"items": {"$ref": "#/$defs/Pet"}, "maxItems": 3, "title": "Pets", "type": "array"},
                   "nickname": {"anyOf": [{"type": "string", "maxLength": 16}, {"type": "null"}],
                                "default": None, "title": "Nickname"}},
    "required": ["name", "age", "address", "pets"],
}

REGEX = r"[A-Z][a-z]{1,15} [A-Z][a-z]{1,15} was born on [0-9]{4}-[0-9]{2}-[0-9]{2} in [A-Z][a-z]{1,15}\."
# The same language in GBNF (llama.cpp has no regex sampler).
REGEX_GBNF = ('root ::= [A-Z] [a-z]{1,15} " " [A-Z] [a-z]{1,15} " was born on " [0-9]{4} "-" [0-9]{2} "-" '
              '[0-9]{2} " in " [A-Z] [a-z]{1,15} "."\n')

CASES = {
    "flat": {"kind": "json_schema", "value": FLAT,
             "prompt": "Describe a fictional person as JSON with the fields name, age, city and employed."},
    "nested": {"kind": "json_schema", "value": NESTED,
               "prompt": "Write a JSON record of a customer order: order_id, customer (name, tier), a list of "
                         "items (product, quantity, category) and status."},
    "pydantic": {"kind": "json_schema", "value": PYDANTIC,
                 "prompt": "Describe a fictional person as JSON: name, age, address (street, city, country), "
                           "their pets (name, species, age) and a nickname."},
    "json_object": {"kind": "json_object", "value": True,
                    "prompt": "Give a JSON object describing the planet Mars (a few fields)."},
    "regex": {"kind": "regex", "value": REGEX,
              "prompt": "Write one sentence: a famous scientist's full name, birth date (YYYY-MM-DD) and birth "
                        "city, as in 'Marie Curie was born on 1867-11-07 in Warsaw.'"},
}


def eli_params(case: dict) -> dict:
    """The eli.SamplingParams field of a case."""
    return {case["kind"]: case["value"]}


def gbnf_for(case: dict) -> str:
    """llama.cpp's GBNF for a case: its own converter for schemas, the hand-written regex grammar."""
    if case["kind"] == "regex":
        return REGEX_GBNF
    from llama_cpp import LlamaGrammar

    schema = case["value"] if case["kind"] == "json_schema" else {"type": "object"}
    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)._grammar


def validate(case: dict, text: str) -> tuple[bool, str]:
    """(valid, why not): the output parses and matches the schema / full-matches the regex."""
    if case["kind"] == "regex":
        return (True, "") if re.fullmatch(REGEX, text) else (False, "no full match")
    try:
        doc = json.loads(text)
    except ValueError as e:
        return False, f"not JSON: {e}"
    if case["kind"] == "json_object":
        return (True, "") if isinstance(doc, dict) else (False, "not an object")
    import jsonschema

    try:
        jsonschema.validate(doc, case["value"])
    except jsonschema.ValidationError as e:
        return False, f"schema: {e.message}"
    return True, ""


def decode_rate(n_tokens: int, seconds: float) -> float:
    """tok/s over the tokens after the first (the first closes the prefill); 0 when undefined."""
    return (n_tokens - 1) / seconds if n_tokens > 1 and seconds > 0 else 0.0


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(records: list[dict]) -> list[dict]:
    """Per case: the ratios constrained / plain per engine row and eli / llama.cpp constrained.
    records: {engine, case, mode: plain|constrained, decode_tok_s (median)}."""
    by = {(r["engine"], r["case"], r["mode"]): r for r in records}
    engines = list(dict.fromkeys(r["engine"] for r in records))
    out = []
    for case in dict.fromkeys(r["case"] for r in records):
        row = {"case": case}
        for eng in engines:
            p, c = by.get((eng, case, "plain")), by.get((eng, case, "constrained"))
            if p and c and p["decode_tok_s"] > 0:
                row[f"{eng} ratio"] = c["decode_tok_s"] / p["decode_tok_s"]
        e = by.get(("eli", case, "constrained"))
        for eng in engines:
            q = by.get((eng, case, "constrained"))
            if eng.startswith("llama.cpp") and e and q and q["decode_tok_s"] > 0:
                row[f"eli / {eng}"] = e["decode_tok_s"] / q["decode_tok_s"]
        out.append(row)
    return out


# ---- eli ----------------------------------------------------------------------------------------
class _HostTimer:
    """Wraps eli.structured's constraint calls (mask fills, token accepts) with timers."""

    def __init__(self):
        from eli.structured.constraint import LLGuidanceConstraint as C

        self.fill_ns: list[int] = []
        self.accept_ns: list[int] = []
        fill, batch, accept = C.fill_mask, C.fill_masks_batch.__func__, C.accept
        timer = self

        def fill_mask(self, ptr, vocab):
            t = time.perf_counter_ns()
            try:
                return fill(self, ptr, vocab)
            finally:
                timer.fill_ns.append(time.perf_counter_ns() - t)

        def fill_masks_batch(cls, cons, index, ptr, words, vocab):
            t = time.perf_counter_ns()
            try:
                return batch(cls, cons, index, ptr, words, vocab)
            finally:
                timer.fill_ns.append(time.perf_counter_ns() - t)

        def accept_token(self, token):
            t = time.perf_counter_ns()
            try:
                return accept(self, token)
            finally:
                timer.accept_ns.append(time.perf_counter_ns() - t)

        C.fill_mask, C.fill_masks_batch, C.accept = fill_mask, classmethod(fill_masks_batch), accept_token

    def reset(self) -> None:
        self.fill_ns.clear()
        self.accept_ns.clear()


def prompt_ids(llm, text: str, short: bool = False) -> list[int]:
    """The chat prompt of `text` (the model's template), or the plain encoding without one; with
    short, just "Answer:" (tiny test models have a short context)."""
    if short:
        return llm.tokenizer.encode("Answer:")
    try:
        return llm.chat_prompt_ids([{"role": "user", "content": text}])
    except Exception:
        return llm.tokenizer.encode(text)


def bench_eli(cfg: dict) -> dict:
    import eli
    from eli import _eli
    from eli.engine_options import engine_config

    timer = _HostTimer()
    # The LLM only for the tokenizer, the chat template and the model's EOS ids; then the
    # synchronous compiled engine, stepped from here (as bench/cpu_bench.py's "eli" rows).
    with eli.LLM(cfg["model"], n_threads=1, download=False, progress=False) as llm:
        prompts = {name: prompt_ids(llm, CASES[name]["prompt"], cfg["short_prompts"]) for name in cfg["cases"]}
        tok, spec, extra_eos = llm.tokenizer, llm.info["spec"], list(llm._extra_eos)
    model = (tok, spec["vocab_size"], list(spec["eos_token_ids"]) + extra_eos)
    engine = _eli.Engine(engine_config(cfg["model"], device="cpu", dtype=cfg["eli_dtype"], n_threads=cfg["threads"]))
    info = engine.info()

    def one(name: str, constrained: bool, max_tokens: int) -> dict:
        kw = dict(max_tokens=max_tokens, temperature=0.0)
        kw.update(eli_params(CASES[name]) if constrained else {"ignore_eos": True})
        params = eli.SamplingParams(**kw).engine_params(extra_eos, model=model if constrained else None)
        timer.reset()
        rid = engine.add_request(prompts[name], params)
        out, finish, error, step_s, first = [], None, "", [], None
        while engine.has_unfinished():
            t = time.perf_counter()
            outs = engine.step()
            step_s.append(time.perf_counter() - t)
            for o in outs:
                if o[0] != rid:
                    continue
                if o[1] >= 0:
                    out.append(o[1])
                    if first is None:
                        first = len(step_s)  # the steps up to here: the prompt's forward + first sample
                if o[4]:
                    finish, error = o[4], o[5]
        if error:
            raise RuntimeError(f"eli {name}: {finish}: {error}")
        n = len(out)
        first = first or len(step_s)
        r = {"tokens": n, "decode_tok_s": decode_rate(n, sum(step_s[first:])), "prefill_s": sum(step_s[:first]),
             "steps": len(step_s), "finish": finish or "length", "text": tok.decode(out)}
        if constrained:
            r["mask_us"] = [x / 1e3 for x in timer.fill_ns]
            r["accept_us"] = [x / 1e3 for x in timer.accept_ns]
        return r

    return run_cases(cfg, prompts, one, info={"eli_dtype": cfg["eli_dtype"], "weight_dtype": info.get("weight_dtype"),
                                               "num_threads": info.get("num_threads"),
                                               "prompt_tokens": {k: len(v) for k, v in prompts.items()}})


# ---- llama.cpp ------------------------------------------------------------------------------------
def bench_llama(cfg: dict, prompts: dict) -> dict:
    import ctypes

    import llama_cpp as lc
    import numpy as np

    model, ctx = llama_open(lc, cfg["model"], cfg["threads"], n_ctx=1024, n_batch=1024)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    mode = cfg["llama_mode"]
    grammars = {name: gbnf_for(CASES[name]) for name in cfg["cases"]}
    # A whole-vocabulary candidate array (llama_token_data: id, logit, p), refilled from the logits.
    cand = np.zeros(n_vocab, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
    cand["id"] = np.arange(n_vocab, dtype=np.int32)
    one_cand = np.zeros(1, dtype=cand.dtype)

    def data_array(arr) -> "lc.llama_token_data_array":
        return lc.llama_token_data_array(data=arr.ctypes.data_as(ctypes.POINTER(lc.llama_token_data)),
                                         size=len(arr), selected=-1, sorted=False)

    def decode(tokens: list[int]) -> None:
        arr = (lc.llama_token * len(tokens))(*tokens)
        if lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(tokens))) != 0:
            raise RuntimeError("llama_decode failed")

    def piece(tok: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(vocab, tok, buf, len(buf), 0, False)
        return buf.raw[:max(n, 0)]

    def one(name: str, constrained: bool, max_tokens: int) -> dict:
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        gram = chain = None
        if constrained:
            gram = lc.llama_sampler_init_grammar(vocab, grammars[name].encode(), b"root")
            if not gram:
                raise RuntimeError(f"llama.cpp refused the GBNF of {name}")
            if mode == "chain":  # the grammar over the whole vocabulary, then greedy (owns gram)
                chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
                lc.llama_sampler_chain_add(chain, gram)
                lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())

        fallbacks = [0]

        def sample() -> int:
            if chain is not None:
                return lc.llama_sampler_sample(chain, ctx, -1)  # applies and accepts
            logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            tok = int(np.argmax(logits))
            if gram is None:
                return tok
            # common_sampler: the greedy pick checked against the grammar alone first
            one_cand[0] = (tok, logits[tok], 0.0)
            lc.llama_sampler_apply(gram, ctypes.byref(data_array(one_cand)))
            if not np.isfinite(one_cand["logit"][0]):
                fallbacks[0] += 1
                cand["logit"] = logits
                lc.llama_sampler_apply(gram, ctypes.byref(data_array(cand)))
                tok = int(np.argmax(cand["logit"]))
            lc.llama_sampler_accept(gram, tok)
            return tok

        ids = prompts[name]
        sample_us, out = [], []
        t0 = time.perf_counter()
        decode(ids)
        finish = "length"
        t_first = None
        while len(out) < max_tokens:
            t = time.perf_counter_ns()
            tok = sample()
            sample_us.append((time.perf_counter_ns() - t) / 1e3)
            if constrained and lc.llama_vocab_is_eog(vocab, tok):
                finish = "stop"
                break
            out.append(tok)
            if t_first is None:
                t_first = time.perf_counter()
            if len(out) < max_tokens:
                decode([tok])
        t_end = time.perf_counter()
        if chain is not None:
            lc.llama_sampler_free(chain)
        elif gram is not None:
            lc.llama_sampler_free(gram)
        n = len(out)
        r = {"tokens": n, "decode_tok_s": decode_rate(n, t_end - (t_first or t_end)),
             "prefill_s": (t_first or t_end) - t0, "finish": finish,
             "text": b"".join(piece(t) for t in out).decode("utf-8", errors="replace")}
        if constrained:
            r["sample_us"] = sample_us
            r["grammar_fallbacks"] = fallbacks[0]
        else:
            r["sample_us_plain"] = sample_us
        return r

    raw = lc.llama_print_system_info()
    res = run_cases(cfg, prompts, one, info={"llama_cpp_version": lc.__version__, "mode": mode,
                                              "system_info": (raw.decode(errors="replace") if isinstance(raw, bytes)
                                                              else str(raw)).strip(),
                                              "gbnf_chars": {k: len(v) for k, v in grammars.items()}})
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return res


# ---- protocol and driver ------------------------------------------------------------------------
def run_cases(cfg: dict, prompts: dict, one, info: dict) -> dict:
    """warm-up, then reps interleaved (plain, constrained) per case; every run's result."""
    runs = []
    for name in cfg["cases"]:
        for _ in range(cfg["warmup"]):
            one(name, False, max(2, one(name, True, cfg["max_tokens"])["tokens"]))
        for rep in range(cfg["reps"]):
            c = one(name, True, cfg["max_tokens"])
            # plain: as many tokens as the constrained run (the same positions, the same attention cost)
            p = one(name, False, max(2, c["tokens"]))
            for r, mode in ((c, "constrained"), (p, "plain")):
                r.update({"case": name, "mode": mode, "rep": rep})
            c["valid"], c["invalid_reason"] = validate(CASES[name], c["text"])
            p.pop("text")
            if rep > 0:
                c.pop("text")  # keep one constrained text per case (greedy: the same every rep)
            runs += [p, c]
    return {"runs": runs, "info": info, "prompts": {k: list(v) for k, v in prompts.items()}}


def worker_main(cfg: dict) -> None:
    if cfg["engine"] == "eli":
        res = bench_eli(cfg)
    else:
        res = bench_llama(cfg, cfg["prompts"])
    print("RESULT " + json.dumps(res), flush=True)


def eli_path() -> str:
    """Where the eli package with its compiled module is: the installed one if it imports (as in
    CI), else this checkout's python/ (a module built and copied there)."""
    try:
        import eli._eli  # noqa: F401
        import eli as pkg

        return str(pathlib.Path(pkg.__file__).resolve().parent.parent)
    except ImportError:
        return str(ROOT / "python")


def run_worker(cfg: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [eli_path(), env.get("PYTHONPATH", "")] if p)
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                          env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {cfg['engine']} failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                       f"{proc.stderr[-4000:]}")


def aggregate(engine: str, runs: list[dict]) -> list[dict]:
    """One record per (case, mode): median decode tok/s over the reps, spread, tokens, validity,
    per-token host time in the grammar."""
    recs = []
    for case in dict.fromkeys(r["case"] for r in runs):
        for mode in ("plain", "constrained"):
            rs = [r for r in runs if r["case"] == case and r["mode"] == mode]
            if not rs:
                continue
            rates = [r["decode_tok_s"] for r in rs]
            rec = {"engine": engine, "case": case, "kind": CASES[case]["kind"], "mode": mode,
                   "decode_tok_s": statistics.median(rates), "spread": _spread(rates),
                   "samples": [round(x, 2) for x in rates], "tokens": [r["tokens"] for r in rs],
                   "finish": sorted({r["finish"] for r in rs}),
                   "prefill_s": statistics.median(r["prefill_s"] for r in rs)}
            if mode == "constrained":
                rec["valid"] = sum(bool(r["valid"]) for r in rs)
                rec["n"] = len(rs)
                rec["stopped"] = sum(r["finish"] == "stop" for r in rs)
                rec["invalid_reasons"] = sorted({r["invalid_reason"] for r in rs if not r["valid"]})
                rec["text"] = next((r["text"] for r in rs if "text" in r), "")
                host = [x for r in rs for x in r.get("mask_us", []) + r.get("sample_us", [])]
                ntok = sum(r["tokens"] for r in rs)
                if "mask_us" in rs[0]:  # eli: llguidance mask + accept, per generated token
                    acc = [x for r in rs for x in r["accept_us"]]
                    rec["mask_us_p50"], rec["mask_us_p99"] = pct(host, 50), pct(host, 99)
                    rec["accept_us_p50"] = pct(acc, 50)
                    rec["grammar_us_per_token"] = (sum(host) + sum(acc)) / max(1, ntok)
                else:  # llama.cpp: the whole sampling (grammar + greedy), per generated token
                    rec["grammar_fallbacks"] = sum(r.get("grammar_fallbacks", 0) for r in rs)
                    rec["sample_us_p50"], rec["sample_us_p99"] = pct(host, 50), pct(host, 99)
                    rec["grammar_us_per_token"] = sum(host) / max(1, ntok)
            recs.append(rec)
    return recs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="constrained decoding speed: eli (llguidance) vs llama.cpp GBNF")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="run every engine's worker R times, interleaved")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--engines", default="eli,llama.cpp")
    ap.add_argument("--llama-modes", default="resample", help="resample (llama-server's sampling), chain")
    ap.add_argument("--eli-dtype", default="float32")
    ap.add_argument("--model", default="smollm2", help="eli model name or a GGUF path (llama.cpp needs a GGUF)")
    ap.add_argument("--short-prompts", action="store_true", help="a 2-word prompt instead of the chat prompts "
                    "(tiny test models with a short context)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each engine's worker wait up to S seconds for the CPUs to be idle (busy < 15%%)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0

    sys.path.insert(0, eli_path())
    from eli import hub

    model = hub.resolve_model(args.model)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r} (known: {', '.join(CASES)})")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    common = {"model": str(model), "threads": args.threads, "reps": args.reps, "warmup": args.warmup,
              "max_tokens": args.max_tokens, "cases": cases, "eli_dtype": args.eli_dtype,
              "short_prompts": args.short_prompts}
    load_before = load_avg()
    busy = []
    runs: dict[str, list] = {}
    infos: dict[str, dict] = {}
    prompts = None
    for rnd in range(args.rounds):
        # eli first: it renders the prompts that llama.cpp then gets as token ids.
        order = [("eli", None)] if "eli" in engines else []
        if "llama.cpp" in engines or "llama" in engines:
            order += [("llama.cpp", m.strip()) for m in args.llama_modes.split(",") if m.strip()]
        for eng, mode in order:
            name = eng if mode is None else f"llama.cpp {mode}"
            b = wait_idle(args.wait_idle, 0.15) if args.wait_idle > 0 else cpu_busy()
            busy.append(round(b, 3))
            print(f"[round {rnd + 1}/{args.rounds}] {name} (load {load_avg():.2f}, cpu busy {100 * b:.0f}%) ...",
                  file=sys.stderr, flush=True)
            if eng == "llama.cpp" and prompts is None:
                prompts = _prompts_without_eli_run(model, cases, args.short_prompts)
            r = run_worker({**common, "engine": eng, "llama_mode": mode, "prompts": prompts, "round": rnd})
            if eng == "eli":
                prompts = r["prompts"]
            runs.setdefault(name, []).extend(r["runs"])
            infos[name] = r["info"]
    load_after = load_avg()

    records = [rec for name, rs in runs.items() for rec in aggregate(name, rs)]
    summary = summarize(records)
    for s in summary:  # eli's host time in the grammar per token, beside the ratios
        e = next((r for r in records if r["engine"] == "eli" and r["case"] == s["case"] and r["mode"] == "constrained"),
                 None)
        if e:
            s["eli_grammar_us_per_token"] = e["grammar_us_per_token"]
    print(f"\ncpu: {cpu_name()}; threads {args.threads}; load avg before/after {load_before:.2f}/{load_after:.2f}")
    print_table(records, summary, args)
    doc = {"cpu": cpu_name(), "commit": git_commit(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "model": pathlib.Path(model).name, "threads": args.threads, "batch": 1, "max_tokens": args.max_tokens,
           "reps": args.reps * args.rounds, "warmup": args.warmup, "decoding": "greedy",
           "protocol": "decode tok/s = (generated - 1) / time of the steps after the first generated token; "
                       "median of reps; constrained = until the grammar ends or max_tokens, then plain = as many "
                       "tokens with EOS ignored, same prompt",
           "load_avg_before_after": [load_before, load_after], "cpu_busy_before": busy, "eli_build": eli_build(),
           "versions": _versions(), "engine_info": infos,
           "cases": {c: {"kind": CASES[c]["kind"], "value": CASES[c]["value"], "prompt": CASES[c]["prompt"]}
                     for c in cases},
           "results": records, "summary": summary}
    if not args.no_json:
        out = pathlib.Path(args.out) if args.out else (
            ROOT / "bench" / "results" / f"{datetime.date.today().isoformat()}_{cpu_short_name()}_cpu_structured.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {out}", file=sys.stderr)
    return 0


def _prompts_without_eli_run(model: str, cases: list[str], short: bool) -> dict:
    """The prompts when eli's worker does not run (--engines llama.cpp): rendered by eli here."""
    import eli

    with eli.LLM(model, download=False, progress=False, n_threads=1) as llm:
        return {c: prompt_ids(llm, CASES[c]["prompt"], short) for c in cases}


def _versions() -> dict:
    v = {}
    for mod, dist in (("llguidance", "llguidance"), ("llama_cpp", "llama-cpp-python"), ("jsonschema", "jsonschema")):
        try:
            from importlib.metadata import version

            v[mod] = version(dist)
        except Exception:
            v[mod] = None
    return v


def print_table(records: list[dict], summary: list[dict], args) -> None:
    print(f"\nbatch 1, greedy, max {args.max_tokens} tokens, decode tok/s median of {args.reps * args.rounds} "
          f"(+-half-range); grammar us/tok: eli = llguidance mask + accept, llama.cpp = sampling incl. grammar")
    hdr = (f"{'case':<12} {'engine':<18} {'plain tok/s':>16} {'constr. tok/s':>16} {'ratio':>6} {'tokens':>7} "
           f"{'valid':>6} {'grammar us/tok':>15} {'mask p50/p99 us':>16}")
    print(hdr)
    print("-" * len(hdr))
    by = {(r["engine"], r["case"], r["mode"]): r for r in records}
    for s in summary:
        for eng in dict.fromkeys(r["engine"] for r in records):
            p, c = by.get((eng, s["case"], "plain")), by.get((eng, s["case"], "constrained"))
            if not (p and c):
                continue
            mask = (f"{c['mask_us_p50']:.0f}/{c['mask_us_p99']:.0f}" if "mask_us_p50" in c else
                    f"{c.get('sample_us_p50', 0):.0f}/{c.get('sample_us_p99', 0):.0f}*")
            print(f"{s['case']:<12} {eng:<18} {p['decode_tok_s']:>9.1f} +-{100 * p['spread']:>3.0f}% "
                  f"{c['decode_tok_s']:>9.1f} +-{100 * c['spread']:>3.0f}% {s.get(eng + ' ratio', 0):>6.2f} "
                  f"{statistics.median(c['tokens']):>7.0f} {c['valid']:>3}/{c['n']:<2} "
                  f"{c['grammar_us_per_token']:>15.0f} {mask:>16}")
    print("* llama.cpp: the whole sampling call (grammar + greedy) per token")
    lines = [f"  {s['case']:<12} " + ", ".join(f"{k} {v:.2f}x" for k, v in s.items() if k.startswith("eli / "))
             for s in summary if any(k.startswith("eli / ") for k in s)]
    if lines:
        print("eli constrained / llama.cpp constrained decode tok/s (>1: eli is faster):")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
