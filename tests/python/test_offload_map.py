# tests/python/test_offload_map.py: the explicit per-layer placement map of weight offloading
# (option offload_map, docs/offloading.md) and the file tier's direct I/O (ELI_OFFLOAD_DIRECT_IO), on
# the CPU engine, where a host-memory "device" runs the same placement, ring and streamer as a GPU:
# maps that offload middle layers, first layers, alternating layers and mixed host / disk tiers give
# exactly the tokens and logprobs of the resident run; the file tier read with O_DIRECT, buffered,
# and with O_DIRECT asked for (falling back where the filesystem refuses it) gives them too, and
# llm.info["weight_placement"] says which path ran; a failed read ends the step's requests on both
# paths; bad maps, conflicting options and a host layer beyond the host budget are clear errors.
import json

import pytest

import eli

from testdata import DATA_DIR
from test_offload import MODELS, check_disk_read_failure, layers_of, run


def same(a, b):
    return a[0] == b[0] and a[1] == b[1]


# (model, kwargs, map, host layers, disk layers)
MAPS = [
    ("llama_base", {"dtype": "float32"}, "1:host", [1], []),                 # the middle layer
    ("llama_base", {"dtype": "float32"}, "0:disk", [], [0]),                 # the first layer, from the file
    ("llama_base", {"dtype": "float32"}, "0:host,1:disk,2:host", [0, 2], [1]),  # every layer, alternating
    ("gemma3", {"dtype": "float32"}, "0:host,2:disk,4-:host", [0, 4, 5], [2]),  # gaps of resident layers
    ("gemma3", {"dtype": "float32"}, "0-1:gpu,2-3:disk", [], [2, 3]),        # explicit gpu entries
    ("qwen2", {"dtype": "float32"}, "0:disk", [], [0]),                      # biases stay in host memory
    ("llama_bf16", {"dtype": "bfloat16"}, "0:disk,1:host", [1], [0]),        # bf16 matrices as stored
]


@pytest.mark.parametrize("name,kw,omap,host,disk", MAPS, ids=[f"{m[0]}:{m[2]}" for m in MAPS])
def test_maps_match_resident(name, kw, omap, host, disk):
    path = MODELS / name
    want = run(path, **kw)
    got = run(path, offload_map=omap, **kw)
    assert same(got, want), omap  # the same kernels on the same bytes: bit-identical
    info = got[2]
    placement = info["weight_placement"]
    mem = info["memory"]
    assert (mem["weights_host_bytes"] > 0) == bool(host), placement
    assert (mem["weights_disk_bytes"] > 0) == bool(disk), placement
    if disk:
        assert "read from the model file" in placement and "file tier:" in placement, placement
    else:
        assert "file tier" not in placement, placement


def test_describe_names_each_run():
    _, _, info = run(MODELS / "gemma3", dtype="float32", offload_map="0:host,2:disk,4-:host")
    p = info["weight_placement"]
    assert p.startswith("layers 0 in pinned host memory, layers 1 on cpu, layers 2 read from the model file, "
                        "layers 3 on cpu, layers 4-5 in pinned host memory;"), p


@pytest.mark.parametrize("gguf", ["tiny_llama.gguf", "tiny_llama_mixed.gguf"])
def test_gguf_map(gguf):
    # GGUF data at 32-byte aligned offsets, parts of each layer converted at load (kept in host memory).
    path = DATA_DIR / "gguf" / gguf
    want = run(path)
    got = run(path, offload_map="0:disk")
    assert same(got, want)
    assert got[2]["memory"]["weights_disk_bytes"] > 0


@pytest.mark.parametrize("mode", ["on", "off", "auto"])
def test_direct_io_modes_give_identical_tokens(mode, monkeypatch):
    path = MODELS / "llama_base"
    want = run(path, dtype="float32")
    monkeypatch.setenv("ELI_OFFLOAD_DIRECT_IO", mode)
    got = run(path, dtype="float32", offload_map="0-:disk", cpu_memory_bytes=4096)
    assert same(got, want)
    placement = got[2]["weight_placement"]
    if mode == "off":
        assert "file tier: buffered reads (ELI_OFFLOAD_DIRECT_IO=off)" in placement, placement
    else:
        # O_DIRECT where the filesystem takes it; otherwise the fallback ran and says why.
        assert "file tier: direct I/O (O_DIRECT)" in placement or \
            ("file tier: buffered reads (" in placement and "O_DIRECT" in placement), placement
        print("file tier read path:", placement.split("file tier: ")[1])


def test_bad_direct_io_value_is_a_value_error(monkeypatch):
    monkeypatch.setenv("ELI_OFFLOAD_DIRECT_IO", "always")
    with pytest.raises(ValueError, match="ELI_OFFLOAD_DIRECT_IO"):
        run(MODELS / "llama_base", dtype="float32", offload_map="0:disk")


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_disk_read_failure_on_both_paths(mode, monkeypatch):
    monkeypatch.setenv("ELI_OFFLOAD_DIRECT_IO", mode)
    check_disk_read_failure(offload_map="1-:disk")


BAD_MAPS = [
    ("0-1:ssd", "ssd"),
    ("0-1", "0-1"),
    ("x:host", "x"),
    ("2-1:host", "2-1:host"),
    ("0:host,,1:disk", "empty entry"),
    ("3:host", "3:host"),         # llama_base has layers 0-2
    ("1-5:disk", "1-5:disk"),
    ("0-1:host,1-2:disk", "layer 1"),  # overlapping ranges, different tiers
]


@pytest.mark.parametrize("omap,quoted", BAD_MAPS, ids=[b[0] for b in BAD_MAPS])
def test_bad_maps_are_value_errors(omap, quoted):
    with pytest.raises(ValueError, match="offload_map") as e:
        run(MODELS / "llama_base", dtype="float32", offload_map=omap)
    assert quoted in str(e.value)


def test_overlap_with_the_same_tier_is_fine():
    want = run(MODELS / "llama_base", dtype="float32")
    got = run(MODELS / "llama_base", dtype="float32", offload_map="0-1:host,1-2:host")
    assert same(got, want)
    assert "layers 0-2 in pinned host memory" in got[2]["weight_placement"]


@pytest.mark.parametrize("other", [{"offload": "auto"}, {"cpu_offload_gb": 1.0}])
def test_map_is_exclusive_with_auto_and_cpu_offload_gb(other):
    with pytest.raises(ValueError, match="offload_map") as e:
        run(MODELS / "llama_base", dtype="float32", offload_map="1:host", **other)
    assert "offload=\"auto\"" in str(e.value) and "cpu_offload_gb" in str(e.value)


def test_host_layer_beyond_the_host_budget_is_out_of_memory():
    with pytest.raises(eli.OutOfMemoryError, match="layer 1") as e:
        run(MODELS / "llama_base", dtype="float32", offload_map="1:host", cpu_memory_bytes=4096)
    assert "offload_map" in str(e.value)
    # A converted layer (bf16 checkpoint held as float32) cannot be read from the file either.
    with pytest.raises(eli.OutOfMemoryError, match="cannot be read from the model file"):
        run(MODELS / "llama_bf16", dtype="float32", offload_map="0:disk", cpu_memory_bytes=1)


def test_map_with_parallelism_is_unsupported():
    with pytest.raises(NotImplementedError, match="offload_map"):
        run(MODELS / "llama_base", dtype="float32", offload_map="1:host", tensor_parallel_size=2)


def test_info_plan_prints_the_map(capsys):
    from eli import cli

    path = str(MODELS / "gemma3")
    assert cli.main(["info", path, "--offline", "--plan", "--offload-map", "1:host,3-:disk"]) == 0
    out = capsys.readouterr().out
    assert "layers 1 in pinned host memory" in out and "layers 3-5 read from the model file" in out, out
    assert cli.main(["info", path, "--offline", "--plan", "--json", "--offload-map", "1:host,3-:disk"]) == 0
    plan = json.loads(capsys.readouterr().out)["placement"]
    assert plan["offloaded_layers"] == 4 and plan["n_layers"] == layers_of("gemma3")
    assert plan["host_bytes"] > 0 and plan["disk_bytes"] > 0
    _, _, info = run(path, offload_map="1:host,3-:disk")
    assert info["memory"]["weights_disk_bytes"] == plan["disk_bytes"]
    assert info["memory"]["weights_host_bytes"] == plan["host_bytes"]


def test_disk_layer_converted_at_load_stays_in_host_memory():
    # bf16 checkpoint held as float32: nothing of the layer is a view of the file; with room in host
    # memory it still runs (from host memory) and says so.
    want = run(MODELS / "llama_bf16", dtype="float32")
    got = run(MODELS / "llama_bf16", dtype="float32", offload_map="0:disk")
    assert same(got, want)
    assert "file tier: nothing read from the file" in got[2]["weight_placement"], got[2]["weight_placement"]
