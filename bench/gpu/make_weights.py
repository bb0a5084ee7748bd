#!/usr/bin/env python3
# bench/gpu/make_weights.py: random bf16 weights at a real model shape (Llama-3.2-1B, Llama-3.1-8B, Llama-3.1-70B,
# or a tiny test shape), written fast, in the two formats the benchmark's engines read:
#   <out>/<shape>/       a Hugging Face checkpoint: config.json, model.safetensors, tokenizer.json
#                        (+ tokenizer_config.json, special_tokens_map.json, generation_config.json),
#                        loadable by eli and by transformers;
#   <out>/<shape>.gguf   the same tensors for llama.cpp (architecture llama, tokenizer "no_vocab").
#
# Invariants:
# - Same seed -> same values in both formats. Every matrix is a window of one pool of P (prime)
#   random bf16 values ~N(0, std), read cyclically from an offset that hashes the tensor's HF name:
#   value[i] = pool[(offset + i) mod P]. Since P is prime, no two rows of a matrix repeat. Norm
#   weights are ~N(1, 0.05). Nothing is zero. The GGUF holds the same values, with llama.cpp's
#   conventions applied: Q/K rows permuted as its converter does for llama files
#   (w.reshape(n_head, 2, hd/2, H).swapaxes(1, 2)), 1-d tensors (norms) in F32 (exact: bf16 -> f32),
#   and, for llama3 RoPE scaling, the rope_freqs.weight factors its converter writes. So both engines
#   compute the same function.
# - The tokenizer is byte-level BPE with exactly `vocab` ids: 256 byte tokens, filler multi-byte
#   tokens up to vocab - n_special (no merges: text encodes byte by byte, any id decodes), then the
#   special tokens (<|begin_of_text|> = BOS, <|end_of_text|> = EOS, reserved ones) in the last ids,
#   as in Llama 3 (BOS 128000, EOS 128001).
# - Outputs appear complete or not at all: each is written under a temporary name and renamed; the
#   HF directory gets a `.complete.json` (shape, counts, seconds) last.
# - No torch: numpy, tokenizers and (for the GGUF) gguf-py from peers/llama.cpp/gguf-py.
#   usage: make_weights.py --shape 1b --shape 8b --out /tmp/eli-bench/weights [--formats hf,gguf]
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402

kPool = 1048573  # prime: a matrix's rows never repeat
kChunkCopies = 16


# ---- values ----------------------------------------------------------------------------------
def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


class Values:
    """The seeded values of every tensor (see the header)."""

    def __init__(self, seed: int, std: float):
        self.seed = seed
        rng = np.random.default_rng(seed)
        pool = to_bf16_bits(rng.standard_normal(kPool, dtype=np.float32) * np.float32(std))
        self.pool2 = np.concatenate([pool, pool])  # any window of length kPool is contiguous here

    def _key(self, name: str) -> int:
        return zlib.crc32(f"{self.seed}:{name}".encode())

    def matrix(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        off = self._key(name) % kPool
        window = self.pool2[off:off + kPool]
        out = np.empty(n, dtype=np.uint16)
        big = np.tile(window, kChunkCopies) if n >= kPool * kChunkCopies else window
        pos = 0
        while pos < n:  # every chunk starts at a multiple of kPool: the same window again
            k = min(big.size, n - pos)
            out[pos:pos + k] = big[:k]
            pos += k
        return out.reshape(shape)

    def norm(self, name: str, n: int) -> np.ndarray:
        rng = np.random.default_rng(self._key(name))
        return to_bf16_bits(1.0 + 0.05 * rng.standard_normal(n, dtype=np.float32))


# ---- tensors ---------------------------------------------------------------------------------
def tensor_list(s: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(HF name, shape, kind) in file order; kind: 'matrix' | 'norm'."""
    H, I, V, hd = s["hidden"], s["inter"], s["vocab"], s["head_dim"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    out = [("model.embed_tokens.weight", (V, H), "matrix")]
    for layer in range(s["layers"]):
        p = f"model.layers.{layer}."
        out += [(p + "input_layernorm.weight", (H,), "norm"),
                (p + "self_attn.q_proj.weight", (q, H), "matrix"),
                (p + "self_attn.k_proj.weight", (kv, H), "matrix"),
                (p + "self_attn.v_proj.weight", (kv, H), "matrix"),
                (p + "self_attn.o_proj.weight", (H, q), "matrix"),
                (p + "post_attention_layernorm.weight", (H,), "norm"),
                (p + "mlp.gate_proj.weight", (I, H), "matrix"),
                (p + "mlp.up_proj.weight", (I, H), "matrix"),
                (p + "mlp.down_proj.weight", (H, I), "matrix")]
    out.append(("model.norm.weight", (H,), "norm"))
    if not s["tied"]:
        out.append(("lm_head.weight", (V, H), "matrix"))
    return out


_GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
               "post_attention_layernorm": "ffn_norm"}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<a>.<b>.weight or model.layers.N.<a>.weight
    layer, mid = parts[2], ".".join(parts[3:-1])
    return f"blk.{layer}.{_GGUF_NAMES[mid]}.weight"


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order for llama GGUFs (its converter's `permute`)."""
    rows = w.shape[0]
    return np.ascontiguousarray(w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2)
                                .reshape(w.shape))


def llama3_rope_factors(s: dict) -> np.ndarray:
    """The per-frequency divisors llama.cpp reads from rope_freqs.weight for llama3 RoPE scaling
    (the same scaling as transformers' llama3 rope init)."""
    r = s["rope_scaling"]
    dim = s["head_dim"]
    base = s["rope_theta"]
    factor, low, high = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
    old = r["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wl = 2 * math.pi / freq
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


# ---- tokenizer and configs -------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet: printable bytes map to themselves, the others to code points
    from 256 up, so every byte is one visible character."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def special_tokens(vocab: int) -> tuple[int, list[str]]:
    """(first special id, names) — 256 specials for real vocabularies, 8 for tiny ones."""
    n = 256 if vocab >= 4096 else 8
    names = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(n - 2)]
    return vocab - n, names


def build_tokenizer(vocab: int):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    first_special, names = special_tokens(vocab)
    alphabet = [_bytes_to_unicode()[b] for b in range(256)]
    table: dict[str, int] = {c: i for i, c in enumerate(alphabet)}
    length = 2
    while len(table) < first_special:  # filler tokens: 2-character strings, then 3-character ones
        for idx in range(len(alphabet) ** length):
            if len(table) >= first_special:
                break
            chars, x = [], idx
            for _ in range(length):
                chars.append(alphabet[x % 256])
                x //= 256
            table.setdefault("".join(reversed(chars)), len(table))
        length += 1
    tok = Tokenizer(models.BPE(vocab=table, merges=[], fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])
    for i, n in enumerate(names):
        got = tok.token_to_id(n)
        if got != first_special + i:
            raise RuntimeError(f"special token {n} got id {got}, expected {first_special + i}")
    bos = names[0]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                                       special_tokens=[(bos, first_special)])
    if tok.get_vocab_size(with_added_tokens=True) != vocab:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size(with_added_tokens=True)} ids, expected {vocab}")
    return tok, first_special, first_special + 1


def hf_config(s: dict, bos: int, eos: int) -> dict:
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": s["hidden"], "intermediate_size": s["inter"], "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
        "vocab_size": s["vocab"], "max_position_embeddings": s["max_pos"], "rms_norm_eps": s["eps"],
        "rope_theta": s["rope_theta"], "tie_word_embeddings": s["tied"], "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "initializer_range": 0.02,
        "pretraining_tp": 1, "use_cache": True, "bos_token_id": bos, "eos_token_id": eos,
        "torch_dtype": "bfloat16",
    }
    if s["rope_scaling"]:
        cfg["rope_scaling"] = dict(s["rope_scaling"])
    return cfg


def write_tokenizer_files(d: pathlib.Path, s: dict, cache: dict) -> tuple[int, int]:
    if s["vocab"] not in cache:
        cache[s["vocab"]] = build_tokenizer(s["vocab"])
    tok, bos, eos = cache[s["vocab"]]
    tok.save(str(d / "tokenizer.json"))
    first_special, names = special_tokens(s["vocab"])
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": names[0], "eos_token": names[1], "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": s["max_pos"], "clean_up_tokenization_spaces": False}, indent=1))
    (d / "special_tokens_map.json").write_text(json.dumps({"bos_token": names[0], "eos_token": names[1]}, indent=1))
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos,
                                                           "do_sample": False}, indent=1))
    return bos, eos


# ---- writers ---------------------------------------------------------------------------------
class SafetensorsWriter:
    """One model.safetensors, header first (offsets known up front), then the tensors in order."""

    def __init__(self, path: pathlib.Path, tensors: list[tuple[str, tuple[int, ...], str]]):
        header: dict = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shp, _ in tensors:
            n = int(np.prod(shp)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [off, off + n]}
            off += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.f = open(path, "wb")
        self.f.write(len(raw).to_bytes(8, "little"))
        self.f.write(raw)
        self.expected = 8 + len(raw) + off

    def write(self, arr: np.ndarray) -> None:
        self.f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))

    def close(self) -> None:
        size = self.f.tell()
        self.f.close()
        if size != self.expected:
            raise RuntimeError(f"safetensors: wrote {size} bytes, expected {self.expected}")


def import_gguf(gguf_py: str | None):
    """gguf-py from --gguf-py, else peers/llama.cpp/gguf-py (the tree llama.cpp is built from), else
    an installed `gguf` package."""
    for c in [gguf_py, str(common.ROOT / "peers" / "llama.cpp" / "gguf-py")]:
        if c and pathlib.Path(c, "gguf", "__init__.py").is_file():
            if c not in sys.path:
                sys.path.insert(0, c)
            break
    try:
        import gguf
    except ImportError as e:
        raise ImportError(f"gguf-py not found ({e}); run scripts/fetch_llama_cpp.sh") from e
    return gguf


class GgufWriter:
    def __init__(self, gguf, path: pathlib.Path, s: dict, name: str, tensors, bos: int, eos: int):
        self.gguf = gguf
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_name(f"eli-bench random {name}")
        w.add_context_length(s["max_pos"])
        w.add_embedding_length(s["hidden"])
        w.add_block_count(s["layers"])
        w.add_feed_forward_length(s["inter"])
        w.add_head_count(s["heads"])
        w.add_head_count_kv(s["kv_heads"])
        w.add_key_length(s["head_dim"])
        w.add_value_length(s["head_dim"])
        w.add_rope_dimension_count(s["head_dim"])
        w.add_rope_freq_base(s["rope_theta"])
        w.add_layer_norm_rms_eps(s["eps"])
        w.add_vocab_size(s["vocab"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
        w.add_tokenizer_model("no_vocab")
        w.add_bos_token_id(bos)
        w.add_eos_token_id(eos)
        self.order = []
        if s["rope_scaling"] and s["rope_scaling"].get("rope_type") == "llama3":
            rf = llama3_rope_factors(s)
            w.add_tensor_info("rope_freqs.weight", rf.shape, rf.dtype, rf.nbytes)
            self.order.append(("rope_freqs.weight", rf))
        for hf, shp, kind in tensors:
            n = int(np.prod(shp))
            if kind == "norm":
                w.add_tensor_info(gguf_name(hf), shp, np.dtype(np.float32), n * 4)
            else:
                w.add_tensor_info(gguf_name(hf), shp, np.dtype(np.uint16), n * 2,
                                  raw_dtype=gguf.GGMLQuantizationType.BF16)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for _, arr in self.order:
            w.write_tensor_data(arr)
        self.w = w

    def write(self, arr: np.ndarray) -> None:
        self.w.write_tensor_data(np.ascontiguousarray(arr))

    def close(self) -> None:
        self.w.close()


def make(shape_key: str, out: pathlib.Path, formats: set[str], seed: int, gguf_py: str | None,
         tok_cache: dict, force: bool = False) -> dict:
    name = common.shape_name(shape_key)
    s = common.SHAPES[name]
    hf_dir, gguf_path = out / name, out / f"{name}.gguf"
    want_hf = "hf" in formats and (force or not (hf_dir / ".complete.json").is_file())
    want_gguf = "gguf" in formats and (force or not gguf_path.is_file())
    if not want_hf and not want_gguf:
        common.log(f"{name}: already there ({hf_dir}, {gguf_path})")
        return common.read_json(hf_dir / ".complete.json", {}) or {"shape": name}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tensors = tensor_list(s)
    values = Values(seed, s["std"])
    first_special, _ = special_tokens(s["vocab"])
    bos, eos = first_special, first_special + 1

    tmp_dir = out / f".{name}.tmp"
    tmp_gguf = out / f".{name}.gguf.tmp"
    st = gg = None
    if want_hf:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        bos, eos = write_tokenizer_files(tmp_dir, s, tok_cache)
        (tmp_dir / "config.json").write_text(json.dumps(hf_config(s, bos, eos), indent=1))
        st = SafetensorsWriter(tmp_dir / "model.safetensors", tensors)
    if want_gguf:
        gguf = import_gguf(gguf_py)
        gg = GgufWriter(gguf, tmp_gguf, s, name, tensors, bos, eos)
    nbytes = 0
    for hf, shp, kind in tensors:
        arr = values.norm(hf, shp[0]) if kind == "norm" else values.matrix(hf, shp)
        nbytes += arr.nbytes
        if st:
            st.write(arr)
        if gg:
            if kind == "norm":
                gg.write(bf16_bits_to_f32(arr))
            elif hf.endswith("q_proj.weight"):
                gg.write(llama_cpp_permute(arr, s["heads"]))
            elif hf.endswith("k_proj.weight"):
                gg.write(llama_cpp_permute(arr, s["kv_heads"]))
            else:
                gg.write(arr)
    info = {"shape": name, "seed": seed, "std": s["std"], "n_tensors": len(tensors),
            "total_params": common.total_params(s), "layer_params": common.layer_params(s),
            "bytes_bf16": nbytes, "bos": bos, "eos": eos}
    if st:
        st.close()
        info["seconds"] = round(time.perf_counter() - t0, 2)
        common.write_json(tmp_dir / ".complete.json", info)
        shutil.rmtree(hf_dir, ignore_errors=True)
        os.replace(tmp_dir, hf_dir)
    if gg:
        gg.close()
        os.replace(tmp_gguf, gguf_path)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    common.log(f"{name}: {nbytes / 1e9:.2f} GB of bf16 values -> "
               f"{'HF ' + str(hf_dir) if want_hf else ''} {'GGUF ' + str(gguf_path) if want_gguf else ''} "
               f"in {info['seconds']} s")
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", action="append", required=True, help="1b, 8b, 70b, tiny, tiny-plain (repeatable)")
    ap.add_argument("--out", default=str(common.WORK / "weights"))
    ap.add_argument("--formats", default="hf,gguf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gguf-py", default=None, help="folder holding the gguf package (default: peers/llama.cpp/gguf-py)")
    ap.add_argument("--force", action="store_true", help="rewrite outputs that exist")
    ap.add_argument("--status-dir", default=None, help="write <status-dir>/weights_<shape>.ok when each is done")
    args = ap.parse_args()
    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    cache: dict = {}
    rc = 0
    for sh in args.shape:
        try:
            info = make(sh, pathlib.Path(args.out), formats, args.seed, args.gguf_py, cache, args.force)
            if args.status_dir:
                common.write_json(pathlib.Path(args.status_dir) / f"weights_{common.SHORT[common.shape_name(sh)]}.ok", info)
        except Exception as e:  # noqa: BLE001 -- one shape failing must not stop the next
            common.log(f"!! {sh}: {type(e).__name__}: {e}")
            if args.status_dir:
                short = common.SHORT.get(common.ALIASES.get(sh, sh), sh)
                common.write_json(pathlib.Path(args.status_dir) / f"weights_{short}.failed", {"error": str(e)})
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
