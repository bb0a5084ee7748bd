# eli/tokenizer.py: the tokenizer eli uses for prompts and outputs, over a `tokenizers.Tokenizer`.
#
# Built from a Hugging Face model directory (tokenizer.json + tokenizer_config.json +
# generation_config.json + special_tokens_map.json + config.json) or from GGUF metadata
# (see gguf_vocab.py). Invariants checked at construction (ValueError, mapped to eli.ModelLoadError
# by the caller): every added/special token id and every named special id is below `vocab_size`
# (and below the model's embedding rows when given). Encoding has a size budget (`max_input_chars`)
# so one request cannot make tokenization take unbounded time and memory. Only `tokenizers` and the
# stdlib are used here: importing this never pulls in torch or transformers.
from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable

from tokenizers import AddedToken, processors
from tokenizers import Tokenizer as HfTokenizer

from .gguf_vocab import build_gguf_vocab

kDefaultMaxInputChars = 4 * 1024 * 1024
kMaxTokenizerFileBytes = 512 * 1024 * 1024  # tokenizer.json larger than this is refused
kMaxConfigFileBytes = 16 * 1024 * 1024  # the small JSON configs


def _read_json(path: pathlib.Path, required: bool = False) -> dict:
    if not path.is_file():
        if required:
            raise ValueError(f"missing tokenizer file: {path}")
        return {}
    size = path.stat().st_size
    if size > kMaxConfigFileBytes:
        raise ValueError(f"{path.name} is {size} bytes, over the {kMaxConfigFileBytes}-byte limit")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path.name} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    return value


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
        self.max_input_chars = max_input_chars
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
                    raise ValueError(f"added token {tok.content!r} has id {i}, past the model's "
                                     f"{n_embedding_rows} embedding rows")
            if self._vocab_size > n_embedding_rows:
                raise ValueError(f"the tokenizer has {self._vocab_size} tokens but the model has only "
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
            raise ValueError("chat_template must be a string")
        self.chat_template: str | None = chat_template or None
        self._special_ids = frozenset(i for i, t in added.items() if t.special)

    @staticmethod
    def _check_id(name: str, value, limit: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
            raise ValueError(f"{name} {value!r} is outside the vocabulary of {limit} tokens")
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
    def encode(self, text: str, add_special_tokens: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`. add_special_tokens: add BOS/EOS as the model's config says.
        parse_special=False treats special-token strings in `text` as plain text (for user input)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if len(text) > self.max_input_chars:
            raise ValueError(f"text of {len(text)} characters exceeds the tokenizer budget of "
                             f"{self.max_input_chars} characters")
        if parse_special:
            return self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        # encode_special_tokens is a tokenizer-wide flag: use a private copy so concurrent encodes are unaffected.
        split = getattr(self, "_split_tok", None)
        if split is None:
            split = HfTokenizer.from_str(self._tok.to_str())
            split.encode_special_tokens = True
            self._split_tok = split
        return split.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        ids = list(ids)
        n = self._n_ids
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"token id {i!r} is outside the vocabulary of {n} tokens")
        if n > self._vocab_size:
            ids = [i for i in ids if i < self._vocab_size]  # padding rows: no text
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

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
        """From a Hugging Face model directory holding tokenizer.json."""
        root = pathlib.Path(path)
        tj = root / "tokenizer.json"
        if not tj.is_file():
            raise ValueError(f"{root} has no tokenizer.json (slow/sentencepiece-only tokenizers are not supported)")
        size = tj.stat().st_size
        if size > kMaxTokenizerFileBytes:
            raise ValueError(f"tokenizer.json is {size} bytes, over the {kMaxTokenizerFileBytes}-byte limit")
        try:
            backend = HfTokenizer.from_file(str(tj))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise ValueError(f"tokenizer.json could not be loaded: {e}") from None
        tcfg = _read_json(root / "tokenizer_config.json")
        stmap = _read_json(root / "special_tokens_map.json")
        gen = _read_json(root / "generation_config.json")
        mcfg = _read_json(root / "config.json")

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
            except Exception as e:
                raise ValueError(f"cannot build BOS/EOS post-processor: {e}") from None

        template = cls._chat_template_from_dir(root, tcfg)
        return cls(backend, bos_token_id=bos_id, eos_token_ids=eos_ids, pad_token_id=pad_id,
                   unk_token_id=tid(unk_tok), chat_template=template, n_embedding_rows=n_embedding_rows,
                   max_input_chars=max_input_chars)

    @staticmethod
    def _chat_template_from_dir(root: pathlib.Path, tcfg: dict) -> str | None:
        jinja = root / "chat_template.jinja"
        if jinja.is_file():
            if jinja.stat().st_size > kMaxConfigFileBytes:
                raise ValueError("chat_template.jinja is too large")
            return jinja.read_text(encoding="utf-8")
        ct = tcfg.get("chat_template")
        if isinstance(ct, str):
            return ct
        if isinstance(ct, list):  # [{"name": ..., "template": ...}]: take "default", else the first
            named_templates = {d.get("name"): d.get("template") for d in ct if isinstance(d, dict)}
            pick = named_templates.get("default") or next(iter(named_templates.values()), None)
            return pick if isinstance(pick, str) else None
        ct_file = root / "chat_template.json"
        if ct_file.is_file():
            d = _read_json(ct_file)
            if isinstance(d.get("chat_template"), str):
                return d["chat_template"]
        return None


__all__ = ["Tokenizer", "kDefaultMaxInputChars"]
