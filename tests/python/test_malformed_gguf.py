# tests/python/test_malformed_gguf.py: every hand-built malformed GGUF (RELIABILITY item 8; issue 20
# items 12 and 18: counts past the caps, tensors beyond block_count or unknown to eli) must be
# refused by eli.inspect_model with eli.ModelLoadError whose message contains the manifest's
# expected substring. Fixtures: scripts/make_gguf_fixtures.py -> tests/data/malformed/gguf/.
import json
import pathlib

import pytest

DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "malformed" / "gguf"
CASES = json.loads((DIR / "manifest.json").read_text())


def test_manifest_has_enough_cases():
    assert len(CASES) >= 12
    assert all({"path", "class", "expect"} <= set(c) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["path"] for c in CASES])
def test_malformed_gguf_raises_model_load_error(case):
    eli = pytest.importorskip("eli")
    path = DIR / case["path"]
    with pytest.raises(eli.ModelLoadError) as info:
        eli.inspect_model(str(path))
    assert case["expect"] in str(info.value), f"{case['class']}: {info.value}"
    # No C++ source location in what users see, and "GGUF" said once (issue 19).
    assert ".cc:" not in str(info.value) and "check failed" not in str(info.value)
    assert str(info.value).count("GGUF") <= 1 or "GGUF" in case["expect"], str(info.value)


def test_valid_gguf_fixtures_still_open():
    eli = pytest.importorskip("eli")
    good = DIR.parent.parent / "gguf" / "tiny_llama.gguf"
    eli.inspect_model(str(good))
