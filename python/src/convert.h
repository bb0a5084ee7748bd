// python/src/convert.h: conversions between Python objects and eli's C++ structs, and the
// exception translator. Kept apart from the module definition so each binding stays one line.
#pragma once

#include <nanobind/nanobind.h>

#include "eli/engine.h"

namespace eli {

void register_error_translator();
EngineConfig engine_config_from_dict(const nanobind::dict& d);
SamplingParams sampling_params_from_dict(const nanobind::dict& d);
nanobind::dict spec_to_dict(const ModelSpec& s);
nanobind::dict engine_info_to_dict(const EngineInfo& info);
nanobind::dict engine_stats_to_dict(const EngineStats& s);
nanobind::dict memory_stats_to_dict(const MemoryStats& s);
nanobind::dict inspect_model(const std::string& path);
nanobind::list list_kernels();

}  // namespace eli
