// runtime/model/model_spec_check.h: hard caps and consistency checks on a ModelSpec (RELIABILITY
// item 6), run before anything is sized from it. Checks against tensor shapes are the weight
// loader's job.
#pragma once

#include <cstdint>
#include <string>

#include "eli/model_spec.h"

namespace eli {

constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxHidden = int64_t{1} << 17;
constexpr int64_t kMaxIntermediate = int64_t{1} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxPositions = int64_t{1} << 24;

// Throws eli::Error(kModelLoad) "SOURCE: <field> = <value> ..." for the first failed check.
void validate_model_spec(const ModelSpec& spec, const std::string& source);

}  // namespace eli
