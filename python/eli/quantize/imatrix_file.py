"""eli.quantize.imatrix_file: read llama.cpp importance-matrix files (llama-imatrix's output) for the
GGUF requantizer (eli.quantize.gguf_requant).

read_imatrix(path) -> ImatrixFile reads either format llama.cpp writes, told apart by the GGUF magic:
  * GGUF (llama-imatrix's default since 2025): general.type "imatrix", imatrix.datasets (string
    array), imatrix.chunk_count / imatrix.chunk_size (u32); per matrix two F32 tensors,
    "<name>.in_sum2" (numpy shape (n_mat, n): the sum of x_j^2 over every input row, one row per
    expert) and "<name>.counts" (shape (n_mat, 1): how many input rows). The weights are
    in_sum2 / counts, one row per expert (a count of 0: weights 1, as llama-quantize does);
  * legacy .dat: int32 n_entries; per entry int32 name length, the name (UTF-8, no terminator),
    int32 ncall, int32 nval, float32 values[nval] (the mean x_j^2 times ncall); then optionally
    int32 last_call, int32 dataset-name length and the dataset name. The weights are values / ncall
    (ncall 0: used as stored); nval = n_mat * n for a stack of expert matrices.
Entry names are the model's GGUF tensor names (blk.0.attn_q.weight): the names eli's requantizer
uses, so they map 1:1 (a name without the ".weight" suffix is matched with it).

Invariants: everything is little-endian; the whole file is checked before anything is returned:
a truncated file, an absurd count or length (one that cannot fit in the bytes that remain), a
duplicate name, a sums / counts pair with one half missing or of the wrong type or shape,
non-finite or negative values all raise ValueError naming the file (and the entry); no numpy
allocation is sized by an unchecked header field.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

_GGUF_MAGIC = b"GGUF"
_SUMS, _COUNTS = ".in_sum2", ".counts"
_MAX_NAME = 1 << 16


@dataclass
class ImatrixFile:
    """A llama.cpp importance matrix: entries {tensor name: float32 (n_mat, n) mean x_j^2 per input
    column, one row per expert matrix (n_mat = 1 for a plain matrix)}."""
    path: str
    format: str                      # "gguf" or "dat"
    entries: Dict[str, np.ndarray]
    datasets: List[str] = field(default_factory=list)
    chunk_count: int = 0


def read_imatrix(path) -> ImatrixFile:
    """Reads a llama.cpp imatrix file (GGUF or legacy .dat; see the module docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"imatrix file {path!r} does not exist (or is not a file)")
    with open(path, "rb") as f:
        if f.read(4) == _GGUF_MAGIC:
            return _read_gguf(path)  # memory-mapped by gguf-py
        f.seek(0)
        data = f.read()
    return _read_dat(path, data)


def _bad(path: str, msg: str) -> ValueError:
    return ValueError(f"imatrix file {path!r}: {msg}")


def _check_values(path: str, name: str, v: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(v)):
        raise _bad(path, f"entry {name}: {what} holds non-finite values")
    if np.any(v < 0):
        raise _bad(path, f"entry {name}: {what} holds negative values (sums of squares are >= 0)")


def _read_dat(path: str, data: bytes) -> ImatrixFile:
    size, pos = len(data), 0

    def i32(what: str) -> int:
        nonlocal pos
        if pos + 4 > size:
            raise _bad(path, f"truncated at byte {pos} (reading {what}); not a llama.cpp imatrix file?")
        (v,) = struct.unpack_from("<i", data, pos)
        pos += 4
        return v

    n_entries = i32("the entry count")
    # The smallest entry (1-byte name, ncall, nval, one value) takes 17 bytes.
    if n_entries <= 0 or n_entries > (size - 4) // 17:
        raise _bad(path, f"entry count {n_entries} is impossible for a file of {size} bytes "
                         "(not a llama.cpp imatrix file: neither GGUF nor the legacy .dat layout)")
    entries: Dict[str, np.ndarray] = {}
    for i in range(n_entries):
        n_name = i32(f"entry {i}'s name length")
        if n_name <= 0 or n_name > _MAX_NAME or pos + n_name > size:
            raise _bad(path, f"entry {i}: name length {n_name} is impossible (byte {pos - 4} of {size})")
        try:
            name = data[pos:pos + n_name].decode("utf-8")
        except UnicodeDecodeError as e:
            raise _bad(path, f"entry {i}: the name is not UTF-8 ({e})") from e
        pos += n_name
        ncall = i32(f"entry {name}'s ncall")
        nval = i32(f"entry {name}'s value count")
        if ncall < 0:
            raise _bad(path, f"entry {name}: negative call count {ncall}")
        if nval <= 0 or pos + 4 * nval > size:
            raise _bad(path, f"entry {name}: {nval} values do not fit in the {size - pos} bytes that remain "
                             "(truncated or corrupt)")
        v = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        _check_values(path, name, v, "its values")
        if name in entries:
            raise _bad(path, f"entry {name} appears twice")
        entries[name] = (v / np.float32(ncall) if ncall > 0 else v).reshape(1, -1)
    chunk_count, datasets = 0, []
    if pos < size:
        chunk_count = i32("the chunk count")
        if pos < size:
            n_ds = i32("the dataset name length")
            if n_ds < 0 or pos + n_ds > size:
                raise _bad(path, f"dataset name length {n_ds} does not fit in the {size - pos} bytes that remain")
            datasets = [data[pos:pos + n_ds].decode("utf-8", errors="replace")] if n_ds else []
            pos += n_ds
        if pos != size:
            raise _bad(path, f"{size - pos} unexpected bytes after the dataset name")
    return ImatrixFile(path, "dat", entries, datasets, int(chunk_count))


def _read_gguf(path: str) -> ImatrixFile:
    try:
        import gguf
    except ImportError as e:
        raise ImportError("reading a GGUF imatrix needs the `gguf` package (llama.cpp's gguf-py): pip install gguf") from e
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:  # gguf-py raises ValueError / struct / numpy errors of its own on a bad file
        raise _bad(path, f"not a readable GGUF file ({type(e).__name__}: {e})") from e
    fields = reader.fields

    def text(name):
        f = fields.get(name)
        if f is None or not f.types or f.types[0] != gguf.GGUFValueType.STRING:
            return None
        return bytes(f.parts[f.data[0]]).decode("utf-8", errors="replace")

    kind = text("general.type")
    if kind is not None and kind != "imatrix":
        raise _bad(path, f"a GGUF file of general.type {kind!r}, not an importance matrix (\"imatrix\")")
    halves: Dict[str, list] = {}
    for t in reader.tensors:
        for suffix, slot in ((_SUMS, 0), (_COUNTS, 1)):
            if t.name.endswith(suffix):
                pair = halves.setdefault(t.name[:-len(suffix)], [None, None])
                if pair[slot] is not None:
                    raise _bad(path, f"tensor {t.name} appears twice")
                pair[slot] = t
    if not halves:
        raise _bad(path, "no <name>.in_sum2 / <name>.counts tensors: not a llama.cpp imatrix (a model file?)")
    entries: Dict[str, np.ndarray] = {}
    for name, (sums, counts) in halves.items():
        if sums is None or counts is None:
            raise _bad(path, f"entry {name}: {'.in_sum2' if sums is None else '.counts'} tensor missing")
        for t in (sums, counts):
            if t.tensor_type != gguf.GGMLQuantizationType.F32:
                raise _bad(path, f"tensor {t.name} is {t.tensor_type.name}, expected F32")
        ne_s = [int(d) for d in sums.shape]
        ne_c = [int(d) for d in counts.shape]
        n_mat = int(np.prod(ne_s[1:], dtype=np.int64)) if len(ne_s) > 1 else 1
        if ne_s[0] <= 0 or int(np.prod(ne_c, dtype=np.int64)) != n_mat:
            raise _bad(path, f"entry {name}: .in_sum2 of shape {ne_s} and .counts of shape {ne_c} disagree "
                             f"(expected {n_mat} counts)")
        s = np.asarray(sums.data, dtype=np.float32).reshape(n_mat, ne_s[0])
        c = np.asarray(counts.data, dtype=np.float32).reshape(n_mat, 1)
        _check_values(path, name, s, ".in_sum2")
        _check_values(path, name, c, ".counts")
        safe = np.where(c > 0, c, np.float32(1))
        entries[name] = np.where(c > 0, s / safe, np.float32(1)).astype(np.float32)
    ds = fields.get("imatrix.datasets")
    datasets = []
    if ds is not None and len(ds.types) > 1 and ds.types[-1] == gguf.GGUFValueType.STRING:
        datasets = [bytes(ds.parts[i]).decode("utf-8", errors="replace") for i in ds.data]
    cc = fields.get("imatrix.chunk_count")
    chunk_count = int(cc.contents()) if cc is not None and cc.types and cc.types[0] != gguf.GGUFValueType.ARRAY else 0
    return ImatrixFile(path, "gguf", entries, datasets, chunk_count)


def match_entries(imf: ImatrixFile, tensors) -> tuple:
    """Column weights for the requantizer from `imf`: tensors = [(name, ne)] of the matrices to
    quantize (ne innermost first). Returns ({tensor name: float32 (n,) or (n_mat, n) weights},
    [names of those matrices without an entry]). A size mismatch raises ValueError naming the
    tensor; entries for tensors the model does not have are ignored."""
    by_name = dict(imf.entries)
    weights, missing = {}, []
    for name, ne in tensors:
        w = by_name.get(name)
        if w is None and name.endswith(".weight"):
            w = by_name.get(name[:-len(".weight")])
        if w is None:
            missing.append(name)
            continue
        row_len = int(ne[0])
        n_mat = int(ne[2]) if len(ne) > 2 else 1
        if n_mat > 1 and w.shape == (1, n_mat * row_len):  # a legacy .dat stack of experts
            w = w.reshape(n_mat, row_len)
        if w.shape[1] != row_len or w.shape[0] not in (1, n_mat):
            want = f"{row_len}" if n_mat == 1 else f"{n_mat} x {row_len}"
            raise ValueError(f"imatrix file {imf.path!r}: entry {name} holds {w.shape[0]} x {w.shape[1]} weights, "
                             f"but the tensor's rows take {want} (an imatrix of another model?)")
        weights[name] = w[0] if w.shape[0] == 1 else w
    return weights, missing
