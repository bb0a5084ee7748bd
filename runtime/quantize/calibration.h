// runtime/quantize/calibration.h: calibration statistics of every linear of a model, gathered by
// running the CPU engine's forward (Engine::score) over token sequences with a LinearObserver
// (runtime/model/linear_observer.h) installed.
//
// For each linear (keyed by eli's weight name: merged projections such as
// "model.layers.0.self_attn.qkv_proj" or "...mlp.gate_up_proj" are one entry, their parts share the
// input) the statistics are over the rows x the matrix multiplies, i.e. after the fused RMSNorm
// prologue when there is one:
//   abs_mean (k)    mean over rows of |x_j|            (AWQ's activation scale)
//   hessian (k, k)  mean over rows of x x^T            (GPTQ's H, up to a constant factor)
// lm_head is not recorded (it is never quantized).
//
// Invariants: CPU engines without tensor / pipeline parallelism only (else kUnsupported): their
// forward runs on the calling thread, so the thread-local observer sees every product; the engine's
// KV blocks are released by score() as usual.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eli/engine.h"

namespace eli {

struct LinearStats {
  int64_t cols = 0;
  int64_t rows = 0;               // rows seen
  std::vector<float> abs_mean;    // (cols)
  std::vector<float> hessian;     // (cols, cols), symmetric
};

// Runs engine.score() over each sequence and returns the statistics by linear name.
std::map<std::string, LinearStats> calibrate(Engine& engine, const std::vector<std::vector<int32_t>>& sequences);

}  // namespace eli
