// python/src/convert.h: conversions between Python objects and eli's C++ structs (typed classes
// for EngineConfig and SamplingParams, dicts for read-only reports), and the exception translator.
// Kept apart from the module definition so each binding stays one line.
#pragma once

#include <nanobind/nanobind.h>

#include "eli/engine.h"

namespace eli {

void register_error_translator();
// _eli.EngineConfig (typed, one attribute per option), _eli.engine_options(), hardware_threads().
void bind_engine_config(nanobind::module_& m);
// _eli.SamplingParams (typed) and _eli.validate_sampling_params().
void bind_sampling_params(nanobind::module_& m);
nanobind::dict spec_to_dict(const ModelSpec& s);
nanobind::dict engine_info_to_dict(const EngineInfo& info);
nanobind::dict engine_stats_to_dict(const EngineStats& s);
nanobind::dict memory_stats_to_dict(const MemoryStats& s);
nanobind::dict placement_report_to_dict(const WeightPlacementReport& r);
nanobind::dict inspect_model(const std::string& path);
nanobind::list list_kernels();
// The 7th element of an output tuple: None, or {"prompt_logprobs": [[(id, logprob), ...], ...],
// "embedding": [float, ...]} with what the output carries.
nanobind::object output_extra(const TokenOutput& o);

}  // namespace eli
