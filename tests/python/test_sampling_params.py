# tests/python/test_sampling_params.py: eli.SamplingParams is validated at construction (issue 21:
# bad values used to fail only at generate()), with InvalidRequestError naming the field and no C++
# source location; seeds in [2**63, 2**64) are accepted and negative ones refused (issue 20 item 14);
# logprobs=-1 is refused (item 15); 10**400 is an InvalidRequestError, not OverflowError (item 17);
# n and its per-completion seeds; dicts of fields; the model's sampling defaults
# (generation_config.json, GGUF general.sampling.*, else eli's chat defaults). No model needed.
import json
import math

import numpy as np
import pytest

import eli
from eli.sampling_params import (DEFAULT_SAMPLING, SamplingParams, describe_defaults, kMaxN,
                                 model_sampling_defaults)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_tokens=-1), "max_tokens"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens=2**40), "max_tokens"),
    (dict(max_tokens=3.0), "max_tokens must be an integer"),
    (dict(temperature=math.nan), "temperature"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=10**400), "temperature must be a finite number"),
    (dict(temperature="0.7"), "temperature must be a number"),
    (dict(top_p=2), "top_p"),
    (dict(top_p=0.0), "top_p"),
    (dict(min_p=1.5), "min_p"),
    (dict(top_k=-5), "top_k"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(presence_penalty=3.0), "presence_penalty"),
    (dict(logprobs=50), "logprobs"),
    (dict(logprobs=-1), "logprobs must be in \\[0, 20\\].*None for no logprobs"),
    (dict(logprobs=1.0), "logprobs"),
    (dict(seed=-1), "seed must be in \\[0, 18446744073709551615\\].*negative"),
    (dict(seed=2**64), "seed"),
    (dict(seed="7"), "seed"),
    (dict(n=0), "n must be in"),
    (dict(n=kMaxN + 1), "n must be in"),
    (dict(n=True), "n must be an integer"),
    (dict(ignore_eos="yes"), "ignore_eos must be True or False"),
    (dict(skip_special_tokens=None), "skip_special_tokens"),
    (dict(stop_token_ids=[-1]), "stop_token_ids"),
    (dict(stop_token_ids=[2**40]), "stop_token_ids"),
    (dict(stop_token_ids="abc"), "stop_token_ids must be a list"),
    (dict(stop=5), "stop must be a string or a list"),
    (dict(stop=[""]), "stop strings must be non-empty"),
])
def test_bad_values_fail_at_construction(kwargs, match):
    with pytest.raises(eli.InvalidRequestError, match=match) as err:
        SamplingParams(**kwargs)
    assert ".cc:" not in str(err.value) and "check failed" not in str(err.value)


def test_valid_values_pass_and_normalize():
    p = SamplingParams(32, temperature=0, top_k=-1, seed=np.uint64(2**63 + 5), stop="x", stop_token_ids=(3,),
                       logprobs=0, n=3)
    assert p.max_tokens == 32  # positional: max_tokens first, as before n existed
    assert p.temperature == 0.0 and isinstance(p.temperature, float)
    assert p.seed == 2**63 + 5 and type(p.seed) is int
    assert p.stop == ["x"] and p.stop_token_ids == [3]
    SamplingParams(seed=2**64 - 1, logprobs=20, temperature=np.float32(0.5), top_k=np.int64(4))


def test_completions_share_the_logic_of_the_server():
    p = SamplingParams(n=3, seed=2**64 - 2, max_tokens=4)
    subs = p.completions()
    assert [s.seed for s in subs] == [2**64 - 2, 2**64 - 1, 0]  # seed + i, mod 2**64
    assert all(s.n == 1 and s.max_tokens == 4 for s in subs)
    assert [s.seed for s in SamplingParams(n=2).completions()] == [None, None]
    one = SamplingParams()
    assert one.completions() == [one]


def test_engine_params_are_typed():
    p = SamplingParams(max_tokens=5, seed=2**64 - 1, stop_token_ids=[7], ignore_eos=False)
    e = p.engine_params([7, 9], max_tokens=3)
    assert e.max_tokens == 3 and e.seed == 2**64 - 1 and e.has_seed and e.stop_token_ids == [7, 9]
    assert e.logprobs == -1
    assert SamplingParams(ignore_eos=True).engine_params([9]).stop_token_ids == []


def test_from_dict():
    p = SamplingParams.from_dict({"max_tokens": 3}, {"temperature": 0.25})
    assert p.max_tokens == 3 and p.temperature == 0.25
    assert SamplingParams.from_dict({"temperature": 1.0}, {"temperature": 0.25}).temperature == 1.0
    with pytest.raises(eli.InvalidRequestError, match="unknown SamplingParams field 'max_token'"):
        SamplingParams.from_dict({"max_token": 3})


def test_model_defaults_from_generation_config(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "do_sample": True}))
    values, source = model_sampling_defaults(str(tmp_path))
    assert values == {"temperature": 0.6, "top_p": 0.95, "top_k": 20} and source == "generation_config.json"


def test_model_defaults_fall_back_to_chat_defaults(tmp_path):
    assert model_sampling_defaults(str(tmp_path)) == (DEFAULT_SAMPLING, "eli's chat defaults")
    (tmp_path / "generation_config.json").write_text('{"bos_token_id": 1, "eos_token_id": 2}')
    assert model_sampling_defaults(str(tmp_path))[0] == DEFAULT_SAMPLING
    (tmp_path / "generation_config.json").write_text("not json")
    assert model_sampling_defaults(str(tmp_path))[0] == DEFAULT_SAMPLING
    assert model_sampling_defaults(None)[0] == DEFAULT_SAMPLING
    assert DEFAULT_SAMPLING == {"temperature": 0.7, "top_p": 0.9}
    assert describe_defaults() == "temperature 0.7, top_p 0.9"


def test_model_defaults_drop_bad_values(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": -1, "top_p": 0.8, "top_k": "x"}))
    with pytest.warns(UserWarning) as record:
        values, _ = model_sampling_defaults(str(tmp_path))
    assert values == {"top_p": 0.8}
    assert sorted(str(w.message).split(":")[1].split("=")[0].split()[-1] for w in record) == ["temperature", "top_k"]


def test_model_defaults_from_gguf_metadata():
    meta = {"general.sampling.temp": 0.8, "general.sampling.top_k": 40, "general.sampling.penalty_repeat": 1.1,
            "general.architecture": "llama"}
    values, source = model_sampling_defaults("/some/file.gguf", meta)
    assert values == {"temperature": 0.8, "top_k": 40, "repetition_penalty": 1.1} and "GGUF" in source
    assert model_sampling_defaults("/some/file.gguf", {"general.architecture": "llama"})[0] == DEFAULT_SAMPLING
