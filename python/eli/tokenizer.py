# eli/tokenizer.py: the tokenizer eli uses for prompts and outputs, over a `tokenizers.Tokenizer`.
#
# Built from a Hugging Face model directory (tokenizer.json + tokenizer_config.json +
# generation_config.json + special_tokens_map.json + config.json) or from GGUF metadata
# (see gguf_vocab.py). Invariants checked at construction (ValueError, mapped to eli.ModelLoadError
# by the caller): every added/special token id and every named special id is below `vocab_size`
# (and below the model's embedding rows when given). Encoding has a size budget (`max_input_chars`)
# so one request cannot make tokenization take unbounded time and memory.
# Hostile tokenizer files (tokenizer_guard.py): a normalizer or decoder that multiplies text (a
# Replace of one character by 100,000) is refused at load, and the per-call input limit is divided
# by the normalizer's expansion bound, so no call can make the library allocate without bound; the
# tokenizer is probed once at load; a Rust panic of the tokenizers library (pyo3's PanicException,
# a BaseException) becomes ModelLoadError at load and EliError afterwards, never escapes. Files of a
# model directory are read through model_dir.py (contained, regular, size-capped).
# Chat prompts: encode_chat(text, user_spans) parses special tokens only outside the user spans.
# Only `tokenizers` and the stdlib are used here: importing this never pulls in torch or transformers.
from __future__ import annotations

import bisect
import json
import os
import pathlib
import re
from typing import Iterable, Sequence

from tokenizers import AddedToken, processors
from tokenizers import Tokenizer as HfTokenizer

from . import model_dir
from .errors import InvalidRequestError, ModelLoadError
from .gguf_vocab import build_gguf_vocab, byte_to_unicode
from .tokenizer_guard import backend_call, check_backend, load_backend

kDefaultMaxInputChars = 4 * 1024 * 1024
kMaxNormalizedChars = 16 * 1024 * 1024  # longest text a normalizer may produce in one call
kMaxTokenizerFileBytes = 512 * 1024 * 1024  # tokenizer.json larger than this is refused
kMaxConfigFileBytes = model_dir.kMaxConfigFileBytes  # the small JSON configs and chat_template.jinja


def _read_json(root: pathlib.Path, name: str) -> dict:
    return model_dir.read_model_json(root, name, kMaxConfigFileBytes) or {}


def _token_str(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _id_list(value) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


class Tokenizer:
    """Text <-> token ids for one model. Thread-safe for encode/decode (tokenizers is)."""

    def __init__(self, backend: HfTokenizer, *, bos_token_id: int | None = None,
                 eos_token_ids: Iterable[int] = (), pad_token_id: int | None = None,
                 unk_token_id: int | None = None, chat_template: str | None = None,
                 n_embedding_rows: int | None = None, max_input_chars: int = kDefaultMaxInputChars):
        if not isinstance(backend, HfTokenizer):
            raise TypeError("backend must be a tokenizers.Tokenizer")
        if not isinstance(max_input_chars, int) or max_input_chars <= 0:
            raise ValueError(f"max_input_chars must be a positive int, got {max_input_chars!r}")
        self._tok = backend
        self._expansion = check_backend(backend)  # ModelLoadError for hostile normalizers/decoders
        self.max_input_chars = min(max_input_chars, max(kMaxNormalizedChars // self._expansion, 1))
        self._vocab_size = backend.get_vocab_size(with_added_tokens=True)
        added = backend.get_added_tokens_decoder()
        if added:
            self._vocab_size = max(self._vocab_size, max(added) + 1)
        limit = self._vocab_size
        if n_embedding_rows is not None:
            if n_embedding_rows <= 0:
                raise ValueError(f"n_embedding_rows must be positive, got {n_embedding_rows}")
            for i, tok in added.items():
                if i >= n_embedding_rows:
                    raise ModelLoadError(f"added token {tok.content!r} has id {i}, past the model's "
                                         f"{n_embedding_rows} embedding rows")
            if self._vocab_size > n_embedding_rows:
                raise ModelLoadError(f"the tokenizer has {self._vocab_size} tokens but the model has only "
                                     f"{n_embedding_rows} embedding rows")
            limit = min(limit, n_embedding_rows)
        # Models often pad their embedding beyond the tokenizer (e.g. to a multiple of 64); such
        # rows can be generated and decode to nothing.
        self._n_ids = max(self._vocab_size, n_embedding_rows or 0)
        self.bos_token_id = self._check_id("bos_token_id", bos_token_id, limit)
        self.pad_token_id = self._check_id("pad_token_id", pad_token_id, limit)
        self.unk_token_id = self._check_id("unk_token_id", unk_token_id, limit)
        eos = []
        for i in eos_token_ids:
            i = self._check_id("eos_token_id", i, limit)
            if i not in eos:
                eos.append(i)
        self.eos_token_ids: list[int] = eos
        if chat_template is not None and not isinstance(chat_template, str):
            raise ModelLoadError(f"the chat template must be a string, got {type(chat_template).__name__}")
        self.chat_template: str | None = chat_template or None
        self._special_ids = frozenset(i for i, t in added.items() if t.special)

    @staticmethod
    def _check_id(name: str, value, limit: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
            raise ModelLoadError(f"{name} {value!r} is outside the vocabulary of {limit} tokens")
        return value

    # ---- properties -------------------------------------------------------------------------
    @property
    def backend(self) -> HfTokenizer:
        return self._tok

    @property
    def vocab_size(self) -> int:
        """Number of token ids (base vocabulary plus added tokens)."""
        return self._vocab_size

    @property
    def eos_token_id(self) -> int | None:
        return self.eos_token_ids[0] if self.eos_token_ids else None

    def _tok_str(self, i: int | None) -> str | None:
        return None if i is None else self._tok.id_to_token(i)

    @property
    def bos_token(self) -> str | None:
        return self._tok_str(self.bos_token_id)

    @property
    def eos_token(self) -> str | None:
        return self._tok_str(self.eos_token_id)

    @property
    def special_tokens(self) -> dict[str, str]:
        """Named special tokens: bos/eos/unk/pad token strings (absent names omitted)."""
        out = {}
        for name, i in (("bos_token", self.bos_token_id), ("eos_token", self.eos_token_id),
                        ("unk_token", self.unk_token_id), ("pad_token", self.pad_token_id)):
            if i is not None:
                out[name] = self._tok.id_to_token(i)
        return out

    @property
    def special_token_ids(self) -> frozenset[int]:
        """Ids of every special added token (skipped by decode(skip_special_tokens=True))."""
        return self._special_ids

    @property
    def byte_fallback_ids(self) -> frozenset[int]:
        """Ids of SentencePiece byte-fallback tokens (<0xNN>); empty for other vocabularies. The
        decoder turns a whole run of them into U+FFFDs if any byte of the run is invalid UTF-8."""
        ids = getattr(self, "_byte_ids", None)
        if ids is None:
            ids = frozenset()
            model = self._tok.model
            if getattr(model, "byte_fallback", False):
                found = (self._tok.token_to_id(f"<0x{b:02X}>") for b in range(256))
                ids = frozenset(i for i in found if i is not None)
            self._byte_ids = ids
        return ids

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    # ---- encode / decode ---------------------------------------------------------------------
    def _check_text(self, text) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if len(text) > self.max_input_chars:
            raise InvalidRequestError(f"text of {len(text)} characters exceeds the tokenizer budget of "
                                      f"{self.max_input_chars} characters")
        m = _SURROGATE.search(text)
        if m is not None:
            raise InvalidRequestError(f"text contains a lone surrogate (invalid Unicode) at index {m.start()}")

    def encode(self, text: str, add_special_tokens: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`. add_special_tokens: add BOS/EOS as the model's config says.
        parse_special=False treats special-token strings in `text` as plain text (for user input)."""
        self._check_text(text)
        backend = self._tok if parse_special else self._variant(split_special=True, continuation=False)
        return backend_call(backend.encode, text, add_special_tokens=add_special_tokens).ids

    def _variant(self, split_special: bool, continuation: bool) -> HfTokenizer:
        """A private copy of the backend (tokenizer-wide flags must not affect concurrent encodes):
        split_special: special-token strings are plain text (encode_special_tokens);
        continuation: for text that does not start the prompt, a Metaspace pre-tokenizer does not
        prepend its word marker (the whole-text encode prepends it only at offset 0)."""
        key = (split_special, continuation)
        cache = self.__dict__.setdefault("_variants", {})
        tok = cache.get(key)
        if tok is None:
            config = json.loads(self._tok.to_str())
            if continuation:
                _metaspace_never(config.get("pre_tokenizer"))
            tok = backend_call(HfTokenizer.from_str, json.dumps(config))
            tok.encode_special_tokens = split_special
            cache[key] = tok
        return tok

    def encode_chat(self, text: str, user_spans: Sequence[tuple[int, int]]) -> list[int]:
        """Ids of a rendered chat prompt (no BOS/EOS added: the template writes them) in which the
        characters in `user_spans` came from the user: special tokens are parsed in the template's
        text only. The whole text is tokenized normally; if no special token overlaps a user span
        (every ordinary chat), those ids are returned as they are: identical to encode(text,
        add_special_tokens=False) and to transformers' apply_chat_template. Otherwise the special
        tokens that touch user text are demoted: the text between the remaining (template) special
        tokens is re-encoded with special tokens as plain text, section by section, as the whole-text
        encode would have split it; the demoted strings then tokenize as ordinary text."""
        self._check_text(text)
        enc = backend_call(self._tok.encode, text, add_special_tokens=False)
        spans: list[list[int]] = []
        for a, b in sorted((int(a), int(b)) for a, b in user_spans if b > a):
            if spans and a <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
        if not spans:
            return list(enc.ids)
        ends = [e for _, e in spans]  # merged, disjoint spans: the ends are sorted too
        specials = self._special_ids
        keep, demoted = [], False
        for tid, (a, b) in zip(enc.ids, enc.offsets):
            if tid not in specials:
                continue
            k = bisect.bisect_right(ends, a)  # the first span ending after a
            if k < len(spans) and spans[k][0] < b:
                demoted = True
            else:
                keep.append((a, b, tid))
        if not demoted:
            return list(enc.ids)
        return self._encode_around(text, keep)

    def _encode_around(self, text: str, keep: list[tuple[int, int, int]]) -> list[int]:
        """`text` tokenized with exactly the special tokens `keep` ((start, end, id), in order):
        every other special-token string is plain text. The text between two kept tokens is encoded
        on its own, as the whole-text encode does after splitting on special tokens (a section that
        does not start the text is encoded without the Metaspace word-marker prefix: `continuation`)."""
        out: list[int] = []
        pos = 0
        for a, b, tid in keep:
            if a > pos:
                out += self._encode_section(text[pos:a], pos == 0)
            out.append(tid)
            pos = b
        if pos < len(text):
            out += self._encode_section(text[pos:], pos == 0)
        return out

    def _encode_section(self, text: str, first: bool) -> list[int]:
        backend = self._variant(split_special=True, continuation=not first)
        return backend_call(backend.encode, text, add_special_tokens=False).ids

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token: what it contributes to the output, without the decoder's
        context rules (a SentencePiece word marker is a space; a byte-fallback token <0xNN> is that
        byte; a byte-level BPE token is its bytes, which may end mid-character). Special tokens
        give their text. Ids in the embedding's padding rows give b''."""
        n = self._n_ids
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < n:
            raise InvalidRequestError(f"token id {token_id!r} is outside the vocabulary of {n} tokens")
        cache = self.__dict__.setdefault("_token_bytes", {})
        b = cache.get(token_id)
        if b is None:
            b = self._compute_token_bytes(token_id)
            if len(cache) < 1 << 20:
                cache[token_id] = b
        return b

    def _compute_token_bytes(self, i: int) -> bytes:
        if i >= self._vocab_size:
            return b""
        added = self.__dict__.get("_added_contents")
        if added is None:
            added = {k: str(t.content) for k, t in self._tok.get_added_tokens_decoder().items()}
            self._added_contents = added
        if i in added:
            content = added[i]
            if i not in self.special_token_ids and self._decoder_style() == "metaspace":
                content = content.replace("\u2581", " ")  # Gemma's "\u2581\u2581" runs decode as spaces
            return content.encode("utf-8")
        tok = self._tok.id_to_token(i)
        if tok is None:
            return b""
        style = self._decoder_style()
        if style == "byte_level":
            inverse = _BYTE_DECODER
            if all(c in inverse for c in tok):
                return bytes(inverse[c] for c in tok)
            return tok.encode("utf-8")
        m = _BYTE_TOKEN.fullmatch(tok)
        if m is not None and i in self.byte_fallback_ids:
            return bytes([int(m.group(1), 16)])
        if style == "metaspace":
            return tok.replace("\u2581", " ").encode("utf-8")
        return backend_call(self._tok.decode, [i], skip_special_tokens=False).encode("utf-8")

    def _decoder_style(self) -> str:
        style = self.__dict__.get("_style")
        if style is None:
            dec = self._tok.decoder
            cfg = dec.__getstate__().decode("utf-8", "replace") if dec is not None else ""
            if '"ByteLevel"' in cfg:
                style = "byte_level"
            elif '"Metaspace"' in cfg or '"\u2581"' in cfg or '"\\u2581"' in cfg:
                style = "metaspace"
            else:
                style = "other"
            self._style = style
        return style

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        ids = list(ids)
        n = self._n_ids
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise InvalidRequestError(f"token id {i!r} is outside the vocabulary of {n} tokens")
        if n > self._vocab_size:
            ids = [i for i in ids if i < self._vocab_size]  # padding rows: no text
        return backend_call(self._tok.decode, ids, skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self._vocab_size

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self._vocab_size}, bos={self.bos_token_id}, "
                f"eos={self.eos_token_ids}, chat_template={'yes' if self.chat_template else 'no'})")

    # ---- constructors ------------------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, meta: dict, n_embedding_rows: int | None = None,
                           max_input_chars: int = kDefaultMaxInputChars) -> "Tokenizer":
        """From the GGUF key/value metadata dict (tokenizer.ggml.* keys)."""
        v = build_gguf_vocab(meta)
        eos = ([v.eos_token_id] if v.eos_token_id is not None else []) + v.extra_eos_token_ids
        return cls(v.tokenizer, bos_token_id=v.bos_token_id, eos_token_ids=eos, pad_token_id=v.pad_token_id,
                   unk_token_id=v.unk_token_id, chat_template=v.chat_template,
                   n_embedding_rows=n_embedding_rows, max_input_chars=max_input_chars)

    @classmethod
    def from_hf_dir(cls, path: str | os.PathLike, n_embedding_rows: int | None = None,
                    max_input_chars: int = kDefaultMaxInputChars) -> "Tokenizer":
        """From a Hugging Face model directory holding tokenizer.json (read through model_dir:
        symlinks out of the directory, FIFOs and oversized files are refused)."""
        root = pathlib.Path(path)
        text = model_dir.read_model_text(root, "tokenizer.json", kMaxTokenizerFileBytes)
        if text is None:
            raise ModelLoadError(f"{root} has no tokenizer.json (slow/sentencepiece-only tokenizers are not supported)")
        backend = load_backend(text, "tokenizer.json")
        tcfg = _read_json(root, "tokenizer_config.json")
        stmap = _read_json(root, "special_tokens_map.json")
        gen = _read_json(root, "generation_config.json")
        mcfg = _read_json(root, "config.json")

        def named(name: str) -> str | None:
            return _token_str(tcfg.get(name)) or _token_str(stmap.get(name))

        def tid(tok: str | None) -> int | None:
            return None if tok is None else backend.token_to_id(tok)

        bos_tok, eos_tok, pad_tok, unk_tok = named("bos_token"), named("eos_token"), named("pad_token"), named("unk_token")
        # Named special tokens that are in the vocabulary are matched whole, like transformers does.
        known = {str(t.content) for t in backend.get_added_tokens_decoder().values()}
        missing = [t for t in dict.fromkeys([bos_tok, eos_tok, unk_tok, pad_tok])
                   if t is not None and t not in known and backend.token_to_id(t) is not None]
        if missing:
            backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])

        bos_id = tid(bos_tok)
        if bos_id is None:
            bos_id = next(iter(_id_list(gen.get("bos_token_id")) or _id_list(mcfg.get("bos_token_id"))), None)
        eos_ids = _id_list(gen.get("eos_token_id")) + _id_list(mcfg.get("eos_token_id"))
        if tid(eos_tok) is not None:
            eos_ids = [tid(eos_tok)] + eos_ids
        eos_ids = list(dict.fromkeys(eos_ids))
        pad_id = tid(pad_tok)
        if pad_id is None:
            pad_id = next(iter(_id_list(gen.get("pad_token_id")) or _id_list(mcfg.get("pad_token_id"))), None)

        # An explicit add_bos_token / add_eos_token in tokenizer_config.json overrides tokenizer.json's post-processor.
        if "add_bos_token" in tcfg or "add_eos_token" in tcfg:
            add_bos = bool(tcfg.get("add_bos_token")) and bos_id is not None and bos_tok is not None
            add_eos = bool(tcfg.get("add_eos_token")) and eos_tok is not None and tid(eos_tok) is not None
            single = ([f"{bos_tok}:0"] if add_bos else []) + ["$A:0"] + ([f"{eos_tok}:0"] if add_eos else [])
            pair = single + ([f"{bos_tok}:1"] if add_bos else []) + ["$B:1"] + ([f"{eos_tok}:1"] if add_eos else [])
            special = ([(bos_tok, bos_id)] if add_bos else []) + (
                [(eos_tok, tid(eos_tok))] if add_eos and eos_tok != (bos_tok if add_bos else None) else [])
            try:
                backend.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                                       special_tokens=special)
            except Exception:
                raise ModelLoadError("tokenizer_config.json: cannot build the BOS/EOS post-processor "
                                     "from its bos_token/eos_token") from None

        template = cls._chat_template_from_dir(root, tcfg)
        return cls(backend, bos_token_id=bos_id, eos_token_ids=eos_ids, pad_token_id=pad_id,
                   unk_token_id=tid(unk_tok), chat_template=template, n_embedding_rows=n_embedding_rows,
                   max_input_chars=max_input_chars)

    @staticmethod
    def _chat_template_from_dir(root: pathlib.Path, tcfg: dict) -> str | None:
        jinja = model_dir.read_model_text(root, "chat_template.jinja", kMaxConfigFileBytes)
        if jinja is not None:
            return jinja
        ct = tcfg.get("chat_template")
        where = "tokenizer_config.json: chat_template"
        if ct is None:
            ct_json = _read_json(root, "chat_template.json")
            ct, where = ct_json.get("chat_template"), "chat_template.json: chat_template"
        if ct is None or isinstance(ct, str):
            return ct
        if isinstance(ct, list):  # [{"name": ..., "template": ...}]: take "default", else the first
            named_templates = {}
            for d in ct:
                if not isinstance(d, dict) or not isinstance(d.get("template"), str):
                    raise ModelLoadError(f"{where}: each entry must be an object with a string 'template'")
                named_templates.setdefault(d.get("name"), d["template"])
            return named_templates.get("default") or next(iter(named_templates.values()), None)
        raise ModelLoadError(f"{where} must be a string or a list of named templates, got {type(ct).__name__}")


def _metaspace_never(node) -> None:
    """In a pre-tokenizer config: Metaspace prepend_scheme 'first' -> 'never' (in place)."""
    if isinstance(node, dict):
        if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first":
            node["prepend_scheme"] = "never"
        for v in node.values():
            _metaspace_never(v)
    elif isinstance(node, list):
        for v in node:
            _metaspace_never(v)


_BYTE_DECODER = {c: b for b, c in byte_to_unicode().items()}
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SURROGATE = re.compile("[\ud800-\udfff]")


__all__ = ["Tokenizer", "kDefaultMaxInputChars", "kMaxNormalizedChars"]
