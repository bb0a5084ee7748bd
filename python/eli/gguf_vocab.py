# eli/gguf_vocab.py: build a `tokenizers.Tokenizer` from GGUF tokenizer metadata.
#
# A GGUF file carries no tokenizer.json: only llama.cpp's `tokenizer.ggml.*` keys (token strings,
# scores, token types, merges, special ids). This module rebuilds the tokenizer they describe so that
# it behaves like the one Hugging Face transformers builds from the same file (its GGUF integration is
# the behavioural reference; this is an independent implementation):
#   "gpt2"  byte-level BPE with the file's merges; the split regex picked by `tokenizer.ggml.pre`;
#           control tokens (type 3) as special added tokens, user-defined ones (type 4) as plain ones.
#   "llama" SentencePiece-style BPE with byte fallback (<0xNN>), Metaspace prefix on the first word
#           (none where tokenizer.ggml.add_space_prefix is false: a deliberate deviation, transformers
#           ignores the key while llama.cpp and the model's own tokenizer.json honour it), merges from
#           the file or derived from the scores; BOS added unless the file says otherwise.
#           Gemma architectures (kGemmaArchitectures): Google's tokenizer.json shape, see _build_gemma.
# Everything in `meta` is untrusted: lengths, types and ids are checked, duplicate token strings are
# refused (as llama.cpp does), the work of deriving merges from scores is bounded, and any problem is
# a ValueError naming the key (the caller maps it to eli.ModelLoadError). Deliberate deviation:
# transformers appends default special tokens ("<s>", "<|endoftext|>") past the vocabulary when the
# file lacks them; we never grow the vocabulary beyond the file's token list.
from __future__ import annotations

import dataclasses
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as HfTokenizer
from tokenizers import normalizers

# Token types in tokenizer.ggml.token_type (llama.cpp's llama_token_type).
kTokenNormal = 1
kTokenUnknown = 2
kTokenControl = 3
kTokenUserDefined = 4
kTokenUnused = 5
kTokenByte = 6

kMaxVocab = 4_000_000  # sanity cap on the token list length
kMaxMerges = 8_000_000
kMaxTokenBytes = 4096  # longest token string accepted
# Merges derived from scores (SentencePiece vocabularies without merges): every split of every token
# is examined, so the work grows with the square of the token lengths. A 32 K vocabulary needs ~1 M
# character copies and yields ~60 K merges; 2,048 tokens "a" * 1..2048 (a 2.8 MB file) would need
# ~2.9 G copies and 2.1 M merges of ~1 KiB each (6.4 GB). Bounded before and during the derivation.
kMaxMergeWork = 256_000_000  # sum over tokens of len * (len - 1): characters copied while splitting
kMaxDerivedMerges = 4_000_000
kMaxDerivedMergeChars = 64_000_000  # total length of the derived merges' two sides

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_TEKKEN_SPLIT = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_GPT4O_SPLIT = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTION}"
    rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_CONTRACTION}"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# tokenizer.ggml.pre -> split regex. Names not listed keep the GPT-2 byte-level regex.
kPreTokenizerSplits = {
    **dict.fromkeys(
        ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
         "jina-v5-nano", "dbrx", "smaug-bpe"], _LLAMA3_SPLIT),
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"], _QWEN2_SPLIT),
    "qwen35": _QWEN35_SPLIT,
    **dict.fromkeys(["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], _GPT4O_SPLIT),
}

kSupportedModels = ("gpt2", "llama")
# general.architecture values whose "llama" (SentencePiece) vocabulary is Gemma's (see _build_gemma).
kGemmaArchitectures = ("gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding")


@dataclasses.dataclass
class GgufVocab:
    """A tokenizer rebuilt from GGUF metadata plus the ids the metadata names."""

    tokenizer: HfTokenizer
    model: str  # tokenizer.ggml.model
    n_tokens: int  # length of tokenizer.ggml.tokens (the embedding rows the vocab addresses)
    bos_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    pad_token_id: int | None
    extra_eos_token_ids: list[int]  # eot / eom ids, which also end generation
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _get(meta: dict, key: str, kind: type | tuple, default: Any = None) -> Any:
    value = meta.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) and kind is int:
        raise ValueError(f"GGUF tokenizer metadata {key!r}: expected int, got bool")
    if not isinstance(value, kind):
        raise ValueError(f"GGUF tokenizer metadata {key!r}: expected {kind}, got {type(value).__name__}")
    return value


def _str_list(meta: dict, key: str, cap: int, required: bool) -> list[str] | None:
    value = meta.get(key)
    if value is None:
        if required:
            raise ValueError(f"GGUF tokenizer metadata lacks {key!r}")
        return None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"GGUF tokenizer metadata {key!r}: expected a list, got {type(value).__name__}")
    if len(value) > cap:
        raise ValueError(f"GGUF tokenizer metadata {key!r}: {len(value)} entries exceeds the cap {cap}")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise ValueError(f"GGUF tokenizer metadata {key!r}[{i}]: expected str, got {type(v).__name__}")
        if len(v) > kMaxTokenBytes:
            raise ValueError(f"GGUF tokenizer metadata {key!r}[{i}]: string of {len(v)} chars is too long")
    return list(value)


def _num_list(meta: dict, key: str, n: int, kind: type) -> list | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"GGUF tokenizer metadata {key!r}: expected a list, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"GGUF tokenizer metadata {key!r} has {len(value)} entries but there are {n} tokens")
    ok = (int, float) if kind is float else int
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, ok):
            raise ValueError(f"GGUF tokenizer metadata {key!r}[{i}]: expected {kind.__name__}")
    return list(value)


def _check_unique(tokens: list[str]) -> None:
    """Refuse a vocabulary listing one (non-empty) token string twice: text could map to either id.
    llama.cpp refuses such files too (GGML_ASSERT id_to_token.size() == token_to_id.size()); empty
    strings are exempt, as llama.cpp renames them ("[EMPTY_i]") and loads the file."""
    first: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t:
            j = first.setdefault(t, i)
            if j != i:
                raise ValueError(f"GGUF tokenizer metadata 'tokenizer.ggml.tokens' lists the token {t[:40]!r} twice "
                                 f"(ids {j} and {i}); llama.cpp refuses such vocabularies too")


def _token_id(meta: dict, key: str, n_tokens: int) -> int | None:
    value = _get(meta, key, int)
    if value is None:
        return None
    if value < 0 or value >= n_tokens:
        # llama.cpp writes -1 / 0xFFFFFFFF for "none" in some files; anything else is corrupt.
        if value in (-1, 0xFFFFFFFF):
            return None
        raise ValueError(f"GGUF tokenizer metadata {key!r} = {value} is outside the vocabulary of {n_tokens} tokens")
    return value


def _parse_merges(raw: list[str], vocab: dict[str, int]) -> list[tuple[str, str]]:
    merges = []
    for i, line in enumerate(raw):
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"GGUF merge #{i} {line!r} is not two tokens separated by one space")
        left, right = parts
        if left not in vocab or right not in vocab:
            missing = left if left not in vocab else right
            raise ValueError(f"GGUF merge #{i} {line!r} references unknown token {missing!r}")
        if left + right not in vocab:
            raise ValueError(f"GGUF merge #{i} {line!r} produces {left + right!r}, which is not in the vocabulary")
        merges.append((left, right))
    return merges


def merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """Merges implied by a SentencePiece vocabulary: every split of a token into two known tokens,
    best score first (ties: longer left piece, then longer right piece, then file order).
    ValueError when the derivation would exceed kMaxMergeWork, kMaxDerivedMerges or kMaxDerivedMergeChars."""
    work = sum(len(t) * (len(t) - 1) for t in tokens)
    if work > kMaxMergeWork:
        raise ValueError(f"GGUF llama tokenizer: deriving merges from the scores would copy {work} characters "
                         f"(limit {kMaxMergeWork}); the token strings are too long")
    vocab = {t: i for i, t in enumerate(tokens)}  # the last id wins on duplicates, like a dict build
    score_of = dict(zip(tokens, scores))  # first position, last score on duplicates
    candidates = []
    chars = 0
    for token, score in score_of.items():
        local = []
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                local.append((vocab[left], vocab[right], left, right, score))
        local.sort(key=lambda c: (c[0], c[1]))
        candidates.extend(local)
        chars += len(token) * len(local)
        if len(candidates) > kMaxDerivedMerges or chars > kMaxDerivedMergeChars:
            raise ValueError(f"GGUF llama tokenizer: the scores imply more than {kMaxDerivedMerges} merges or "
                             f"{kMaxDerivedMergeChars} characters of merges; refused")
    # Stable sort on the negated key == reverse sort keeping the original order among ties.
    candidates.sort(key=lambda c: (-c[4], -len(c[2]), -len(c[3])))
    return [(c[2], c[3]) for c in candidates]


def _template_processor(bos: tuple[str, int] | None, eos: tuple[str, int] | None) -> processors.TemplateProcessing:
    def name(tok: tuple[str, int], tag: str) -> str:
        # The template syntax splits on spaces and ':'; such tokens get a neutral name (the id is what counts).
        return tok[0] if tok[0] and not any(c.isspace() or c in ":$" for c in tok[0]) else f"<eli_{tag}>"

    pieces_a, pieces_b, special = ["$A:0"], ["$B:1"], []
    if bos is not None:
        pieces_a.insert(0, f"{name(bos, 'bos')}:0")
        pieces_b.insert(0, f"{name(bos, 'bos')}:1")
        special.append((name(bos, "bos"), bos[1]))
    if eos is not None:
        pieces_a.append(f"{name(eos, 'eos')}:0")
        pieces_b.append(f"{name(eos, 'eos')}:1")
        if not special or special[0][0] != name(eos, "eos"):
            special.append((name(eos, "eos"), eos[1]))
    return processors.TemplateProcessing(
        single=" ".join(pieces_a), pair=" ".join(pieces_a + pieces_b), special_tokens=special
    )


def _add_specials(tok: HfTokenizer, strings: list[str], special: bool) -> None:
    if strings:
        added = [AddedToken(s, normalized=False, special=special) for s in strings]
        if special:
            tok.add_special_tokens(added)
        else:
            tok.add_tokens(added)


def _build_gpt2(tokens, token_types, merges_raw) -> tuple[HfTokenizer, list[str]]:
    alphabet_map = byte_to_unicode()
    alphabet = set(alphabet_map.values())
    vocab = {}
    for i, t in enumerate(tokens):
        spelled = t if set(t) <= alphabet else "".join(alphabet_map[b] for b in t.encode("utf-8"))
        vocab[spelled] = i
    merges = _parse_merges(merges_raw or [], vocab)
    tok = HfTokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                 end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    defaults = [t for t in ["<|endoftext|>"] if t in vocab]
    # Control tokens written outside the byte alphabet are llama.cpp mislabels: skipped.
    control = [t for t, ty in zip(tokens, token_types or ()) if ty == kTokenControl and set(t) <= alphabet]
    return tok, defaults + control


def _build_llama(tokens, scores, merges_raw) -> tuple[HfTokenizer, list[str]]:
    vocab = {t: i for i, t in enumerate(tokens)}
    if merges_raw is not None:
        merges = _parse_merges(merges_raw, vocab)
    else:
        if scores is None:
            raise ValueError("GGUF llama tokenizer has neither tokenizer.ggml.merges nor tokenizer.ggml.scores")
        merges = merges_from_scores(tokens, scores)
    tok = HfTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0),
    ])
    defaults = [t for t in ["<unk>", "<s>", "</s>"] if t in vocab]
    return tok, defaults


def _respell_gemma(tokens: list[str], token_types: list[int] | None) -> list[str]:
    """Gemma's user-defined pieces as the SentencePiece model spells them. convert_hf_to_gguf.py writes
    every user-defined token with its word markers turned into spaces ("\u2581\u2581" -> "  "); the
    tokenizer, which sees text after the " " -> "\u2581" normalizer, needs them back. SentencePiece
    pieces never hold a real space, so the exchange is exact."""
    if token_types is None:
        return tokens
    out = [t.replace(" ", "\u2581") if ty == kTokenUserDefined else t for t, ty in zip(tokens, token_types)]
    first: dict[str, int] = {}
    for i, t in enumerate(out):
        j = first.setdefault(t, i)
        if j != i and t:
            raise ValueError(f"GGUF gemma tokenizer: user-defined token {tokens[i][:40]!r} (id {i}) respelled "
                             f"{t[:40]!r} collides with id {j}")
    return out


def _build_gemma(tokens, merges_raw, unk_id) -> tuple[HfTokenizer, list[str]]:
    """Gemma (1/2/3): SentencePiece BPE without a prefix space, as Hugging Face's GemmaTokenizerFast /
    Google's tokenizer.json: normalizer " " -> "\u2581" (no Metaspace, no split), byte fallback, merges
    ranked by token position (the SentencePiece model's piece order: the file's scores, -1000 for every
    added token, do not follow it), decoder without a Strip."""
    vocab = {t: i for i, t in enumerate(tokens)}
    if merges_raw is not None:
        merges = _parse_merges(merges_raw, vocab)
    else:
        merges = merges_from_scores(tokens, [-float(i) for i in range(len(tokens))])
    unk = tokens[unk_id] if unk_id is not None else None
    tok = HfTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True,
                                 dropout=None))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok, []


def build_gguf_vocab(meta: dict) -> GgufVocab:
    """Build the tokenizer described by GGUF metadata `meta` ({key: value}). ValueError on bad input."""
    if not isinstance(meta, dict):
        raise ValueError("GGUF metadata must be a dict")
    model = _get(meta, "tokenizer.ggml.model", str)
    if model is None:
        raise ValueError("GGUF metadata lacks 'tokenizer.ggml.model'")
    if model not in kSupportedModels:
        raise ValueError(f"unsupported GGUF tokenizer model {model!r} (supported: {', '.join(kSupportedModels)})")
    tokens = _str_list(meta, "tokenizer.ggml.tokens", kMaxVocab, required=True)
    if not tokens:
        raise ValueError("GGUF metadata 'tokenizer.ggml.tokens' is empty")
    _check_unique(tokens)
    n = len(tokens)
    token_types = _num_list(meta, "tokenizer.ggml.token_type", n, int)
    scores = _num_list(meta, "tokenizer.ggml.scores", n, float)
    merges_raw = _str_list(meta, "tokenizer.ggml.merges", kMaxMerges, required=False)
    pre = _get(meta, "tokenizer.ggml.pre", str)
    ids = {k: _token_id(meta, f"tokenizer.ggml.{k}", n)
           for k in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id",
                     "eot_token_id", "eom_token_id")}
    add_bos = _get(meta, "tokenizer.ggml.add_bos_token", bool)
    if add_bos is None:
        add_bos = model == "llama"  # llama.cpp's default for SentencePiece vocabularies
    add_eos = bool(_get(meta, "tokenizer.ggml.add_eos_token", bool, False))
    chat_template = _get(meta, "tokenizer.chat_template", str)
    add_space_prefix = _get(meta, "tokenizer.ggml.add_space_prefix", bool)
    arch = meta.get("general.architecture")

    if model == "gpt2":
        if merges_raw is None:
            raise ValueError("GGUF gpt2 tokenizer lacks 'tokenizer.ggml.merges'")
        tok, specials = _build_gpt2(tokens, token_types, merges_raw)
    else:
        if arch in kGemmaArchitectures:
            tokens = _respell_gemma(tokens, token_types)
            tok, specials = _build_gemma(tokens, merges_raw, ids["unknown_token_id"])
        else:
            tok, specials = _build_llama(tokens, scores, merges_raw)
            if add_space_prefix is False and arch != "phi3":
                # No word marker before the first word (llama.cpp honours the key; so does the model's
                # own Hugging Face tokenizer, whose add_prefix_space = false the converter copied).
                tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never",
                                                             split=False)
                tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                                 decoders.Fuse()])
        if arch == "phi3":
            # Phi-3 prepends the space with a normaliser rather than Metaspace (differs on leading spaces).
            tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
            tok.pre_tokenizer = None
        specials = specials + [t for t, ty in zip(tokens, token_types or ()) if ty == kTokenControl]
    _add_specials(tok, list(dict.fromkeys(specials)), special=True)
    vocab_now = tok.get_vocab(with_added_tokens=True)
    user = [t for t, ty in zip(tokens, token_types or ()) if ty == kTokenUserDefined and t in vocab_now]
    _add_specials(tok, list(dict.fromkeys(user)), special=False)
    split = kPreTokenizerSplits.get(pre) if pre is not None else None
    if split is not None:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    # The tokens the metadata names (bos/eos/unk/pad) are special too, matched whole in text.
    named = [tokens[i] for i in (ids["bos_token_id"], ids["eos_token_id"], ids["unknown_token_id"],
                                  ids["padding_token_id"]) if i is not None]
    known = {str(t.content) for t in tok.get_added_tokens_decoder().values()}
    _add_specials(tok, [t for t in dict.fromkeys(named) if t not in known], special=True)

    bos_id, eos_id = ids["bos_token_id"], ids["eos_token_id"]
    if bos_id is None:
        add_bos = False
    if eos_id is None:
        add_eos = False
    tok.post_processor = _template_processor((tokens[bos_id], bos_id) if add_bos else None,
                                             (tokens[eos_id], eos_id) if add_eos else None)
    if tok.get_vocab_size(with_added_tokens=True) > n:
        raise ValueError(f"GGUF tokenizer grew to {tok.get_vocab_size(with_added_tokens=True)} tokens from {n}; "
                         "duplicate or conflicting token strings in 'tokenizer.ggml.tokens'")
    extra = [i for i in (ids["eot_token_id"], ids["eom_token_id"]) if i is not None and i != eos_id]
    return GgufVocab(tokenizer=tok, model=model, n_tokens=n, bos_token_id=bos_id, eos_token_id=eos_id,
                     unk_token_id=ids["unknown_token_id"], pad_token_id=ids["padding_token_id"],
                     extra_eos_token_ids=list(dict.fromkeys(extra)), add_bos=bool(add_bos), add_eos=add_eos,
                     chat_template=chat_template)


__all__ = ["GgufVocab", "build_gguf_vocab", "byte_to_unicode", "merges_from_scores", "kPreTokenizerSplits"]
