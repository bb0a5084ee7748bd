"""eli/quantize/calib.py: calibration statistics for `eli quantize` (AWQ, GPTQ).

The text (a file's contents, or DEFAULT_TEXT) is tokenized with the model's tokenizer, cut into
sequences of at most SEQ_LEN tokens, and scored on a CPU float32 eli engine with the calibration
observer installed (_eli.calibrate, runtime/quantize/calibration.h). The per-sequence statistics
are merged weighted by rows: {eli linear name: (mean |x| (k,), mean x x^T (k, k), rows)}.
"""
from __future__ import annotations

import pathlib

import numpy as np

from ..errors import InvalidRequestError

SEQ_LEN = 256

DEFAULT_TEXT = (
    "The history of the written word is a history of tools. Clay tablets, papyrus scrolls and bound "
    "books each changed who could read, what was kept and how quickly ideas travelled. When the printing "
    "press arrived in Europe in the fifteenth century, a single workshop could produce more pages in a week "
    "than a monastery's scribes copied in a year. Prices fell, literacy spread, and arguments that once "
    "circulated among a few scholars reached merchants, farmers and students.\n\n"
    "Science grew alongside these changes. Astronomers compared tables of planetary positions printed in "
    "different cities; physicians shared drawings of anatomy; engineers described pumps, mills and bridges "
    "in manuals that apprentices could study at night. Numbers mattered as much as words: a table of "
    "logarithms, computed once with great care, saved countless hours for navigators and bankers.\n\n"
    "Today a model that predicts the next word has read more text than any person could in many lifetimes. "
    "It answers questions, translates between languages, writes programs in Python and C++, and summarizes "
    "long reports in a few sentences. Yet it still depends on careful measurement. How large is the error "
    "when its weights are stored with four bits instead of sixteen? Which layers are most sensitive, and "
    "why? Good engineering asks such questions before trusting a shortcut, and answers them with data.\n\n"
    "Q: What is 17 times 23? A: 17 times 23 is 391.\n"
    "def mean(values):\n    return sum(values) / len(values) if values else 0.0\n"
)


def calibration_text(calib) -> str:
    if calib is None:
        return DEFAULT_TEXT
    path = pathlib.Path(calib)
    if not path.is_file():
        raise InvalidRequestError(f"calib: {calib!s} is not a file (pass a UTF-8 text file, or None for eli's "
                                  "built-in paragraph)")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise InvalidRequestError(f"calib: {calib!s} is empty")
    return text


def sequences(model_dir: str, text: str, vocab_size: int, max_len: int) -> list[list[int]]:
    from ..tokenizer import Tokenizer

    tok = Tokenizer.from_hf_dir(model_dir, n_embedding_rows=vocab_size)
    ids = tok.encode(text)
    if len(ids) < 2:
        raise InvalidRequestError("the calibration text gives fewer than 2 tokens")
    step = max(2, min(SEQ_LEN, max_len))
    return [ids[i:i + step] for i in range(0, len(ids), step)]


def collect(model_dir: str, text: str, progress: bool) -> dict:
    from .. import _eli, engine_options

    config = engine_options.engine_config(model_dir, device="cpu", dtype="float32", caller="quantize")
    engine = _eli.Engine(config)
    info = engine.info()
    seqs = sequences(model_dir, text, info["spec"]["vocab_size"], info["max_model_len"])
    acc: dict = {}
    for seq in _bar(seqs, progress, "calibration", "seq"):
        for name, (abs_mean, hess, rows) in _eli.calibrate(engine, [seq]).items():
            if name in acc:
                a, h, r = acc[name]
                acc[name] = (a + abs_mean.astype(np.float64) * rows, h + hess.astype(np.float64) * rows, r + rows)
            else:
                acc[name] = (abs_mean.astype(np.float64) * rows, hess.astype(np.float64) * rows, rows)
    return {name: (np.ascontiguousarray(a / r, dtype=np.float32), np.ascontiguousarray(h / r, dtype=np.float32), r)
            for name, (a, h, r) in acc.items()}


def _bar(items, progress: bool, desc: str, unit: str = "it"):
    if not progress:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit=unit, leave=False)
