"""tests/fuzz/make_seeds.py: writes the seed corpora of the libFuzzer harnesses.

Usage: python3 make_seeds.py TESTS_DATA_DIR OUT_DIR  ->  OUT_DIR/<harness>/<seed files>.
Seeds come from tests/data (valid models, GGUF fixtures, every malformed corpus, the fuzz
regression cases of tests/data/malformed/fuzz/manifest.json) plus a few small hand-built files
(tiny safetensors of each dtype, JSON edge cases, index files naming the traps staged by
fuzz_sharded_index.cc). Deterministic; needs only the Python standard library.
"""
import hashlib
import json
import pathlib
import shutil
import struct
import sys

MAX_SEED = 512 * 1024


def put(out: pathlib.Path, harness: str, data: bytes, name: str = "") -> None:
    if len(data) > MAX_SEED:
        return
    d = out / harness
    d.mkdir(parents=True, exist_ok=True)
    tag = name or hashlib.sha1(data).hexdigest()[:16]
    (d / tag).write_bytes(data)


def tiny_safetensors(tensors, metadata=None) -> bytes:
    """tensors: list of (name, dtype, shape, elem_size). Data is a byte ramp."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, esize in tensors:
        n = esize
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        blobs.append(bytes((off + i) & 0xFF for i in range(n)))
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main() -> None:
    data = pathlib.Path(sys.argv[1]).resolve()
    out = pathlib.Path(sys.argv[2]).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    # ---- JSON and config.json
    for p in sorted(data.rglob("*.json")):
        if p.is_symlink() or not p.is_file():
            continue
        if p.stat().st_size <= MAX_SEED:
            put(out, "json", p.read_bytes())
        if p.name == "config.json":
            put(out, "hf_config", p.read_bytes())
        if p.name.endswith(".safetensors.index.json"):
            put(out, "sharded_index", p.read_bytes())
    for text in [b"{}", b"[]", b"null", b"-0.0e+00", b'"\\ud83d\\ude00"', b"[1e308, -1e-308, 9223372036854775807]",
                 b'{"a":{"b":[true,false,null]}}', b"[" * 64 + b"]" * 64, b'"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"']:
        put(out, "json", text)
    for name, cfg in {
        "qwen3": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                  "vocab_size": 256, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
                  "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                      "original_max_position_embeddings": 128}},
        "mistral": {"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
                    "vocab_size": 256, "sliding_window": 32, "tie_word_embeddings": True,
                    "rope_scaling": {"type": "linear", "factor": 2.0}},
    }.items():
        put(out, "hf_config", json.dumps(cfg).encode(), name)

    # ---- safetensors (small files only: the header is what is being fuzzed)
    for p in sorted(data.rglob("*.safetensors")):
        if p.is_symlink() or not p.is_file():  # the malformed corpus holds links and odd entries
            continue
        if p.stat().st_size <= 64 * 1024:
            put(out, "safetensors", p.read_bytes())
            with p.open("rb") as f:  # its JSON header is a JSON seed too
                n = struct.unpack("<Q", f.read(8))[0] if p.stat().st_size >= 8 else 0
                if 0 < n <= 64 * 1024:
                    put(out, "json", f.read(n))
    put(out, "safetensors", tiny_safetensors([("a", "F32", [2, 3], 4), ("b", "F16", [4], 2), ("c", "BF16", [1, 1, 2], 2)],
                                             {"format": "pt"}), "tiny_mixed")
    put(out, "safetensors", tiny_safetensors([("w", "F32", [1], 4)]), "tiny_one")
    put(out, "safetensors", tiny_safetensors([]), "tiny_empty")

    # ---- sharded index: the staged directory holds llama_sharded's 7 shards and the traps
    put(out, "sharded_index", json.dumps({"weight_map": {
        "model.embed_tokens.weight": "sub/inner.safetensors"}}).encode(), "subdir")
    put(out, "sharded_index", json.dumps({"metadata": {}, "weight_map": {
        "model.embed_tokens.weight": "link.safetensors"}}).encode(), "symlink_escape")
    put(out, "sharded_index", json.dumps({"weight_map": {
        "model.embed_tokens.weight": "dir.safetensors"}}).encode(), "directory_shard")

    # ---- GGUF
    for p in sorted(data.rglob("*.gguf")):
        if p.is_file() and not p.is_symlink():
            put(out, "gguf", p.read_bytes())

    # ---- regression inputs found by fuzzing
    manifest = data / "malformed" / "fuzz" / "manifest.json"
    if manifest.exists():
        for case in json.loads(manifest.read_text())["cases"]:
            put(out, case["harness"], (manifest.parent / case["path"]).read_bytes())

    for d in sorted(out.iterdir()):
        print(f"make_seeds: {d.name}: {sum(1 for _ in d.iterdir())} seeds")


if __name__ == "__main__":
    main()
